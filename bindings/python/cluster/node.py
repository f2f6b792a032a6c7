"""A cluster node (real TCP or mock server), its envelopes, inbox and outbox."""

from __future__ import annotations

import atexit
import functools
import json
import math
import operator
import os
import struct
import threading
import time
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

from . import aio
from ._ffi import ffi, lib
from .errors import Closed, ClusterError, OutOfRange, error_for, raise_error

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
# The first slice of a send on a real node: as long as the core may take to
# finish writing a frame it started on the caller's thread (a shorter timeout
# makes it give up sooner and drop the connection). See `Node.send`.
_FIRST_SEND_SLICE_MS = 1000
_TIMEOUT = -8  # CLUSTER_E_TIMEOUT
_FULL = -10  # CLUSTER_E_FULL
_UNKNOWN_PEER = -6  # CLUSTER_E_UNKNOWN_PEER
_NO_STATUS = 1  # put in err.code before a call: no status was written yet
_MAX_BATCH = 65536
_NEEDS_PYTHON = 1000  # _speedups.send_many: an item needs encoding in Python
_BUFFER_TOO_SMALL = -12
# Timeouts of this many milliseconds or more (about 292 million years) wait for ever.
_FOREVER_MS = 9.2e18

# (lowest, highest, as written in messages) of the C integer types arguments cross as.
INT64 = (-(1 << 63), (1 << 63) - 1, "-2**63..2**63-1")
UINT64 = (0, (1 << 64) - 1, "0..2**64-1")
UINT32 = (0, (1 << 32) - 1, "0..2**32-1")
C_INT = (-(1 << 31), (1 << 31) - 1, "-2**31..2**31-1")

_get_ident = threading.get_ident
_MAIN_THREAD = threading.main_thread().ident
_monotonic = time.monotonic

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


_new_tuple = tuple.__new__


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


_NULL = ffi.NULL


def _addr(cdata: Any) -> int:
    """The address of C memory, for `_speedups`."""
    return int(ffi.cast("uintptr_t", cdata))


# The optional C hot paths (built at install when a compiler and Python's
# headers are there); CLUSTER_PURE_PYTHON=1 turns them off.
_sp: Any = None
if not os.environ.get("CLUSTER_PURE_PYTHON"):
    try:
        from . import _speedups as _sp  # type: ignore[attr-defined, no-redef]
    except ImportError:  # pragma: no cover - depends on the install
        _sp = None
_from_buffer = ffi.from_buffer
_unpack = ffi.unpack
_send = lib.cluster_send
_recv = lib.cluster_recv
_recv_batch = lib.cluster_recv_batch
_envelope_free = lib.cluster_envelope_free
_envelopes_free = lib.cluster_envelopes_free
_send_batch = lib.cluster_send_batch

# cluster_envelope_t as `struct` packs it (pid, msg_id, kind, padding, data, len, _owner).
_ENV_FORMAT = "qqI4xQQQ"
_ENV_SIZE = struct.calcsize("=" + _ENV_FORMAT)
if _ENV_SIZE != ffi.sizeof("cluster_envelope_t"):  # pragma: no cover - a layout change
    raise ImportError("cluster: cluster_envelope_t's layout changed; update _ENV_FORMAT")


@functools.lru_cache(maxsize=16)
def _packer(count: int) -> struct.Struct:
    """Packs ``count`` envelopes from 5 fields each (_owner is left 0)."""
    return struct.Struct("=" + ("qqI4xQQ8x" * count))


def _first_slice(ms: int) -> int:
    """The first wait of a receive of ``ms`` (negative = for ever): never
    longer than a slice, so a wait for ever still checks for signals."""
    return _SLICE_MS if ms < 0 else min(ms, _SLICE_MS)


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
    rc, ids = _read_ids(fn, handle, err)
    if rc:
        raise_error(rc, err)
    return ids


def _read_ids(fn: Callable[..., int], handle: Any, err: Any) -> Tuple[int, List[int]]:
    """`read_ids` that returns the status (and no ids on an error)."""
    n = ffi.new("size_t *")
    cap = 16
    while True:
        buf = ffi.new("int64_t[]", cap)
        rc = fn(handle, buf, cap, n, err)
        if rc == _BUFFER_TOO_SMALL:
            cap = n[0]
            continue
        return rc, list(buf[0 : n[0]]) if rc == 0 else []


