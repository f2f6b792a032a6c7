"""asyncio: arecv, asend and ``async for`` on real nodes and mock servers,
cancellation that never loses a message, and the request/reply example."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import cluster
from cluster import MockCluster
from conftest import make_config

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "asyncio_echo.py"


@pytest.fixture(params=["tcp", "mock"])
def pair(request, nodes):
    """Two nodes, 1 and 2: real ones on loopback, or servers of a mock."""
    if request.param == "tcp":
        yield nodes([1, 2])
        return
    with MockCluster(make_config([1, 2])) as mock:
        yield mock.servers[1], mock.servers[2]


def test_arecv_waits_for_a_message_sent_later(pair):
    a, b = pair

    async def main():
        got = asyncio.ensure_future(b.arecv(10))
        await asyncio.sleep(0.05)
        assert not got.done(), "nothing was sent yet"
        await a.asend(2, "hello", msg_id=5)
        return await got

    env = asyncio.run(main())
    assert (env.pid, env.msg_id, env.msg) == (1, 5, "hello")


def test_arecv_times_out_and_a_cancelled_one_takes_nothing(pair):
    a, b = pair

    async def main():
        with pytest.raises(cluster.Timeout):
            await b.arecv(0.05)
        waiting = asyncio.ensure_future(b.arecv())
        await asyncio.sleep(0.02)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await a.asend(2, b"after the cancel")
        return await b.arecv(10)

    assert asyncio.run(main()).msg == b"after the cancel"
    assert b.stats()["delivered"] == 1


def test_async_for_until_the_node_closes(pair):
    a, b = pair

    async def main():
        got = []

        async def consume():
            async for env in b:
                got.append(env.msg_id)
                if len(got) == 3:
                    b.close()

        task = asyncio.ensure_future(consume())
        for i in range(3):
            await a.asend(2, b"x", msg_id=i)
        await asyncio.wait_for(task, 10)
        return got

    assert asyncio.run(main()) == [0, 1, 2]


def test_closing_from_another_thread_wakes_a_waiting_arecv(pair):
    a, b = pair

    async def main():
        threading.Timer(0.05, b.close).start()
        with pytest.raises(cluster.Closed):
            await asyncio.wait_for(b.arecv(), 10)

    asyncio.run(main())


def test_cancellation_storm_loses_and_duplicates_nothing():
    """10,000 arecvs cancelled at random points (timeouts and cancel())
    while 3,000 messages flow from another thread: every message is
    received exactly once, in order."""
    total = 3000
    with MockCluster(make_config([1, 2], InboxSize=64)) as mock:
        a, b = mock.servers[1], mock.servers[2]

        def produce():
            for i in range(total):
                a.send(2, b"m", msg_id=i)
                if i % 50 == 0:
                    threading.Event().wait(0.001)

        async def main():
            rng = random.Random(7)
            got = []
            cancelled = 0

            async def consumer():
                nonlocal cancelled
                while len(got) < total or cancelled < 10_000:
                    task = asyncio.ensure_future(b.arecv())
                    loop.call_later(rng.uniform(0, 0.0005), task.cancel)
                    try:
                        got.append((await task).msg_id)
                    except asyncio.CancelledError:
                        cancelled += 1
                    if len(got) >= total and cancelled >= 10_000:
                        return

            loop = asyncio.get_running_loop()
            sender = threading.Thread(target=produce)
            sender.start()
            try:
                await asyncio.wait_for(asyncio.gather(*(consumer() for _ in range(8))), 120)
            finally:
                sender.join()
            return got, cancelled

        got, cancelled = asyncio.run(main())
        assert cancelled >= 10_000
        assert len(got) == total, "every message once"
        assert sorted(got) == list(range(total))
        assert b.stats()["delivered"] == total


def test_asend_waits_for_room_and_a_cancelled_one_sends_nothing():
    with MockCluster(make_config([1, 2], InboxSize=2)) as mock:
        a, b = mock.servers[1], mock.servers[2]

        async def main():
            await a.asend(2, b"0", msg_id=0)
            await a.asend(2, b"1", msg_id=1)
            blocked = asyncio.ensure_future(a.asend(2, b"2", msg_id=2))
            await asyncio.sleep(0.05)
            assert not blocked.done(), "the inbox is full: asend waits"
            blocked.cancel()
            with pytest.raises(asyncio.CancelledError):
                await blocked
            waiting = asyncio.ensure_future(a.asend(2, b"3", msg_id=3))
            await asyncio.sleep(0.05)
            assert [b.recv(0).msg_id, b.recv(0).msg_id] == [0, 1]
            await asyncio.wait_for(waiting, 10)
            assert b.recv(1).msg_id == 3, "the cancelled message 2 was never sent"
            await a.asend(2, b"4", msg_id=4)
            await a.asend(2, b"5", msg_id=5)
            with pytest.raises(cluster.Full):
                await a.asend(2, b"6", msg_id=6, timeout=0.05)
            assert [b.recv(0).msg_id, b.recv(0).msg_id] == [4, 5]
            await a.asend(2, b"7", msg_id=7)
            assert b.recv(1).msg_id == 7

        asyncio.run(main())
        assert a.stats()["dropped"]["queue_full"] == 1, "only the asend that timed out"


def test_the_request_reply_example_runs(tmp_path):
    out = subprocess.run(
        [sys.executable, str(EXAMPLE)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "HELLO" in out.stdout and "3 replies" in out.stdout, out.stdout
