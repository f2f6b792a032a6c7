"""Ctrl-C: a process blocked in recv, or in a send on a full peer, gets SIGINT
and ends with KeyboardInterrupt; interrupts landing while messages flow lose
none of them."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time

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
# the same node: both wait in the core; Ctrl-C must end the main thread's.
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


# What a child does once its `node` would block: a thread prints "blocked"
# when the main thread's send has waited a slice in vain, and the main thread
# makes CALL until Ctrl-C, then prints its queue_full drops and how many of a
# batch went out.
SEND_TAIL = textwrap.dedent(
    """
    def watch():
        while not node._port.slices:
            time.sleep(0.005)
        print("blocked", flush=True)

    threading.Thread(target=watch, daemon=True).start()
    try:
        while True:
            CALL
    except KeyboardInterrupt as e:
        dropped = node.stats()["dropped"]["queue_full"]
        print(json.dumps({"queue_full": dropped, "sent": getattr(e, "sent", None)}), flush=True)
        raise
    """
)


# Blocked in a send: node 1 fills the way to node 2, which lives in the test
# and never reads, until a send waits 0.2 s for room in vain (a drop, counted),
# then makes CALL, which waits for room for ever, again and again (on a busy
# machine the way may move on after 0.2 s). A thread prints "blocked" once a
# send slice has run out (the port counts slices, which drop nothing): the
# main thread is in the call. On KeyboardInterrupt the child prints its
# queue_full drops (only the real one) and how many of a batch went out.
SEND_BLOCKED = textwrap.dedent(
    """
    import json, sys, threading, time, cluster, cluster.testing
    from cluster import BROADCAST, Envelope
    node = cluster.Node(1, sys.argv[1])
    cluster.testing.wait_connected([node])
    payload = b"x" * 65536
    n = 0
    while True:
        try:
            node.send(2, payload, msg_id=n, timeout=0.2)
        except cluster.Full:
            break
        n += 1
    """
) + SEND_TAIL

# The same on the mock: server 2's inbox holds one message.
MOCK_SEND_BLOCKED = textwrap.dedent(
    """
    import json, threading, time, cluster
    from cluster import BROADCAST, Envelope
    peers = [{"Id": 1, "Address": "127.0.0.1:1"}, {"Id": 2, "Address": "127.0.0.1:2"}]
    mock = cluster.MockCluster({"Peers": peers, "InboxSize": 1})
    node = mock.servers[1]
    payload = b"m"
    node.send(2, payload)
    try:
        node.send(2, payload, timeout=0)
    except cluster.Full:
        pass
    """
) + SEND_TAIL


# A shell runs background jobs with SIGINT ignored, and Python then leaves it
# ignored: a test suite started so (`cmd &` in a script, some CI runners)
# would see no KeyboardInterrupt at all. The children install Python's own
# handler, as an interactive program started normally has it.
CHILD_PRELUDE = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"


def spawn(script: str, tmp_path, *args: str) -> subprocess.Popen:
    path = tmp_path / "child.py"
    path.write_text(CHILD_PRELUDE + script)
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


def line_reader(child: subprocess.Popen) -> "queue.Queue[str]":
    """The child's stdout, line by line ("" at its end), read by a thread so
    that the test can wait for a line with a deadline."""
    lines: "queue.Queue[str]" = queue.Queue()

    def read() -> None:
        for line in child.stdout:
            lines.put(line.strip())
        lines.put("")

    threading.Thread(target=read, daemon=True).start()
    return lines


def interrupt_when_blocked(child: subprocess.Popen) -> tuple:
    """Waits (60 s at most) for the child's "blocked", sends SIGINT, and
    returns its report, the seconds it took to come, and its stderr."""
    lines = line_reader(child)
    try:
        line = lines.get(timeout=60)
    except queue.Empty:
        line = "nothing in 60 s"
    if line != "blocked":
        child.kill()
        _, err = child.communicate(timeout=20)
        pytest.fail(f"the child said {line!r}, exited {child.returncode}: {err}")
    start = time.monotonic()
    child.send_signal(signal.SIGINT)
    try:
        report = lines.get(timeout=60)
    except queue.Empty:
        report = ""
    took = time.monotonic() - start
    if not report:
        child.kill()
    _, err = child.communicate(timeout=20)
    assert report, f"no report after SIGINT: {err}"
    return json.loads(report), took, err


@pytest.mark.parametrize(
    "call, sent",
    [
        ("node.send(2, payload)", None),
        ("node.broadcast(payload)", None),
        ("node.send_many([(2, n + 1, payload), (2, n + 2, payload)])", (0, 1)),
        ("node.send_many([(2, n + 1, 'text'), (BROADCAST, n + 2, payload)])", (0, 1)),
    ],
    ids=["send", "broadcast", "send_many", "send_many_encoded"],
)
def test_sigint_interrupts_a_send_on_a_full_peer(tmp_path, call, sent):
    cfg = make_config([1, 2], InboxSize=4, OutboxSize=4)
    with cluster.Node(2, cfg):  # never reads
        child = spawn(SEND_BLOCKED.replace("CALL", call), tmp_path, json.dumps(cfg))
        try:
            report, took, err = interrupt_when_blocked(child)
        finally:
            child.kill()
    assert "KeyboardInterrupt" in err
    assert child.returncode in (-signal.SIGINT, 1, 130)
    assert took < 10  # slices of 50 ms after the first; generous for a loaded machine
    assert report["queue_full"] == 1
    assert report["sent"] in sent if sent else report["sent"] is None


@pytest.mark.parametrize(
    "call, sent",
    [
        ("node.send(2, payload, timeout=float('inf'))", None),
        ("node.outbox.put(Envelope(2, 1, payload))", None),
        ("node.broadcast(payload)", None),
        ("node.send_many([(2, 1, payload), (2, 2, payload)])", 0),
    ],
    ids=["send_for_ever_as_inf", "outbox_put", "broadcast", "send_many"],
)
def test_sigint_interrupts_a_send_on_a_full_mock_server(tmp_path, call, sent):
    child = spawn(MOCK_SEND_BLOCKED.replace("CALL", call), tmp_path)
    try:
        report, took, err = interrupt_when_blocked(child)
    finally:
        child.kill()
    assert "KeyboardInterrupt" in err
    assert took < 10
    assert report == {"queue_full": 1, "sent": sent}  # the inbox was full before the call


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