# -- sends that Ctrl-C can interrupt -------------------------------------------
#
# A send waiting for room in a full queue is one foreign call, and Python runs
# signal handlers only between two. So on the main thread a long wait is cut
# into slices: a call with a slice's timeout; a Full that came back once the
# slice ran out (a peer that is down drops at once) means "still no room", and
# the send is made again. The core counted that attempt as a drop; `phantom`
# counts it per destination, and `Node.stats` takes it off. Python may raise
# KeyboardInterrupt right after any call returns, so the status is read back
# from ``err.code`` (set to _NO_STATUS before each call) to count such a drop
# even then. The first slice is `first` (see _FIRST_SEND_SLICE_MS), the next
# ones _SLICE_MS.


def _note_phantom(phantom: Dict[int, int], pid: int) -> None:
    phantom[pid] = phantom.get(pid, 0) + 1


def _send_sliced(handle: Any, e: Any, ms: int, err: Any, phantom: Dict[int, int], first: int) -> int:
    """cluster_send of envelope ``e`` with a timeout of ``ms`` (negative = for
    ever), waiting in slices; returns the status."""
    if e.pid == BROADCAST:
        return _broadcast_sliced(handle, e, ms, err, phantom, first)
    return _unicast_sliced(handle, e, ms, err, phantom, first)


def _unicast_sliced(handle: Any, e: Any, ms: int, err: Any, phantom: Dict[int, int], first: int) -> int:
    deadline = None if ms < 0 else _monotonic() + ms / 1000
    slice_ms = first
    start = 0.0
    while True:
        if deadline is not None:
            slice_ms = min(slice_ms, max(0, math.ceil((deadline - _monotonic()) * 1000)))
        err.code = _NO_STATUS
        try:
            start = _monotonic()
            rc: int = _send(handle, e, slice_ms, err)
            if rc != _FULL:
                return rc
            end = _monotonic()
            if end - start < slice_ms / 1000 or (deadline is not None and end >= deadline):
                return rc  # dropped at once (a peer down), or the timeout ran out
            phantom[e.pid] = phantom.get(e.pid, 0) + 1
            err.code = _NO_STATUS  # counted
        except BaseException:  # a signal handler raised
            if err.code == _FULL and _monotonic() - start >= slice_ms / 1000:
                _note_phantom(phantom, e.pid)
            raise
        slice_ms = _SLICE_MS


def _broadcast_sliced(handle: Any, e: Any, ms: int, err: Any, phantom: Dict[int, int], first: int) -> int:
    """A broadcast as a send to each peer in turn, waiting in slices (one
    call would drop the message for a peer whose queue stays full for a
    slice, with no error), ``ms`` being the whole call's. As a broadcast:
    a peer whose queue is full for ``ms`` drops it (counted), no error."""
    rc, peers = _read_ids(lib.cluster_peers, handle, err)
    if rc:
        return rc
    if not peers:  # nothing to wait for: what the core says (TooLarge, Closed)
        rc = _send(handle, e, 0, err)
        return rc
    deadline = None if ms < 0 else _monotonic() + ms / 1000
    try:
        for pid in peers:
            e.pid = pid
            left = -1 if deadline is None else max(0, math.ceil((deadline - _monotonic()) * 1000))
            rc = _unicast_sliced(handle, e, left, err, phantom, first)
            if rc not in (0, _FULL, _UNKNOWN_PEER):  # a mock server closed meanwhile
                return rc
            first = _SLICE_MS
    finally:
        e.pid = BROADCAST
    return 0


