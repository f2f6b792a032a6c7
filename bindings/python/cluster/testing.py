"""Helpers for tests of code built on cluster: loopback configs on free
ports, and waiting until nodes are connected."""

from __future__ import annotations

import socket
import time
from typing import Any, Dict, Iterable, List


def free_ports(n: int) -> List[int]:
    """``n`` distinct loopback ports the OS just handed out (bound to port 0,
    then released, so another process could take one first: fine for tests)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def local_config(ids: Iterable[int], **settings: Any) -> Dict[str, Any]:
    """A config for members ``ids`` on 127.0.0.1, each on a free port, plus
    further settings: ``local_config([1, 2], InboxSize=10)``."""
    ids = list(ids)
    ports = free_ports(len(ids))
    config: Dict[str, Any] = {
        "Peers": [{"Id": i, "Address": f"127.0.0.1:{p}"} for i, p in zip(ids, ports)]
    }
    config.update(settings)
    return config


def connected(node: Any, peer: int) -> bool:
    """Whether ``node`` has a live connection to ``peer``."""
    return any(p["id"] == peer and p["connected"] for p in node.stats()["peers"])


def wait_connected(nodes: Iterable[Any], timeout: float = 30.0) -> None:
    """Waits until each of ``nodes`` is connected to every one of its peers;
    ``TimeoutError`` naming the pair after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    for node in nodes:
        for peer in node.peers:
            while not connected(node, peer):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"node {node.pid} never connected to {peer}")
                time.sleep(0.005)
