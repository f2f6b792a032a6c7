"""A cluster node (real TCP or mock server), its envelopes, inbox and outbox."""

from __future__ import annotations

import atexit
import json
import math
import operator
import os
import threading
import warnings
import weakref
from typing import (
    Any,
    AsyncIterator,
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

from . import _ffi, aio

try:
    from . import _port  # type: ignore[attr-defined]
except ImportError as e:  # a source tree whose C port was never compiled
    raise ImportError(
        "cluster: the compiled module cluster._port is missing; install the package "
        "(pip install ./bindings/python), or use the source tree through an editable install "
        "(pip install -e ./bindings/python)"
    ) from e
from ._ffi import ffi, lib
from .errors import Closed, OutOfRange, error_for, raise_error

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

# The first slice of a send on a real node that waits in slices (see
# `Node.send`): as long as the core may take to finish writing a frame it
# started on the caller's thread (a shorter timeout makes it give up sooner
# and drop the connection). A mock server's sends start with 50 ms slices.
_FIRST_SEND_SLICE_MS = 1000
_MOCK_SEND_SLICE_MS = 50
_BUFFER_TOO_SMALL = -12
# Timeouts of this many milliseconds or more (about 292 million years) wait for ever.
_FOREVER_MS = 9.2e18

# (lowest, highest, as written in messages) of the C integer types arguments cross as.
INT64 = (-(1 << 63), (1 << 63) - 1, "-2**63..2**63-1")
UINT64 = (0, (1 << 64) - 1, "0..2**64-1")
UINT32 = (0, (1 << 32) - 1, "0..2**32-1")
C_INT = (-(1 << 31), (1 << 31) - 1, "-2**31..2**31-1")

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
    received envelope with a new ``msg`` can be sent back as a reply. A
    received payload whose kind is unknown, or that does not decode as its
    kind says, is handed over as raw ``bytes``.
    """

    pid: int
    msg_id: int = 0
    msg: Any = b""
    kind: Optional[int] = None


def encode(msg: Any, kind: Optional[int] = None) -> Tuple[int, Any]:
    """``(kind, bytes-like)`` for a payload: bytes-like as is (kind 0), ``str``
    as UTF-8 (kind 1), anything else as JSON (kind 2). With ``kind`` given,
    ``msg`` must be bytes-like and is sent as is under that tag."""
    if kind is not None:
        if not isinstance(msg, (bytes, bytearray, memoryview)):
            raise TypeError(f"with an explicit kind, msg must be bytes-like, not {type(msg).__name__}")
        return c_int(kind, "kind", UINT32), msg
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


def timeout_ms(timeout: Timeout) -> int:
    """Seconds (``None`` = for ever) as the C ABI's milliseconds (negative =
    for ever). A timeout too long for the C ABI (``inf``, or beyond about 292
    million years) waits for ever too."""
    if timeout is None:
        return -1
    try:
        if timeout != timeout or timeout < 0:  # NaN or negative
            raise ValueError(f"timeout must be None or >= 0 seconds, got {timeout!r}")
        ms = timeout * 1000
    except TypeError:
        raise TypeError(f"timeout must be None or a number of seconds, not {type(timeout).__name__}") from None
    if ms >= _FOREVER_MS:
        return -1
    return math.ceil(ms)


def c_int(value: Any, name: str, ctype: Tuple[int, int, str] = INT64) -> int:
    """``value`` as an integer argument of C type ``ctype`` (`INT64`, `UINT64`,
    ...): `OutOfRange` naming ``name`` and the range if it does not fit,
    `TypeError` if it is not an integer."""
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {type(value).__name__}") from None
    lo, hi, text = ctype
    if not lo <= v <= hi:
        raise OutOfRange(f"{name} must be in {text}, got {v}")
    return int(v)


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
        if rc != _BUFFER_TOO_SMALL:
            break
        cap = n[0]
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
        return str(ffi.string(out[0]).decode("utf-8"))
    finally:
        lib.cluster_string_free(out[0])


def check(rc: int, err: Any) -> None:
    """Raises the error of a failed call."""
    if rc:
        raise_error(rc, err)


def _free_node(keep: Any = None) -> Callable[[Any], None]:
    # Binds the C function as a default so it still works at interpreter
    # shutdown; `keep` holds what must outlive the node (its mock).
    def free(handle: Any, _free: Callable[[Any], None] = lib.cluster_free, _keep: Any = keep) -> None:
        _free(handle)

    return free


_open_nodes: "weakref.WeakSet[Node]" = weakref.WeakSet()
_open_mocks: "weakref.WeakSet[Any]" = weakref.WeakSet()  # MockCluster objects


@atexit.register
def _close_open_nodes() -> None:
    """Closes the nodes and mock clusters still open when the interpreter exits
    (real nodes flush their queues within their linger)."""
    for node in list(_open_nodes):
        node._close_quietly()
    for mock in list(_open_mocks):
        try:
            mock.close()
        except Exception:  # pragma: no cover - close reports no error in practice
            pass


class Node:
    """A member of a cluster: a real TCP node, or a mock server (from
    `MockCluster.add_server`), with the same interface.

    ``Node(id, config)`` starts a real node with id ``id``; ``config`` is a
    dict, JSON text or the path of a JSON file, as the original Go library
    takes. The node listens on its configured address before this returns.

    Thread safety: one node may be used from many threads at once (sends from
    several, receives from one or several); `close` may be called from any
    thread and wakes blocked calls. Blocking calls release the GIL and wait
    in slices, so Ctrl-C interrupts them promptly (see `recv` and `send`); a
    message already taken when the interrupt lands is returned by the next
    receive on the same thread.

    Integer arguments must fit the C types they cross as (ids and msg_id in
    int64_t, seeds in uint64_t, ...), or `OutOfRange` names the argument and
    its range.
    """

    _handle: Any = None
    _readiness: Any = None  # cluster.aio.Readiness, made by the first wait

    def __init__(self, id: int, config: Config) -> None:
        err = ffi.new("cluster_error_t *")
        out = ffi.new("cluster_node_t **")
        check(lib.cluster_new(c_int(id, "id"), config_text(config), out, err), err)
        self._adopt(out[0], id)

    @classmethod
    def _from_handle(cls, handle: Any, pid: int, keep: Any, virtual_clock: bool = False) -> "Node":
        """A node over a handle the library gave (a mock server); ``keep`` is
        kept alive until the handle is freed. It does not warn when left open:
        its mock closes it. On a virtual clock its receives wait in virtual time."""
        node = cls.__new__(cls)
        node._adopt(handle, pid, keep, virtual_clock)
        node._closing = True
        return node

    def _adopt(self, handle: Any, pid: int, keep: Any = None, virtual_clock: bool = False) -> None:
        self._handle = ffi.gc(handle, _free_node(keep))
        self._pid = pid
        self._closing = False
        # Sends and receives are the port's (see _port.c). `send` is bound on
        # the instance, so `node.send(...)` is one C call with no Python frame
        # (`Node.send` documents it). Receives keep a frame of their own,
        # which tells the port the result got through (see `recv`).
        first_slice = _MOCK_SEND_SLICE_MS if keep is not None else _FIRST_SEND_SLICE_MS
        port = self._port = _port.Port(int(ffi.cast("uintptr_t", handle)), self._handle, first_slice, virtual_clock)
        vars(self).update(send=port.send)
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
        return bool(lib.cluster_is_closed(self._handle) == 1)

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
        full, waits up to ``timeout`` seconds (None = until there is room),
        then raises `Full` (the message is dropped and counted); a peer that
        is down never makes the caller wait. Raises `UnknownPeer`, `TooLarge`,
        `Closed`, `TypeError` for a payload that cannot be encoded,
        `OutOfRange` for a ``pid`` or ``msg_id`` beyond int64_t.

        Ctrl-C: on the main thread, a wait for room longer than a slice is
        cut into slices (the first 1 s on a real node, then 50 ms), and
        KeyboardInterrupt is raised between two, the message not sent and
        not counted. A broadcast that may wait so is sent to each peer in
        turn.
        """
        self._port.send(pid, msg, msg_id, timeout, kind=kind)

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
        attribute says how many went out. Returns how many were sent. Waits
        for room, and is interrupted by Ctrl-C, as `send` is (per envelope);
        a KeyboardInterrupt has ``sent`` too."""
        count: int = self._port.send_many(envelopes, timeout)
        return count

    # -- receiving ----------------------------------------------------------

    def recv(self, timeout: Timeout = None) -> Envelope:
        """The next received envelope, its ``pid`` the sender's id.

        Waits up to ``timeout`` seconds (None = for ever, 0 = not at all),
        then raises `Timeout`. Raises `Closed` when the node is closed (at
        once if another thread closes it meanwhile). Releases the GIL while
        it waits; Ctrl-C raises KeyboardInterrupt within about 50 ms.
        """
        port = self._port
        got: Envelope = port.recv(timeout)
        # Python may raise an interrupt right after a C call returns; until
        # this store (which it never interrupts) the port keeps `got` and the
        # next receive returns it again.
        port.pending = None
        return got

    def recv_many(self, max: int = 1024, timeout: Timeout = None) -> List[Envelope]:
        """Up to ``max`` envelopes in one foreign call: waits up to ``timeout``
        for the first (as `recv`), then takes what is already there. Never
        returns an empty list: raises `Timeout` or `Closed` instead. ``max``
        above 65536 counts as 65536."""
        port = self._port
        envs: List[Envelope] = port.recv_many(max, timeout)
        port.pending = None  # as in `recv`
        return envs

    # -- asyncio --------------------------------------------------------------

    async def arecv(self, timeout: Timeout = None) -> Envelope:
        """`recv` for asyncio: waits without a thread (the loop watches the
        node's receive descriptor), up to ``timeout`` seconds (None = for
        ever), then raises `Timeout`; `Closed` once the node is closed. A
        task cancelled while it waits has taken nothing: the message goes to
        the next receive."""
        return await aio.recv(self, timeout)

    async def asend(
        self,
        pid: int,
        msg: Any,
        msg_id: int = 0,
        timeout: Timeout = None,
        *,
        kind: Optional[int] = None,
    ) -> None:
        """`send` for asyncio: if a live peer's queue is full, the message is
        kept and tried again (the loop runs meanwhile) up to ``timeout``
        seconds, then dropped and counted (`Full`), as `send` does. A task
        cancelled meanwhile has sent nothing and dropped nothing. A
        broadcast does not wait: a full peer drops its copy (counted)."""
        await aio.send(self, pid, msg, msg_id, timeout, kind)

    def __aiter__(self) -> AsyncIterator[Envelope]:
        """``async for env in node``: received envelopes until the node is closed."""
        return aio.iterate(self)

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
        thread. Messages still in the inbox are discarded (counted in
        ``stats()["discarded"]``)."""
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
        reconnects, and per peer queue depth and connection state, as the
        core counts them. Works on a closed node too."""
        return dict(json.loads(take_string(lib.cluster_stats, self._handle)))

    # -- fault injection (real nodes and mock servers alike) -----------------

    def set_drop_probability(self, p: float) -> None:
        """Loses each message this node sends to a peer with probability ``p``
        (0..1); the send still succeeds and the loss is counted as a fault drop."""
        self._fault(lib.cluster_fault_drop, _probability(p))

    def set_max_delay(self, ms: int) -> None:
        """Delays each message this node sends by a random time in [0, ms]
        milliseconds, which reorders them; 0 turns delay off."""
        self._fault(lib.cluster_fault_delay, c_int(int(ms), "ms"))

    set_max_message_delay = set_max_delay

    def set_duplicate_probability(self, p: float) -> None:
        """Delivers each message this node sends twice with probability ``p`` (0..1)."""
        self._fault(lib.cluster_fault_duplicate, _probability(p))

    def cut(self, *peers: int, direction: Union[int, str] = CUT_BOTH) -> None:
        """Cuts this node off from ``peers``: ``"out"`` (`CUT_OUT`) loses its
        messages to them, ``"in"`` (`CUT_IN`) loses theirs to it, ``"both"``
        (`CUT_BOTH`, the default) both. Adds to earlier cuts; `heal` removes them."""
        if isinstance(direction, str):
            try:
                direction = {"out": CUT_OUT, "in": CUT_IN, "both": CUT_BOTH}[direction]
            except KeyError:
                raise ValueError(f"direction must be 'in', 'out' or 'both', not {direction!r}") from None
        ids = [c_int(p, "peer id") for p in _flatten_ids(peers)]
        self._fault(lib.cluster_fault_cut, ffi.new("int64_t[]", ids), len(ids), c_int(direction, "direction", C_INT))

    def heal(self) -> None:
        """Removes every cut of this node (drop, delay and duplicate settings stay)."""
        self._fault(lib.cluster_fault_heal)

    def seed(self, seed: int) -> None:
        """Sets the seed of this node's fault decisions (0..2**64-1), so a run
        can be replayed."""
        self._fault(lib.cluster_fault_seed, c_int(seed, "seed", UINT64))

    def _fault(self, fn: Callable[..., int], *args: Any) -> None:
        err = ffi.new("cluster_error_t *")
        check(fn(self._handle, *args, err), err)


def _probability(p: Any) -> float:
    """``p`` as a C double: a float too large for one is out of range."""
    try:
        return float(p)
    except OverflowError:
        raise OutOfRange(f"probability must be in 0..1, got {p}") from None


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
        self._port = node._port

    def get(self, timeout: Timeout = None) -> Envelope:
        """`Node.recv`: the next envelope, waiting up to ``timeout`` seconds."""
        port = self._port  # as Node.recv does, without a second frame
        got: Envelope = port.recv(timeout)
        port.pending = None
        return got

    def __iter__(self) -> Iterator[Envelope]:
        return iter(self._node)


class Outbox:
    """The sending side, as the original Go API's ``Outbox()`` channel:
    ``put(Envelope(pid, msg_id, msg))`` sends it as `Node.send` would, to
    ``env.pid``, waiting up to ``timeout`` seconds for room in a live
    peer's queue. A bytes ``msg`` goes with the envelope's own ``kind``."""

    def __init__(self, node: Node) -> None:
        self.put = node._port.put


_port.init(
    _ffi.library_path,
    Envelope,
    decode,
    encode,
    error_for,
    OutOfRange,
    threading.main_thread().ident,
)