def _batch_sliced(
    handle: Any, envs: Any, count: int, ms: int, sent: Any, err: Any, phantom: Dict[int, int], first: int
) -> int:
    """cluster_send_batch of ``envs[0:count]`` with a timeout of ``ms`` per
    envelope, waiting in slices: each run of unicasts in one call per slice,
    each broadcast as `_broadcast_sliced`. ``sent[0]`` is how many went out,
    also when a KeyboardInterrupt propagates."""
    done = 0
    sent[0] = 0
    n = ffi.new("size_t *")
    waited = 0  # ms that envs[done] waited in slices that ran out
    slice_ms = first
    rc = 0
    while done < count:
        head = envs + done
        if head.pid == BROADCAST:
            rc = _broadcast_sliced(handle, head, ms, err, phantom, slice_ms)
            slice_ms = _SLICE_MS
            if rc:
                break
            done += 1
            sent[0] = done
            waited = 0
            continue
        run = done + 1
        while run < count and envs[run].pid != BROADCAST:
            run += 1
        wait = slice_ms if ms < 0 else max(0, min(slice_ms, ms - waited))
        err.code = _NO_STATUS
        n[0] = 0
        start = 0.0
        added = False
        try:
            start = _monotonic()
            rc = _send_batch(handle, head, run - done, wait, n, err)
            k = n[0]
            done += k
            sent[0] = done
            added = True
            if rc != _FULL:
                if rc:
                    break
                continue
            # The first envelope of the call dropped at once: a peer down. A
            # later one waited at most `wait`: counted as if it waited it all.
            real = k == 0 and _monotonic() - start < wait / 1000
            waited = wait if k else waited + wait
            if real or (ms >= 0 and waited >= ms):
                break
            phantom[envs[done].pid] = phantom.get(envs[done].pid, 0) + 1
            err.code = _NO_STATUS  # counted
        except BaseException:  # a signal handler raised
            if err.code != _NO_STATUS:
                k = n[0]
                if not added:
                    done += k
                    sent[0] = done
                if err.code == _FULL and (k or _monotonic() - start >= wait / 1000):
                    _note_phantom(phantom, envs[done].pid)
            raise
        slice_ms = _SLICE_MS
    return rc


def fill_envelope(e: Any, pid: Any, msg: Any, msg_id: Any, kind: Optional[int]) -> Any:
    """Fills the C envelope ``e`` for a send of ``msg`` (encoded by its type
    unless ``kind`` is given); returns what must live until the send
    returned (the payload's buffer)."""
    if kind is None and type(msg) is bytes:
        kind = KIND_BYTES
        data = msg
    else:
        kind, data = encode(msg, kind)
    try:
        e.pid = pid
        e.msg_id = msg_id
    except (OverflowError, TypeError):
        c_int(pid, "pid")
        c_int(msg_id, "msg_id")
        raise
    e.kind = kind
    if not data:
        e.data = _NULL
        e.len = 0
        return None
    buf = _from_buffer(data)
    e.data = buf
    e.len = len(buf)  # in bytes, also for a memoryview of wider items
    return buf


def envelope_for(pid: Any, msg: Any, msg_id: Any, kind: Optional[int]) -> Tuple[Any, Any]:
    """A new C envelope for a send, and what must live until the send returned."""
    e = ffi.new("cluster_envelope_t *")
    return e, fill_envelope(e, pid, msg, msg_id, kind)


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


