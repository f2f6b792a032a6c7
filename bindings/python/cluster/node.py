"""A cluster node (real TCP or mock server), its envelopes, inbox and outbox."""

from __future__ import annotations

import atexit
import json
import math
import os
import threading
import time
import warnings
import weakref
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from ._ffi import ffi, lib
from .errors import Closed, raise_error

BROADCAST: int = -1
"""The id that addresses every peer but the sender."""

KIND_BYTES: int = 0
"""Kind tag of a raw-bytes payload."""
KIND_TEXT: int = 1
"""Kind tag of a UTF-8 text payload."""
KIND_JSON: int = 2
"""Kind tag of a JSON payload."""

CUT_OUT: int = 1
"""`Node.cut` direction: this node's messages to the peers are lost."""
CUT_IN: int = 2
"""`Node.cut` direction: the peers' messages to this node are lost."""
CUT_BOTH: int = 3
"""`Node.cut` direction: both."""

# Longest time one foreign call blocks, so that Ctrl-C (handled by Python
# between two calls) interrupts a wait within this many milliseconds.
_SLICE_MS = 50
_TIMEOUT = -8  # CLUSTER_E_TIMEOUT
_BUFFER_TOO_SMALL = -12

Config = Union[Dict[str, Any], str, "os.PathLike[str]", bytes]
"""A configuration: a dict, JSON text, or the path of a JSON file."""

Timeout = Optional[float]
"""Seconds to wait; ``None`` waits for ever, ``0`` does not wait."""


class Envelope(NamedTuple):
    """A message: on send ``pid`` is the destination (or `BROADCAST`), on
    receive it is the sender, so the same envelope can be sent back as a reply.

    ``msg`` is ``bytes`` (kind 0), ``str`` (kind 1) or a JSON value (kind 2).
    ``kind`` is the payload's tag. On send it counts only for a bytes ``msg``
    (default 0); a str or JSON value gets kind 1 or 2 whatever it says, so a
    received envelope with a new ``msg`` can be sent back as a reply. A received payload whose kind is unknown, or
    that does not decode as its kind says, is handed over as raw ``bytes``.
    """

    pid: int
    msg_id: int = 0
    msg: Any = b""
    kind: Optional[int] = None


_new_tuple = tuple.__new__


def encode(msg: Any, kind: Optional[int] = None) -> Tuple[int, Any]:
    """``(kind, bytes-like)`` for a payload: bytes-like as is (kind 0), ``str``
    as UTF-8 (kind 1), anything else as JSON (kind 2). With ``kind`` given,
    ``msg`` must be bytes-like and is sent as is under that tag."""
    if kind is not None:
        if not isinstance(msg, (bytes, bytearray, memoryview)):
            raise TypeError(f"with an explicit kind, msg must be bytes-like, not {type(msg).__name__}")
        if not 0 <= kind <= 0xFFFFFFFF:
            raise ValueError(f"kind must be in 0..2**32-1, got {kind}")
        return kind, msg
    if isinstance(msg, (bytes, bytearray, memoryview)):
        return KIND_BYTES, msg
    if isinstance(msg, str):
        return KIND_TEXT, msg.encode("utf-8")
    try:
        text = json.dumps(msg, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"msg must be bytes, str or JSON-serializable; {type(msg).__name__}: {e}"
        ) from None
    return KIND_JSON, text.encode("utf-8")


def decode(kind: int, data: bytes) -> Any:
    """The payload as its kind says: bytes, str or a JSON value; raw bytes for
    an unknown kind or a payload that does not decode."""
    if kind == KIND_BYTES:
        return data
    try:
        if kind == KIND_TEXT:
            return data.decode("utf-8")
        if kind == KIND_JSON:
            return json.loads(data)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError both are
        pass
    return data


def _envelope_from(c: Any) -> Envelope:
    """A Python envelope from a filled ``cluster_envelope_t``; does not free it."""
    n = c.len
    data = ffi.unpack(c.data, n) if n else b""
    kind = c.kind
    msg = data if kind == KIND_BYTES else decode(kind, data)
    return _new_tuple(Envelope, (c.pid, c.msg_id, msg, kind))


def timeout_ms(timeout: Timeout) -> int:
    """Seconds (``None`` = for ever) as the C ABI's milliseconds (negative = for ever)."""
    if timeout is None:
        return -1
    if timeout != timeout or timeout < 0:  # NaN or negative
        raise ValueError(f"timeout must be None or >= 0 seconds, got {timeout!r}")
    if math.isinf(timeout):
        return -1
    return math.ceil(timeout * 1000)


