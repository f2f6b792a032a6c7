"""Shared helpers: free loopback ports, configs, waiting on conditions."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, List

import pytest

import cluster
from cluster.testing import wait_connected  # noqa: F401 (for the tests)
from cluster.testing import local_config as make_config


def pytest_report_header() -> str:
    return f"cluster {cluster.__version__} from {cluster.__file__}"


def pytest_sessionstart(session: pytest.Session) -> None:
    """With CLUSTER_TEST_INSTALLED=1 (the package test), the tests must run
    against an installed package, not the source tree."""
    if os.environ.get("CLUSTER_TEST_INSTALLED") == "1":
        checkout = Path(__file__).resolve().parents[1]
        where = Path(cluster.__file__).resolve()
        if checkout in where.parents:
            pytest.exit(f"CLUSTER_TEST_INSTALLED=1 but cluster comes from the checkout: {where}", 1)


def recv_all(node: cluster.Node, quiet: float = 0.2) -> List[cluster.Envelope]:
    """What the node receives until nothing arrives for ``quiet`` seconds."""
    got = []
    while True:
        try:
            got.append(node.recv(quiet))
        except cluster.Timeout:
            return got


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
