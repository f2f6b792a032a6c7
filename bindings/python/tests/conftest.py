"""Shared helpers: free loopback ports, configs, waiting on conditions."""

from __future__ import annotations

import json
import socket
import time
from typing import Any, Callable, Dict, Iterator, List

import pytest

import cluster


def pytest_report_header() -> str:
    return f"cluster {cluster.__version__} from {cluster.__file__}"


def free_ports(n: int) -> List[int]:
    """``n`` distinct loopback ports the OS just handed out (bound to port 0)."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def make_config(ids: List[int], **settings: Any) -> Dict[str, Any]:
    """A loopback config for ``ids`` on free ports, plus extra settings."""
    ports = free_ports(len(ids))
    cfg: Dict[str, Any] = {
        "Peers": [{"Id": i, "Address": f"127.0.0.1:{p}"} for i, p in zip(ids, ports)]
    }
    cfg.update(settings)
    return cfg


def wait_until(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Polls ``cond`` until it is truthy; fails the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def connected(node: cluster.Node, peer: int) -> bool:
    """Whether ``node`` has a live connection to ``peer``."""
    return any(p["id"] == peer and p["connected"] for p in node.stats()["peers"])


def wait_connected(nodes: List[cluster.Node]) -> None:
    """Waits until every node is connected to every other."""
    for n in nodes:
        for p in n.peers:
            wait_until(lambda: connected(n, p), what=f"{n.pid} connected to {p}")


@pytest.fixture
def nodes() -> Iterator[Callable[..., List[cluster.Node]]]:
    """Starts real nodes on free ports: ``nodes([1, 2, 3], InboxSize=10)``;
    closes them all at the end of the test."""
    started: List[cluster.Node] = []

    def start(ids: List[int], connect: bool = True, **settings: Any) -> List[cluster.Node]:
        cfg = make_config(ids, **settings)
        ns = [cluster.Node(i, cfg) for i in ids]
        started.extend(ns)
        if connect:
            wait_connected(ns)
        return ns

    yield start
    for n in started:
        n.close()


def config_json(ids: List[int], **settings: Any) -> str:
    return json.dumps(make_config(ids, **settings))