def config_text(config: Config) -> bytes:
    """The C ABI's config argument: JSON text or a file path, as UTF-8."""
    if isinstance(config, dict):
        return json.dumps(config).encode("utf-8")
    if isinstance(config, bytes):
        return config
    if isinstance(config, str):
        return config.encode("utf-8")
    if isinstance(config, os.PathLike):
        return os.fsencode(config)
    raise TypeError(f"config must be a dict, JSON text or a path, not {type(config).__name__}")


def read_ids(fn: Callable[..., int], handle: Any) -> List[int]:
    """Calls a C function with the ``(out, cap, *len, err)`` buffer convention."""
    err = ffi.new("cluster_error_t *")
    n = ffi.new("size_t *")
    cap = 16
    while True:
        buf = ffi.new("int64_t[]", cap)
        rc = fn(handle, buf, cap, n, err)
        if rc == _BUFFER_TOO_SMALL:
            cap = n[0]
            continue
        if rc:
            raise_error(rc, err)
        return list(buf[0 : n[0]])


def take_string(fn: Callable[..., int], handle: Any) -> str:
    """Calls a C function that returns a library-owned string, and frees it."""
    err = ffi.new("cluster_error_t *")
    out = ffi.new("char **")
    rc = fn(handle, out, err)
    if rc:
        raise_error(rc, err)
    try:
        return ffi.string(out[0]).decode("utf-8")
    finally:
        lib.cluster_string_free(out[0])


def check(rc: int, err: Any) -> None:
    """Raises the error of a failed call."""
    if rc:
        raise_error(rc, err)


class _PerThread(threading.local):
    """Buffers one thread uses with one node, so that threads never share C memory.

    ``rbuf`` (and ``batch``) hold a received payload until it has been turned
    into Python objects; ``pending`` holds envelopes taken from C but not yet
    returned. Both survive a KeyboardInterrupt, so the next receive on this
    thread returns what the interrupted one had already taken.
    """

    def __init__(self) -> None:
        self.err = ffi.new("cluster_error_t *")
        self.env = ffi.new("cluster_envelope_t *")
        self.rbuf = ffi.gc(ffi.new("cluster_envelope_t *"), lib.cluster_envelope_free)
        self.count = ffi.new("size_t *")  # envelopes in `batch` not yet taken
        self.sent = ffi.new("size_t *")
        self.batch: Any = None
        self.batch_owner: Any = None
        self.batch_cap = 0
        self.pending: Optional[List[Envelope]] = None
        self.pos = 0
        self.plen = 0


def _free_batch(cap: int) -> Callable[[Any], None]:
    def free(arr: Any, _free: Callable[..., None] = lib.cluster_envelopes_free) -> None:
        _free(arr, cap)

    return free


def _free_node(keep: Any = None) -> Callable[[Any], None]:
    # Binds the C function as a default so it still works at interpreter
    # shutdown; `keep` holds what must outlive the node (its mock).
    def free(handle: Any, _free: Callable[[Any], None] = lib.cluster_free, _keep: Any = keep) -> None:
        _free(handle)

    return free


_open_nodes: "weakref.WeakSet[Node]" = weakref.WeakSet()


@atexit.register
def _close_open_nodes() -> None:
    """Closes the nodes still open when the interpreter exits (flushing their queues)."""
    for node in list(_open_nodes):
        node._close_quietly()