class _PerThread(threading.local):
    """Buffers one thread uses with one node, so that threads never share C memory
    (for the cffi path; with `_speedups` only `send_many` uses ``err`` and ``sent``).

    ``rbuf`` (and ``batch``) hold a received payload until it has been turned
    into Python objects; ``one[0]`` (a received envelope) and ``pend[0]`` (a
    received batch, from index ``pos`` on) hold those objects until the call
    returns. All survive a KeyboardInterrupt, so the next receive on this
    thread returns what the interrupted one had already taken.
    """

    def __init__(self) -> None:
        self.err = ffi.new("cluster_error_t *")
        self.env = ffi.new("cluster_envelope_t *")
        self.rbuf = ffi.gc(ffi.new("cluster_envelope_t *"), lib.cluster_envelope_free)
        self.count = ffi.new("size_t *")  # envelopes in `batch` not yet taken
        self.sent = ffi.new("size_t *")
        self.err_addr = _addr(self.err)
        self.sent_addr = _addr(self.sent)
        self.batch: Any = None
        self.batch_owner: Any = None
        self.batch_cap = 0
        self.one: List[Optional[Envelope]] = [None]
        self.pend: List[Optional[List[Envelope]]] = [None]
        self.pos = 0


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
        self._hint = _addr(handle)
        self._pid = pid
        self._tls = _PerThread()
        self._closing = False
        self._port: Any = None
        # Drops the core counted for a send's slice that ran out, by
        # destination: the send went on waiting, so `stats` takes them off.
        self._phantom: Dict[int, int] = {}
        # A mock server writes no frames on the caller's thread: its sends
        # can wait in short slices from the start.
        self._first_slice = _SLICE_MS if keep is not None else _FIRST_SEND_SLICE_MS
        if _sp is not None:
            # The hot calls in C, with read-ahead (see _speedups.c). Sends are
            # bound on the instance: `node.send(...)` is one C call with no
            # Python frame (`Node.send` documents it and delegates). Receives
            # keep a frame of their own, which tells the port the result got
            # through (see `recv`).
            port = self._port = _sp.Port(self._hint, self._handle, self._phantom, self._first_slice)
            vars(self).update(send=port.send)
        self.inbox = Inbox(self)
        self.outbox = Outbox(self)
        if self._port is not None:
            vars(self.outbox).update(put=self._port.put)
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
        KeyboardInterrupt is raised between two, the message not sent. The
        core drops and counts a message whose slice ran out, and the wrapper
        sends it again; `stats` takes those drops off (a mock's trace shows
        each attempt). A broadcast that may wait so is sent to each peer in
        turn.
        """
        if self._port is not None:
            self._port.send(pid, msg, msg_id, timeout, kind=kind)
            return
        st = self._tls
        ms = -1 if timeout is None else timeout_ms(timeout)
        e = st.env
        buf = fill_envelope(e, pid, msg, msg_id, kind)
        if (ms < 0 or ms > self._first_slice) and _get_ident() == _MAIN_THREAD:
            rc = _send_sliced(self._handle, e, ms, st.err, self._phantom, self._first_slice)
        else:
            rc = _send(self._handle, e, ms, st.err)
        del buf
        if rc:
            raise_error(rc, st.err)

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
        items = envelopes if type(envelopes) is list else list(envelopes)
        count = len(items)
        if count == 0:
            return 0
        st = self._tls
        ms = timeout_ms(timeout)
        rc = _NEEDS_PYTHON
        port = self._port
        if port is not None:  # every payload bytes: the C path
            rc = port.send_many(items, ms, st.sent_addr, st.err_addr)
        if rc == _NEEDS_PYTHON:
            rc = self._send_many_packed(items, ms, st)
        if rc:
            n = st.sent[0]
            try:
                raise_error(rc, st.err)
            except ClusterError as e:
                e.sent = n  # type: ignore[attr-defined]
                raise
        return count

    def _send_many_packed(self, items: Sequence[Any], ms: int, st: _PerThread) -> int:
        """send_many without `_speedups`, or with payloads to encode first."""
        # The envelopes are packed with `struct` into one buffer laid out as
        # cluster_envelope_t[count], their payloads joined into another:
        # much cheaper than filling C structs field by field from Python.
        count = len(items)
        payloads = []
        fields: List[Any] = []
        offset = 0
        for item in items:
            msg = item[2]
            if type(msg) is bytes and len(item) < 4:
                kind = KIND_BYTES
                data = msg
            else:
                kind, data = encode(msg, _kind_for_send(item))
                if type(data) is not bytes:
                    data = bytes(data)
            n = len(data)
            payloads.append(data)
            fields += (item[0], item[1], kind, offset, n)
            offset += n
        joined = b"".join(payloads)
        keep = _from_buffer(joined)
        base = int(ffi.cast("uintptr_t", keep))
        for i in range(3, len(fields), 5):
            fields[i] += base
        raw = bytearray(count * _ENV_SIZE)
        try:
            _packer(count).pack_into(raw, 0, *fields)
        except struct.error:
            for i, item in enumerate(items):
                c_int(item[0], f"envelopes[{i}].pid")
                c_int(item[1], f"envelopes[{i}].msg_id")
            raise
        envs = _from_buffer("cluster_envelope_t[]", raw)
        rc: int
        if (ms < 0 or ms > self._first_slice) and _get_ident() == _MAIN_THREAD:
            try:
                rc = _batch_sliced(self._handle, envs, count, ms, st.sent, st.err, self._phantom, self._first_slice)
            except BaseException as e:  # KeyboardInterrupt
                e.sent = st.sent[0]  # type: ignore[attr-defined]
                raise
        else:
            rc = _send_batch(self._handle, envs, count, ms, st.sent, st.err)
        del keep
        return rc

    # -- receiving ----------------------------------------------------------

    def recv(self, timeout: Timeout = None) -> Envelope:
        """The next received envelope, its ``pid`` the sender's id.

        Waits up to ``timeout`` seconds (None = for ever, 0 = not at all),
        then raises `Timeout`. Raises `Closed` when the node is closed (at
        once if another thread closes it meanwhile). Releases the GIL while
        it waits; Ctrl-C raises KeyboardInterrupt within about 50 ms.

        With `_speedups`, a receive takes every envelope already waiting (up
        to 256) from the node at once and returns the others from the next
        calls, on any thread, in order; see `stats` for how they are counted.
        """
        port = self._port
        if port is not None:
            got: Envelope = port.recv(timeout)
            # Python may raise an interrupt right after a C call returns; until
            # this store (which it never interrupts) the port keeps `got` and
            # the next receive returns it again.
            port.pending = None
            return got
        # A message is first kept in C memory owned by this thread's state,
        # then in `st.one` (or `st.pend` for a batch), and is released from
        # the one only once it is in the other; so a KeyboardInterrupt,
        # which Python raises only after a function call returns, never
        # loses it: the next receive on this thread returns it.
        st = self._tls
        one = st.one
        env = one[0]
        if env is not None:
            one[0] = None
            return env
        if st.pend[0] is not None or (st.batch is not None and st.count[0]):
            return self._next_pending(st)
        total = timeout_ms(timeout)
        ms = _first_slice(total)
        buf = st.rbuf
        if buf._owner == _NULL:
            rc = _recv(self._handle, buf, ms, st.err)
            if rc:
                self._wait(_recv, (self._handle, buf), (st.err,), rc, ms, total, st)
        n = buf.len
        kind = buf.kind
        data = _unpack(buf.data, n) if n else b""
        env = _new_tuple(Envelope, (buf.pid, buf.msg_id, data if kind == 0 else decode(kind, data), kind))
        one[0] = env
        _envelope_free(buf)
        one[0] = None
        return env

    def _next_pending(self, st: _PerThread) -> Envelope:
        """The next envelope of a batch that an interrupted call took."""
        p = st.pend[0]
        if p is None:
            p = self._take_batch(st)
        i = st.pos
        env = p[i]
        if i + 1 >= len(p):
            st.pend[0] = None
        else:
            st.pos = i + 1
        return env

    def recv_many(self, max: int = 1024, timeout: Timeout = None) -> List[Envelope]:
        """Up to ``max`` envelopes in one foreign call: waits up to ``timeout``
        for the first (as `recv`), then takes what is already there. Never
        returns an empty list: raises `Timeout` or `Closed` instead. ``max``
        above 65536 counts as 65536 (the buffer is kept per thread). With
        `_speedups`, envelopes a `recv` read ahead come first."""
        port = self._port
        if port is not None:
            envs: List[Envelope] = port.recv_many(max, timeout)
            port.pending = None  # as in `recv`
            return envs
        try:
            max = operator.index(max)
        except TypeError:
            raise TypeError(f"max must be an integer, not {type(max).__name__}") from None
        if max < 1:
            raise ValueError(f"max must be at least 1, got {max}")
        if max > _MAX_BATCH:
            max = _MAX_BATCH
        st = self._tls
        env = st.one[0]
        if env is not None:  # what an interrupted recv took
            st.one[0] = None
            return [env]
        if st.rbuf._owner != _NULL:  # an interrupted recv's message comes first
            return [self.recv()]
        p = st.pend[0]
        if p is None:
            if st.count[0]:
                p = self._take_batch(st)
            else:
                if st.batch is None or st.batch_cap < max:
                    # The gc'd array frees its payloads when dropped; index it
                    # through a plain pointer (the gc'd copy has no length).
                    owner = ffi.gc(ffi.new("cluster_envelope_t[]", max), _free_batch(max))
                    st.batch_owner = owner
                    st.batch = ffi.cast("cluster_envelope_t *", owner)
                    st.batch_cap = max
                st.pos = 0
                total = timeout_ms(timeout)
                ms = _first_slice(total)
                head = (self._handle, st.batch, max, st.count)
                rc = _recv_batch(*head, ms, st.err)
                if rc:
                    self._wait(_recv_batch, head, (st.err,), rc, ms, total, st)
                p = self._take_batch(st)
        i = st.pos
        st.pend[0] = None
        return p[i:] if i else p

    @staticmethod
    def _take_batch(st: _PerThread) -> List[Envelope]:
        """Turns the envelopes of this thread's batch buffer into ``st.pend[0]``."""
        arr = st.batch
        n = st.count[0]
        out: List[Envelope] = []
        append = out.append
        for i in range(n):
            c = arr[i]
            ln = c.len
            kind = c.kind
            data = _unpack(c.data, ln) if ln else b""
            append(_new_tuple(Envelope, (c.pid, c.msg_id, data if kind == 0 else decode(kind, data), kind)))
        st.pos = 0
        st.pend[0] = out
        st.count[0] = 0
        _envelopes_free(arr, n)
        return out

    def _wait(
        self,
        fn: Callable[..., Any],
        head: Tuple[Any, ...],
        tail: Tuple[Any, ...],
        got: int,
        waited_ms: int,
        timeout: int,
        st: _PerThread,
    ) -> Any:
        """Goes on with a blocking receive that returned status ``got`` after
        waiting ``waited_ms``: calls ``fn(*head, ms, *tail)`` again in slices
        of at most 50 ms (Python handles signals between two calls) until it
        returns something other than a timeout, or ``timeout`` (ms, negative
        = for ever) runs out. Raises a failed status."""
        if timeout < 0:
            while got == _TIMEOUT:
                got = fn(*head, _SLICE_MS, *tail)
        else:
            deadline = time.monotonic() + (timeout - waited_ms) / 1000
            while got == _TIMEOUT:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                got = fn(*head, min(math.ceil(left * 1000), _SLICE_MS), *tail)
        if got:
            raise_error(got, st.err)
        return got

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
        thread. Messages still in the inbox are discarded, and so are those a
        receive read ahead (counted in ``stats()["discarded"]`` alike)."""
        self._closing = True
        err = ffi.new("cluster_error_t *")
        check(lib.cluster_close(self._handle, err), err)
        if self._port is not None:
            self._port.discard_if_closed()
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
        closed node too.

        ``delivered`` counts the envelopes receives returned; envelopes read
        ahead but not yet returned count in ``inbox_depth``, and those thrown
        away at close in ``discarded``, as if they had stayed in the inbox."""
        port = self._port
        if port is not None:
            port.discard_if_closed()
            buffered, discarded = port.buffered, port.discarded
        stats: Dict[str, Any] = json.loads(take_string(lib.cluster_stats, self._handle))
        if self._phantom:
            # Drops the core counted for sends' slices that ran out (see
            # `send`): the sends went on waiting. Read after the core's
            # counters, so a send between the two may show one drop more.
            phantom = dict(self._phantom)
            stats["dropped"]["queue_full"] -= sum(phantom.values())
            for peer in stats.get("peers", ()):
                drops = peer.get("dropped")
                if isinstance(drops, dict) and peer.get("id") in phantom:
                    drops["queue_full"] -= phantom[peer["id"]]
        if port is not None:
            # The core counts an envelope delivered when the port takes it.
            stats["delivered"] -= buffered + discarded
            stats["inbox_depth"] = stats.get("inbox_depth", 0) + buffered
            stats["discarded"] = stats.get("discarded", 0) + discarded
        return stats

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


def _kind_for_send(env: Sequence[Any]) -> Optional[int]:
    """The kind an envelope is sent with: its own for a bytes payload (so a
    received envelope travels on unchanged), else chosen from the payload's type."""
    if len(env) > 3 and isinstance(env[2], (bytes, bytearray, memoryview)):
        kind: Optional[int] = env[3]
        return kind
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
        self._port = node._port

    def get(self, timeout: Timeout = None) -> Envelope:
        """`Node.recv`: the next envelope, waiting up to ``timeout`` seconds."""
        port = self._port
        if port is not None:  # as Node.recv does, without a second frame
            got: Envelope = port.recv(timeout)
            port.pending = None
            return got
        env: Envelope = self._node.recv(timeout)
        return env

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


if _sp is not None:
    _sp.init(
        _addr(lib.cluster_send),
        _addr(lib.cluster_send_batch),
        _addr(lib.cluster_recv_batch),
        _addr(lib.cluster_envelopes_free),
        _addr(lib.cluster_is_closed),
        _addr(lib.cluster_peers),
        Envelope,
        decode,
        encode,
        error_for,
        OutOfRange,
        threading.main_thread().ident,
    )
