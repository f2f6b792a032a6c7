"""The mock's virtual clock from Python: time passes only with `advance`,
delayed messages land in a deterministic order, a receive with a timeout
waits in virtual time, and the same seed and sends give the same trace."""

from __future__ import annotations

import random
import threading
from typing import List

import pytest

import cluster
from cluster import MockCluster


def drain(node: cluster.Node) -> List[cluster.Envelope]:
    got = []
    while True:
        try:
            got.append(node.recv(timeout=0))
        except cluster.Timeout:
            return got


def test_delays_pass_only_when_time_is_advanced():
    with MockCluster({"Peers": [{"Id": 1}, {"Id": 2}]}, seed=1, clock="virtual") as mock:
        assert mock.clock == "virtual" and mock.now() == 0
        a, b = mock.servers[1], mock.servers[2]
        a.set_max_delay(100)
        for i in range(20):
            a.send(2, f"m{i}", msg_id=i)
        assert drain(b) == []
        early = mock.advance(0.05)
        assert len(drain(b)) == early and mock.now() == 0.05
        rest = mock.advance(0.05)
        assert early + rest == 20 and len(drain(b)) == rest
        assert mock.now() == 0.1
        assert mock.run_until_idle() == 0


def test_real_clock_is_the_default_and_refuses_virtual_calls():
    with MockCluster(seed=1) as mock:
        assert mock.clock == "real"
        with pytest.raises(cluster.InvalidArgument):
            mock.advance(0.01)
        with pytest.raises(cluster.InvalidArgument):
            mock.now()
    with pytest.raises(ValueError):
        MockCluster(clock="warp")
    with MockCluster(clock="virtual") as mock:
        with pytest.raises(ValueError):
            mock.advance(-1)
        with pytest.raises(TypeError):
            mock.advance("1")  # type: ignore[arg-type]


def scenario(seed: int) -> str:
    """Five servers, delays up to 1 s, losses, a partition and a heal; the trace."""
    with MockCluster(seed=seed, clock="virtual") as mock:
        mock.trace()
        nodes = [mock.add_server(i) for i in range(1, 6)]
        for n in nodes:
            n.set_max_delay(1000)
        nodes[2].set_drop_probability(0.2)
        for phase in range(3):
            if phase == 1:
                mock.partition([1, 2], [3, 4, 5])
            if phase == 2:
                mock.heal()
            for n in nodes:
                for k in range(5):
                    n.broadcast({"phase": phase, "k": k}, msg_id=phase * 10 + k)
            mock.advance(1.0)
            for n in nodes:
                drain(n)
        mock.run_until_idle()
        return mock.take_trace_text()


def test_same_seed_same_trace_byte_for_byte():
    first = scenario(7)
    assert '"t_us":' in first and '"reason":"partition"' in first
    for _ in range(10):
        assert scenario(7) == first
    assert scenario(8) != first


def test_random_scenarios_replay_identically():
    def run(seed: int) -> tuple:
        rng = random.Random(seed)
        with MockCluster(seed=seed, clock="virtual") as mock:
            mock.trace()
            nodes = [mock.add_server(i) for i in range(1, 5)]
            got = []
            for step in range(60):
                n = rng.choice(nodes)
                op = rng.randrange(6)
                if op <= 1:
                    n.send(rng.choice([cluster.BROADCAST, 1, 2, 3, 4]), b"x", msg_id=step, timeout=0)
                elif op == 2:
                    n.set_max_delay(rng.randrange(300))
                elif op == 3:
                    n.set_drop_probability(rng.randrange(4) / 10)
                elif op == 4:
                    mock.advance(rng.randrange(200) / 1000)
                else:
                    got.extend((e.pid, e.msg_id) for e in drain(n))
            mock.run_until_idle()
            for n in nodes:
                got.extend((e.pid, e.msg_id) for e in drain(n))
            return mock.take_trace_text(), got

    for seed in range(25):
        assert run(seed) == run(seed), seed


def test_a_receive_with_a_timeout_waits_in_virtual_time():
    with MockCluster(seed=1, clock="virtual") as mock:
        a, b = mock.add_server(1), mock.add_server(2)
        result: List[object] = []

        def wait() -> None:
            try:
                result.append(b.recv(timeout=0.03))
            except cluster.Timeout as e:
                result.append(e)

        t = threading.Thread(target=wait)
        t.start()
        # The receive ends only once 30 virtual ms passed after it began:
        # advance until it does (bounded).
        for _ in range(100000):
            if not t.is_alive():
                break
            mock.advance(0.001)
        t.join(10)
        assert not t.is_alive()
        assert isinstance(result[0], cluster.Timeout)
        assert mock.now() >= 0.03
        a.send(2, "late")
        assert b.recv(timeout=0).msg == "late"