class Node:
    """A member of a cluster: a real TCP node, or a mock server (from
    `MockCluster.add_server`), with the same interface.

    ``Node(id, config)`` starts a real node with id ``id``; ``config`` is a
    dict, JSON text or the path of a JSON file, as the original Go library
    takes. The node listens on its configured address before this returns.

    Thread safety: one node may be used from many threads at once (sends from
    several, receives from one or several); `close` may be called from any
    thread and wakes blocked calls. Blocking calls release the GIL and wait
    in slices of at most 50 ms, so Ctrl-C interrupts them promptly; a message
    already taken when the interrupt lands is returned by the next receive
    on the same thread.
    """

    _handle: Any = None

    def __init__(self, id: int, config: Config) -> None:
        err = ffi.new("cluster_error_t *")
        out = ffi.new("cluster_node_t **")
        check(lib.cluster_new(id, config_text(config), out, err), err)
        self._adopt(out[0], id)

    @classmethod
    def _from_handle(cls, handle: Any, pid: int, keep: Any) -> "Node":
        """A node over a handle the library gave (a mock server); ``keep`` is
        kept alive until the handle is freed. It does not warn when left open:
        its mock closes it."""
        node = cls.__new__(cls)
        node._adopt(handle, pid, keep)
        node._closing = True
        return node

    def _adopt(self, handle: Any, pid: int, keep: Any = None) -> None:
        self._handle = ffi.gc(handle, _free_node(keep))
        self._pid = pid
        self._tls = _PerThread()
        self._closing = False
        self.inbox = Inbox(self)
        self.outbox = Outbox(self)
        _open_nodes.add(self)

    # -- identity -----------------------------------------------------------

    @property
    def pid(self) -> int:
        """This node's own id."""
        return self._pid

    @property
    def peers(self) -> List[int]:
        """The ids of the other members: in config order for a real node, the
        other open servers for a mock server."""
        return read_ids(lib.cluster_peers, self._handle)

    @property
    def closed(self) -> bool:
        """Whether the node is closed."""
        return lib.cluster_is_closed(self._handle) == 1

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<{type(self).__name__} pid={self._pid} {state}>"

    # -- sending ------------------------------------------------------------

    def send(
        self,
        pid: int,
        msg: Any,
        msg_id: int = 0,
        timeout: Timeout = None,
        *,
        kind: Optional[int] = None,
    ) -> None:
        """Sends ``msg`` to peer ``pid`` (a member's id, one's own id, or `BROADCAST`).

        ``msg`` is bytes, str or a JSON-serializable value (see `Envelope`).
        The payload is copied before this returns. If a live peer's queue is
        full, waits up to ``timeout`` seconds (None = until there is room;
        this wait is one foreign call, so Ctrl-C lands after it), then raises
        `Full` (the message is dropped and counted); a peer that is down
        never makes the caller wait. Raises `UnknownPeer`, `TooLarge`,
        `Closed`, `TypeError` for a payload that cannot be encoded.
        """
        st = self._tls
        if kind is None and type(msg) is bytes:
            kind, data = KIND_BYTES, msg
        else:
            kind, data = encode(msg, kind)
        e = st.env
        e.pid = pid
        e.msg_id = msg_id
        e.kind = kind
        n = len(data)
        if n:
            buf = ffi.from_buffer(data)
            e.data = buf
            n = len(buf)  # bytes, also for a memoryview of wider items
        else:
            e.data = ffi.NULL
        e.len = n
        err = st.err
        rc = lib.cluster_send(self._handle, e, -1 if timeout is None else timeout_ms(timeout), err)
        if rc:
            raise_error(rc, err)

    def broadcast(self, msg: Any, msg_id: int = 0, timeout: Timeout = None) -> None:
        """Sends ``msg`` to every peer but this node; see `send`. Peers whose
        queue is full drop it (counted in `stats`) without an error."""
        self.send(BROADCAST, msg, msg_id, timeout)

    def send_many(
        self,
        envelopes: Iterable[Union[Envelope, Tuple[Any, ...]]],
        timeout: Timeout = None,
    ) -> int:
        """Sends many envelopes in one foreign call, in order, as `send` would one
        by one. Each item is an `Envelope` or a ``(pid, msg_id, msg)`` tuple.
        Stops at the first error and raises it; the exception's ``sent``
        attribute says how many went out. Returns how many were sent."""
        items = envelopes if isinstance(envelopes, (list, tuple)) else list(envelopes)
        count = len(items)
        if count == 0:
            return 0
        arr = ffi.new("cluster_envelope_t[]", count)
        keep = []
        for i, item in enumerate(items):
            msg = item[2]
            if type(msg) is bytes and len(item) < 4:
                kind, data = KIND_BYTES, msg
            else:
                kind, data = encode(msg, _kind_for_send(item))
            c = arr[i]
            c.pid = item[0]
            c.msg_id = item[1]
            c.kind = kind
            if len(data):
                buf = ffi.from_buffer(data)
                keep.append(buf)
                c.data = buf
                c.len = len(buf)
        st = self._tls
        err = st.err
        sent = st.sent
        rc = lib.cluster_send_batch(self._handle, arr, count, timeout_ms(timeout), sent, err)
        if rc:
            n = sent[0]
            try:
                raise_error(rc, err)
            except Exception as e:
                e.sent = n  # type: ignore[attr-defined]
                raise
        return count

    # -- receiving ----------------------------------------------------------

    def recv(self, timeout: Timeout = None) -> Envelope:
        """The next received envelope, its ``pid`` the sender's id.

        Waits up to ``timeout`` seconds (None = for ever, 0 = not at all),
        then raises `Timeout`. Raises `Closed` when the node is closed (at
        once if another thread closes it meanwhile). Releases the GIL while
        it waits; Ctrl-C raises KeyboardInterrupt within about 50 ms.
        """
        # A message is first kept in C memory owned by this thread's state,
        # then in `pending`, and is released from the one only once it is in
        # the other; so a KeyboardInterrupt, which Python raises only after a
        # function call, never loses it: the next receive returns it.
        st = self._tls
        p = st.pending
        if p is None:
            if st.count[0]:  # a batch an interrupted recv_many took
                p = self._take_batch(st)
            else:
                buf = st.rbuf
                if buf._owner == ffi.NULL:
                    self._wait(lib.cluster_recv, (buf,), timeout, st.err)
                env = _envelope_from(buf)
                st.pending = [env]
                st.pos = 0
                st.plen = 1
                lib.cluster_envelope_free(buf)
                st.pending = None
                return env
        i = st.pos
        env = p[i]
        if i + 1 >= st.plen:
            st.pending = None
        else:
            st.pos = i + 1
        return env

    def recv_many(self, max: int = 1024, timeout: Timeout = None) -> List[Envelope]:
        """Up to ``max`` envelopes in one foreign call: waits up to ``timeout``
        for the first (as `recv`), then takes what is already there. Never
        returns an empty list: raises `Timeout` or `Closed` instead."""
        if max < 1:
            raise ValueError(f"max must be at least 1, got {max}")
        st = self._tls
        p = st.pending
        if p is None:
            if st.count[0] == 0:
                arr = st.batch
                if arr is None or st.batch_cap < max:
                    # The gc'd array frees its payloads when dropped; index it
                    # through a plain pointer (the gc'd copy has no length).
                    owner = ffi.gc(ffi.new("cluster_envelope_t[]", max), _free_batch(max))
                    arr = ffi.cast("cluster_envelope_t *", owner)
                    st.batch_owner = owner
                    st.batch = arr
                    st.batch_cap = max
                self._wait(lib.cluster_recv_batch, (arr, max, st.count), timeout, st.err)
            p = self._take_batch(st)
        i = st.pos
        st.pending = None
        return p[i:] if i else p

    @staticmethod
    def _take_batch(st: _PerThread) -> List[Envelope]:
        """Turns the envelopes of this thread's batch buffer into `pending`."""
        arr = st.batch
        n = st.count[0]
        out = [_envelope_from(arr[i]) for i in range(n)]
        st.pending = out
        st.pos = 0
        st.plen = n
        st.count[0] = 0
        lib.cluster_envelopes_free(arr, n)
        return out

    def _wait(self, fn: Callable[..., int], args: Tuple[Any, ...], timeout: Timeout, err: Any) -> None:
        """Calls a blocking C receive in slices of at most 50 ms until it
        returns something other than a timeout or ``timeout`` runs out."""
        h = self._handle
        if timeout is None:
            while True:
                rc = fn(h, *args, _SLICE_MS, err)
                if rc != _TIMEOUT:
                    break
        else:
            ms = timeout_ms(timeout)
            if ms < 0:
                return self._wait(fn, args, None, err)
            deadline = time.monotonic() + ms / 1000
            while True:
                rc = fn(h, *args, min(ms, _SLICE_MS), err)
                if rc != _TIMEOUT:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                ms = math.ceil(left * 1000)
        if rc:
            raise_error(rc, err)

    def __iter__(self) -> Iterator[Envelope]:
        """Received envelopes, one by one, until the node is closed."""
        while True:
            try:
                env = self.recv()
            except Closed:
                return
            yield env

    # -- lifecycle ----------------------------------------------------------

    def close(self) -> None:
        """Closes the node: stops accepting sends, flushes queued messages
        within the configured linger, wakes every blocked call (they raise
        `Closed`) and releases the port before returning. Idempotent; any
        thread. Messages still in the inbox are discarded."""
        self._closing = True
        err = ffi.new("cluster_error_t *")
        check(lib.cluster_close(self._handle, err), err)
        _open_nodes.discard(self)

    def _close_quietly(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - close reports no error in practice
            pass

    def __enter__(self) -> "Node":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        if getattr(self, "_closing", True) or self.closed:
            return
        try:
            _warn(f"unclosed {self!r}", ResourceWarning, source=self)
        except Exception:  # at interpreter shutdown warnings may be gone
            pass
        self._close_quietly()

    # -- counters -----------------------------------------------------------

    def stats(self) -> Dict[str, Any]:
        """The node's counters: sent, received, delivered, bytes, drops by cause,
        reconnects, and per peer queue depth and connection state. Works on a
        closed node too."""
        return json.loads(take_string(lib.cluster_stats, self._handle))

    # -- fault injection (real nodes and mock servers alike) -----------------

    def set_drop_probability(self, p: float) -> None:
        """Loses each message this node sends to a peer with probability ``p``
        (0..1); the send still succeeds and the loss is counted as a fault drop."""
        self._fault(lib.cluster_fault_drop, float(p))

    def set_max_delay(self, ms: int) -> None:
        """Delays each message this node sends by a random time in [0, ms]
        milliseconds, which reorders them; 0 turns delay off."""
        self._fault(lib.cluster_fault_delay, int(ms))

    set_max_message_delay = set_max_delay

    def set_duplicate_probability(self, p: float) -> None:
        """Delivers each message this node sends twice with probability ``p`` (0..1)."""
        self._fault(lib.cluster_fault_duplicate, float(p))

    def cut(self, *peers: int, direction: Union[int, str] = CUT_BOTH) -> None:
        """Cuts this node off from ``peers``: ``"out"`` (`CUT_OUT`) loses its
        messages to them, ``"in"`` (`CUT_IN`) loses theirs to it, ``"both"``
        (`CUT_BOTH`, the default) both. Adds to earlier cuts; `heal` removes them."""
        if isinstance(direction, str):
            try:
                direction = {"out": CUT_OUT, "in": CUT_IN, "both": CUT_BOTH}[direction]
            except KeyError:
                raise ValueError(f"direction must be 'in', 'out' or 'both', not {direction!r}") from None
        ids = _flatten_ids(peers)
        self._fault(lib.cluster_fault_cut, ffi.new("int64_t[]", ids), len(ids), direction)

    def heal(self) -> None:
        """Removes every cut of this node (drop, delay and duplicate settings stay)."""
        self._fault(lib.cluster_fault_heal)

    def seed(self, seed: int) -> None:
        """Sets the seed of this node's fault decisions, so a run can be replayed."""
        self._fault(lib.cluster_fault_seed, seed)

    def _fault(self, fn: Callable[..., int], *args: Any) -> None:
        err = ffi.new("cluster_error_t *")
        check(fn(self._handle, *args, err), err)


def _kind_for_send(env: Sequence[Any]) -> Optional[int]:
    """The kind an envelope is sent with: its own for a bytes payload (so a
    received envelope travels on unchanged), else chosen from the payload's type."""
    if len(env) > 3 and isinstance(env[2], (bytes, bytearray, memoryview)):
        return env[3]
    return None


def _flatten_ids(ids: Sequence[Any]) -> List[int]:
    """``cut(2, 3)`` and ``cut([2, 3])`` alike."""
    out: List[int] = []
    for i in ids:
        if isinstance(i, (list, tuple, set, frozenset)):
            out.extend(i)
        else:
            out.append(i)
    return out


class Inbox:
    """The receiving side, as the original Go API's ``Inbox()`` channel:
    ``get(timeout)`` takes the next envelope; iterating yields envelopes until
    the node is closed."""

    def __init__(self, node: Node) -> None:
        self._node = weakref.proxy(node)

    def get(self, timeout: Timeout = None) -> Envelope:
        """`Node.recv`: the next envelope, waiting up to ``timeout`` seconds."""
        return self._node.recv(timeout)

    def __iter__(self) -> Iterator[Envelope]:
        return iter(self._node)


class Outbox:
    """The sending side, as the original Go API's ``Outbox()`` channel:
    ``put(Envelope(pid, msg_id, msg))`` sends it."""

    def __init__(self, node: Node) -> None:
        self._node = weakref.proxy(node)

    def put(self, env: Envelope, timeout: Timeout = None) -> None:
        """`Node.send` of ``env``: to ``env.pid``, waiting up to ``timeout``
        seconds for room in a live peer's queue."""
        self._node.send(env[0], env[2], env[1], timeout, kind=_kind_for_send(env))
