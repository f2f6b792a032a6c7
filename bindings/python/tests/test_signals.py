"""Ctrl-C: a process blocked in recv gets SIGINT and ends with KeyboardInterrupt;
interrupts landing while messages flow lose none of them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

import cluster
from conftest import make_config, wait_connected

BLOCKED = textwrap.dedent(
    """
    import sys, cluster
    node = cluster.Node(1, sys.argv[1])
    print("ready", flush=True)
    node.recv()  # blocks for ever
    """
)

# The same with a timeout of infinity (waits for ever, in slices too).
BLOCKED_INF = BLOCKED.replace("node.recv()", 'node.recv(float("inf"))')

# The main thread blocks in recv while another thread is blocked in recv on
# the same node: one of them takes from the node, the other waits for its
# turn (with `_speedups`, the port's lock); Ctrl-C must end either wait.
BLOCKED_BEHIND_A_THREAD = textwrap.dedent(
    """
    import sys, threading, time, cluster
    node = cluster.Node(1, sys.argv[1])
    threading.Thread(target=node.recv, daemon=True).start()
    time.sleep(0.1)  # lets the thread block first (the test holds either way)
    print("ready", flush=True)
    node.recv()  # blocks for ever
    """
)

# Receives until the message with msg_id -1, through recv and recv_many,
# catching KeyboardInterrupt. After each interrupt it writes "ack" from
# inside the try block, and the test sends the next SIGINT only after
# reading it, so no signal can land outside the try.
RECEIVER = textwrap.dedent(
    """
    import json, sys, cluster
    node = cluster.Node(2, sys.argv[1])
    got, interrupts, need_ack = [], 0, False
    print("ready", flush=True)
    while True:
        try:
            if need_ack:
                need_ack = False
                print("ack", flush=True)
            while True:
                # What a call returns is stored by the very next call, so no
                # interrupt can land between the two.
                if len(got) % 3:
                    got.append((node.recv(),))
                else:
                    got.append(node.recv_many(16))
                if got[-1][-1].msg_id == -1:
                    raise StopIteration
        except KeyboardInterrupt:
            interrupts += 1
            need_ack = True
        except StopIteration:
            break
    ids = [e.msg_id for part in got for e in part if e.msg_id != -1]
    print(json.dumps({"ids": ids, "interrupts": interrupts}), flush=True)
    node.close()
    """
)


def spawn(script: str, tmp_path, *args: str) -> subprocess.Popen:
    path = tmp_path / "child.py"
    path.write_text(script)
    return subprocess.Popen(
        [sys.executable, str(path), *args],
        cwd=tmp_path,  # `import cluster` from any directory
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize(
    "script",
    [BLOCKED, BLOCKED_INF, BLOCKED_BEHIND_A_THREAD],
    ids=["blocked_recv", "recv_for_ever_as_inf", "recv_waiting_behind_another_thread"],
)
def test_sigint_interrupts_a_recv(tmp_path, script):
    cfg = json.dumps(make_config([1]))
    child = spawn(script, tmp_path, cfg)
    try:
        assert child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=20)
    finally:
        child.kill()
    assert "KeyboardInterrupt" in err
    assert child.returncode in (-signal.SIGINT, 1, 130)


def test_interrupts_while_messages_flow_lose_none(tmp_path):
    cfg = make_config([1, 2], InboxSize=64)
    child = spawn(RECEIVER, tmp_path, json.dumps(cfg))
    n = 20_000
    try:
        assert child.stdout.readline().strip() == "ready"
        with cluster.Node(1, cfg) as node:
            wait_connected([node])
            # The sender waits for one more interrupt every `per` messages,
            # so however fast the wrapper is, a couple of hundred interrupts
            # land while messages flow.
            per = 100
            acked = threading.Semaphore(0)

            def send() -> None:
                for i in range(n):
                    if i and i % per == 0:
                        acked.acquire()
                    node.send(2, b"m", msg_id=i)

            sender = threading.Thread(target=send)
            sender.start()
            signals = 0
            while sender.is_alive() or signals == 0:
                child.send_signal(signal.SIGINT)
                signals += 1
                line = child.stdout.readline().strip()
                assert line == "ack", child.stderr.read()
                acked.release()
            sender.join()
            node.send(2, b"done", msg_id=-1)
            report = json.loads(child.stdout.readline())
        child.wait(timeout=20)
    finally:
        child.kill()
    assert report["interrupts"] == signals >= n // per
    assert report["ids"] == list(range(n))
