"""The mock network: a simulated cluster in one process, with fault injection."""

from __future__ import annotations

import json
import math
import threading
import warnings
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

from ._ffi import ffi, lib
from .node import UINT64, Config, Node, _open_mocks, c_int, check, config_text, read_ids, take_string


def _free_mock(mock: Any, _free: Callable[[Any], None] = lib.cluster_mock_free) -> None:
    _free(mock)


# CLUSTER_CLOCK_REAL and CLUSTER_CLOCK_VIRTUAL of cluster.h.
_CLOCKS = {"real": 0, "virtual": 1}


class MockCluster:
    """A simulated cluster in one process, as the original Go ``mock`` package.

    ``config`` (a dict, JSON text, a path, or None for an empty cluster) gives
    the queue sizes, and every configured id is started as a server
    (addresses may be left out and are not used; nothing touches the network
    or DNS). ``seed`` (0..2**64-1) drives every drop, duplicate and delay
    decision, so a failing run can be replayed.

    Servers are `Node` objects: the same send/recv code runs against them
    and against real nodes. ``servers`` maps the id of each open server to
    its node. Use it as a context manager, or call `close`.

    ``clock="virtual"`` runs the cluster on a virtual clock: time stands
    still until `advance` or `run_until_idle`, delayed messages then land
    in a deterministic order (due time, sender, destination, number on the
    link), and the same seed and the same sends in the same order give the
    same trace, whose events carry ``t_us``, the virtual time in µs. A
    receive with a positive timeout waits in virtual time: another thread
    must advance it (see the README); ``recv(timeout=0)`` after `advance`
    is the single-threaded way. The default, ``"real"``, is unchanged.
    """

    def __init__(self, config: Optional[Config] = None, seed: int = 0, clock: str = "real") -> None:
        if clock not in _CLOCKS:
            raise ValueError(f"clock must be 'real' or 'virtual', not {clock!r}")
        err = ffi.new("cluster_error_t *")
        out = ffi.new("cluster_mock_t **")
        text = ffi.NULL if config is None else config_text(config)
        check(lib.cluster_mock_new(text, c_int(seed, "seed", UINT64), out, err), err)
        self._handle = ffi.gc(out[0], _free_mock)
        self._clock = clock
        self._call(lib.cluster_mock_clock, _CLOCKS[clock])
        self._closing = False
        self._nodes: Dict[int, Node] = {}
        # One Node per open server: a second handle would close the server
        # when it is freed.
        self._lock = threading.Lock()
        _open_mocks.add(self)
        for pid in read_ids(lib.cluster_mock_servers, self._handle):
            self.add_server(pid)

    def add_server(self, pid: int) -> Node:
        """Adds server ``pid``, or adds it again (with an empty inbox) after it
        was closed. For a server that is open already, returns its node."""
        with self._lock:
            node = self._nodes.get(pid)
            if node is not None and not node.closed:
                return node
            err = ffi.new("cluster_error_t *")
            out = ffi.new("cluster_node_t **")
            check(lib.cluster_mock_add_server(self._handle, c_int(pid, "pid"), out, err), err)
            node = Node._from_handle(out[0], pid, self._handle, self._clock == "virtual")
            self._nodes[pid] = node
            return node

    @property
    def servers(self) -> Dict[int, Node]:
        """The open servers, by id (a fresh dict)."""
        open_ids = read_ids(lib.cluster_mock_servers, self._handle)
        return {pid: self._nodes[pid] for pid in open_ids if pid in self._nodes}

    def for_all(self, fn: Callable[[Node], Any]) -> None:
        """Calls ``fn`` on every open server."""
        for node in self.servers.values():
            fn(node)

    def partition(self, *groups: Iterable[int]) -> None:
        """Splits the cluster: messages do not cross groups (they are dropped and
        counted). Servers not named form one more group. Replaces any earlier
        partition; ``partition()`` with no group heals."""
        lists = [list(g) for g in groups]
        ids = [c_int(i, "server id") for g in lists for i in g]
        err = ffi.new("cluster_error_t *")
        check(
            lib.cluster_mock_partition(
                self._handle,
                ffi.new("int64_t[]", ids),
                ffi.new("size_t[]", [len(g) for g in lists]),
                len(lists),
                err,
            ),
            err,
        )

    def heal(self) -> None:
        """Removes the partition (node cuts and held links stay)."""
        self._call(lib.cluster_mock_heal)

    def hold(self, src: int, dst: int) -> None:
        """Holds the link ``src`` -> ``dst``: later messages on it are kept
        (at most OutboxSize) until `release`."""
        self._call(lib.cluster_mock_hold, c_int(src, "src"), c_int(dst, "dst"))

    def release(self, src: int, dst: int, shuffle: bool = False) -> None:
        """Delivers what the held link ``src`` -> ``dst`` kept, in order or in
        an order drawn from the seed (``shuffle``), and opens it."""
        self._call(lib.cluster_mock_release, c_int(src, "src"), c_int(dst, "dst"), 1 if shuffle else 0)

    @property
    def clock(self) -> str:
        """``"real"`` or ``"virtual"``: the clock the cluster runs on."""
        return self._clock

    def now(self) -> float:
        """Virtual time in seconds (whole milliseconds) since the cluster
        started. Raises `InvalidArgument` on the real clock."""
        ms = ffi.new("int64_t *")
        self._call(lib.cluster_mock_now, ms)
        return int(ms[0]) / 1000

    def advance(self, seconds: float) -> int:
        """Moves virtual time forward by ``seconds`` (rounded up to whole
        milliseconds), delivering every delayed message due by then, in
        order, on this thread; returns how many landed in an inbox.
        Receives waiting in virtual time wake once their deadline passes.
        Raises `InvalidArgument` on the real clock or for a negative time."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds != seconds:
            raise TypeError(f"seconds must be a number, not {seconds!r}")
        if seconds < 0:
            raise ValueError(f"cannot advance by {seconds} s: time only moves forward")
        delivered = ffi.new("size_t *")
        self._call(lib.cluster_mock_advance, c_int(math.ceil(seconds * 1000), "milliseconds"), delivered)
        return int(delivered[0])

    def run_until_idle(self) -> int:
        """Delivers every delayed message, moving virtual time to each one's
        due time; returns how many landed. `InvalidArgument` on the real clock."""
        delivered = ffi.new("size_t *")
        self._call(lib.cluster_mock_run_until_idle, delivered)
        return int(delivered[0])

    def trace(self, enable: bool = True) -> None:
        """Starts (or stops) recording every message's fate."""
        self._call(lib.cluster_mock_trace, 1 if enable else 0)

    def take_trace(self) -> List[Dict[str, Any]]:
        """The events recorded since the last call, oldest first: dicts with
        ``event`` (sent, dropped_fault, dropped_full, dropped_closed,
        duplicated, delayed, held, delivered), ``from``, ``to``, ``seq``,
        ``copy``, ``msg_id`` and per event ``reason``, ``delay_us``, ``kind``, ``len``
        (and ``t_us`` on a virtual clock)."""
        return [json.loads(line) for line in self.take_trace_text().splitlines() if line.strip()]

    def take_trace_text(self) -> str:
        """`take_trace` as the library gives it: JSON lines, byte for byte the
        same for the same seed and sends on a virtual clock; what the
        ``cluster-trace`` tool draws as a space-time diagram (SVG)."""
        text: str = take_string(lib.cluster_mock_trace_take, self._handle)
        return text

    def close(self) -> None:
        """Closes every server (blocked calls on them raise `Closed`) and the
        cluster. Idempotent."""
        self._closing = True
        self._call(lib.cluster_mock_close)
        _open_mocks.discard(self)

    def _call(self, fn: Callable[..., int], *args: Any) -> None:
        err = ffi.new("cluster_error_t *")
        check(fn(self._handle, *args, err), err)

    def __enter__(self) -> "MockCluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Node]:
        return iter(self.servers.values())

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        if getattr(self, "_closing", True):
            return
        try:
            _warn(f"unclosed {self!r}", ResourceWarning, source=self)
        except Exception:
            pass
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<MockCluster servers={sorted(self._nodes)} clock={self._clock}>"
