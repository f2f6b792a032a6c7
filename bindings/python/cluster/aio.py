"""asyncio for `Node`: `arecv`, `asend` and ``async for``, built on the
node's receive descriptor (``cluster_recv_fd``: readable exactly while a
receive would not block) and the loop's ``add_reader``. No thread per call.

A receive takes a message only in a synchronous, non-blocking call made
once the descriptor (or a message already at hand) says one waits, so a
task cancelled while it waits has taken nothing: cancellation never loses
a message. A send that finds a live peer's queue full keeps the message
(``cluster_try_send``) and tries again later; cancelled, it has sent
nothing and dropped nothing.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, AsyncIterator, Dict, List, Optional

from ._ffi import ffi, lib
from .errors import Closed, Timeout, raise_error

if TYPE_CHECKING:  # pragma: no cover
    from .node import Envelope, Node

_TIMEOUT = -8  # CLUSTER_E_TIMEOUT
# How often a send that found no room tries again: from the first to the
# last, doubling (a queue drains at network speed; no descriptor says when).
_FIRST_RETRY_S = 0.0002
_LAST_RETRY_S = 0.02


def _seconds(timeout: Optional[float]) -> Optional[float]:
    """A timeout argument checked as `Node.recv` checks it; None = for ever."""
    from .node import timeout_ms

    ms = timeout_ms(timeout)
    return None if ms < 0 else ms / 1000


class Readiness:
    """One node's receive descriptor, watched for every task of a loop that
    waits on it (a loop has one reader callback per descriptor)."""

    def __init__(self, node: "Node") -> None:
        err = ffi.new("cluster_error_t *")
        fd = ffi.new("int *")
        rc = lib.cluster_recv_fd(node._handle, fd, err)
        if rc:
            raise_error(rc, err)
        self.fd: int = fd[0]
        self._waiters: Dict[asyncio.AbstractEventLoop, List["asyncio.Future[None]"]] = {}

    def wait(self, loop: asyncio.AbstractEventLoop) -> "asyncio.Future[None]":
        """A future done once the descriptor is readable."""
        fut: "asyncio.Future[None]" = loop.create_future()
        waiters = self._waiters.get(loop)
        if waiters is None:
            waiters = self._waiters[loop] = []
            loop.add_reader(self.fd, self._wake, loop)
        waiters.append(fut)
        fut.add_done_callback(lambda f: self._forget(loop, f))
        return fut

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        for fut in self._waiters.get(loop, ())[:]:
            if not fut.done():
                fut.set_result(None)

    def _forget(self, loop: asyncio.AbstractEventLoop, fut: "asyncio.Future[None]") -> None:
        waiters = self._waiters.get(loop)
        if waiters is None:
            return
        waiters.remove(fut)
        if not waiters:
            del self._waiters[loop]
            if not loop.is_closed():
                loop.remove_reader(self.fd)


def _readiness(node: "Node") -> Readiness:
    r: Optional[Readiness] = node._readiness
    if r is None:
        r = node._readiness = Readiness(node)
    return r


async def recv(node: "Node", timeout: Optional[float] = None) -> "Envelope":
    """`Node.arecv`."""
    loop = asyncio.get_running_loop()
    seconds = _seconds(timeout)
    deadline = None if seconds is None else loop.time() + seconds
    readiness = None
    while True:
        try:
            return node.recv(0)
        except Timeout:
            pass
        if readiness is None:
            readiness = _readiness(node)
        left = None if deadline is None else deadline - loop.time()
        if left is not None and left <= 0:
            raise Timeout(f"no message within {timeout} s", _TIMEOUT)
        ready = readiness.wait(loop)
        try:
            await asyncio.wait_for(ready, left)
        except asyncio.TimeoutError:
            raise Timeout(f"no message within {timeout} s", _TIMEOUT) from None


async def send(node: "Node", pid: int, msg: Any, msg_id: int, timeout: Optional[float], kind: Optional[int]) -> None:
    """`Node.asend`."""
    loop = asyncio.get_running_loop()
    seconds = _seconds(timeout)
    deadline = None if seconds is None else loop.time() + seconds
    port = node._port
    pause = _FIRST_RETRY_S
    while not port.try_send(pid, msg, msg_id, kind):
        left = None if deadline is None else deadline - loop.time()
        if left is not None and left <= 0:
            # As `send` at the end of its timeout: dropped and counted (Full).
            port.send(pid, msg, msg_id, 0, kind=kind)
            return
        await asyncio.sleep(pause if left is None else min(pause, left))
        pause = min(pause * 2, _LAST_RETRY_S)


async def iterate(node: "Node") -> AsyncIterator["Envelope"]:
    """``async for env in node``: received envelopes until the node closes."""
    while True:
        try:
            env = await recv(node)
        except Closed:
            return
        yield env
