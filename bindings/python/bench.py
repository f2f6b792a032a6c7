#!/usr/bin/env python3
"""Throughput and latency through the Python wrapper, side by side with pyzmq.

    pip install ./bindings/python pyzmq
    python bindings/python/bench.py            # about a minute
    python bindings/python/bench.py --quick    # a few seconds, smaller counts

Each case runs its sender and its receiver in two separate processes over
loopback TCP:
- throughput at 64 B and 1 KiB: cluster with plain calls (send / recv),
  cluster batched (send_many / recv_many), pyzmq PUSH/PULL and PAIR (send / recv);
  the receiver times from the first message to the last;
- ping-pong at 64 B: round-trip time p50 / p99 (cluster send/recv, pyzmq PAIR,
  pyzmq PUSH/PULL over two sockets).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from typing import Any, Dict, List, Tuple

# Measure the installed package, not the source tree beside this script
# (which has no compiled hot paths). Spawned children inherit this sys.path.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

from cluster.testing import free_ports, local_config  # noqa: E402 (after the path fix)

BATCH = 256


def wait_connected(node: Any, peer: int) -> None:
    deadline = time.monotonic() + 30
    while not any(p["id"] == peer and p["connected"] for p in node.stats()["peers"]):
        if time.monotonic() > deadline:
            raise RuntimeError(f"node {node.pid} never connected to {peer}")
        time.sleep(0.01)


# -- cluster -------------------------------------------------------------------


def cluster_sender(cfg: Dict[str, Any], n: int, size: int, batched: bool, ready: Any, go: Any, done: Any) -> None:
    import cluster

    with cluster.Node(1, cfg) as node:
        wait_connected(node, 2)
        ready.set()
        go.wait()
        payload = b"x" * size
        if batched:
            chunk = [(2, i, payload) for i in range(BATCH)]
            for _ in range(n // BATCH):
                node.send_many(chunk)
            rest = n % BATCH
            if rest:
                node.send_many(chunk[:rest])
        else:
            send = node.send
            for i in range(n):
                send(2, payload, i)
        done.wait()  # stay up until the receiver has everything


def cluster_receiver(cfg: Dict[str, Any], n: int, batched: bool, out: Any) -> None:
    import cluster

    with cluster.Node(2, cfg) as node:
        got = 0
        if batched:
            first = node.recv_many(1024)
            t0 = time.perf_counter()
            got = len(first)
            recv_many = node.recv_many
            while got < n:
                got += len(recv_many(1024))
        else:
            node.recv()
            t0 = time.perf_counter()
            got = 1
            recv = node.recv
            while got < n:
                recv()
                got += 1
        out.put(time.perf_counter() - t0)


def cluster_pong(cfg: Dict[str, Any], n: int, ready: Any) -> None:
    import cluster

    with cluster.Node(2, cfg) as node:
        wait_connected(node, 1)
        ready.set()
        for _ in range(n):
            env = node.recv()
            node.send(env.pid, env.msg, env.msg_id)


def cluster_ping(cfg: Dict[str, Any], n: int, warm: int, out: Any, ready: Any) -> None:
    import cluster

    with cluster.Node(1, cfg) as node:
        wait_connected(node, 2)
        ready.wait()
        payload = b"p" * 64
        rtts = []
        for i in range(n + warm):
            t = time.perf_counter()
            node.send(2, payload, i)
            node.recv()
            rtts.append(time.perf_counter() - t)
        out.put(rtts[warm:])


# -- pyzmq ---------------------------------------------------------------------


def zmq_sender(kind: str, port: int, n: int, size: int, ready: Any, go: Any, done: Any) -> None:
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH if kind == "push" else zmq.PAIR)
    sock.connect(f"tcp://127.0.0.1:{port}")
    ready.set()
    go.wait()
    payload = b"x" * size
    send = sock.send
    for _ in range(n):
        send(payload)
    done.wait()
    sock.close(linger=0)
    ctx.term()


def zmq_receiver(kind: str, port: int, n: int, out: Any, bound: Any) -> None:
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL if kind == "push" else zmq.PAIR)
    sock.bind(f"tcp://127.0.0.1:{port}")
    bound.set()
    recv = sock.recv
    recv()
    t0 = time.perf_counter()
    for _ in range(n - 1):
        recv()
    out.put(time.perf_counter() - t0)
    sock.close(linger=0)
    ctx.term()


def zmq_sockets(kind: str, ports: Tuple[int, int], server: bool) -> Tuple[Any, Any, Any]:
    """(context, socket to send on, socket to receive on) for one ping-pong side."""
    import zmq

    ctx = zmq.Context()
    if kind == "pair":
        s = ctx.socket(zmq.PAIR)
        (s.bind if server else s.connect)(f"tcp://127.0.0.1:{ports[0]}")
        return ctx, s, s
    pull = ctx.socket(zmq.PULL)
    push = ctx.socket(zmq.PUSH)
    mine, theirs = (ports[0], ports[1]) if server else (ports[1], ports[0])
    pull.bind(f"tcp://127.0.0.1:{mine}")
    push.connect(f"tcp://127.0.0.1:{theirs}")
    return ctx, push, pull


def zmq_pong(kind: str, ports: Tuple[int, int], n: int, ready: Any) -> None:
    ctx, tx, rx = zmq_sockets(kind, ports, server=True)
    ready.set()
    for _ in range(n):
        tx.send(rx.recv())
    ctx.destroy(linger=0)


def zmq_ping(kind: str, ports: Tuple[int, int], n: int, warm: int, out: Any, ready: Any) -> None:
    ctx, tx, rx = zmq_sockets(kind, ports, server=False)
    ready.wait()
    payload = b"p" * 64
    rtts = []
    for _ in range(n + warm):
        t = time.perf_counter()
        tx.send(payload)
        rx.recv()
        rtts.append(time.perf_counter() - t)
    out.put(rtts[warm:])
    ctx.destroy(linger=0)


# -- running -------------------------------------------------------------------

CTX = mp.get_context("spawn")  # no fork: children start with no library threads


def throughput(system: str, n: int, size: int) -> float:
    """Messages per second received."""
    out, ready, go, bound, done = CTX.Queue(), CTX.Event(), CTX.Event(), CTX.Event(), CTX.Event()
    if system.startswith("cluster"):
        batched = system == "cluster-batched"
        cfg = local_config([1, 2])
        recv = CTX.Process(target=cluster_receiver, args=(cfg, n, batched, out))
        send = CTX.Process(target=cluster_sender, args=(cfg, n, size, batched, ready, go, done))
    else:
        kind = system.split("-")[1]
        (port,) = free_ports(1)
        recv = CTX.Process(target=zmq_receiver, args=(kind, port, n, out, bound))
        send = CTX.Process(target=zmq_sender, args=(kind, port, n, size, ready, go, done))
    recv.start()
    if not system.startswith("cluster"):
        bound.wait(30)
    send.start()
    if not ready.wait(60):
        raise RuntimeError(f"{system}: sender never got ready")
    go.set()
    elapsed = out.get(timeout=600)
    done.set()
    for p in (recv, send):
        p.join(60)
        if p.is_alive():
            p.kill()
    return (n - 1) / elapsed


def pingpong(system: str, n: int, warm: int) -> Tuple[float, float]:
    """(p50, p99) round-trip time in microseconds."""
    out, ready = CTX.Queue(), CTX.Event()
    total = n + warm
    if system == "cluster":
        cfg = local_config([1, 2])
        pong = CTX.Process(target=cluster_pong, args=(cfg, total, ready))
        ping = CTX.Process(target=cluster_ping, args=(cfg, n, warm, out, ready))
    else:
        kind = system.split("-")[1]
        ports = tuple(free_ports(2))
        pong = CTX.Process(target=zmq_pong, args=(kind, ports, total, ready))
        ping = CTX.Process(target=zmq_ping, args=(kind, ports, n, warm, out, ready))
    pong.start()
    ping.start()
    rtts = sorted(out.get(timeout=600))
    for p in (pong, ping):
        p.join(60)
        if p.is_alive():
            p.kill()
    q = statistics.quantiles(rtts, n=100)
    return q[49] * 1e6, q[98] * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = ap.parse_args()
    scale = 0.05 if args.quick else 1.0
    n64, n1k, npp = int(400_000 * scale), int(200_000 * scale), int(20_000 * scale)

    try:
        import zmq
    except ImportError:
        print("bench.py: pyzmq is needed for the comparison: pip install pyzmq", file=sys.stderr)
        return 2

    import cluster

    path = "C hot paths (_speedups)" if cluster.node._sp is not None else "cffi only"
    print(f"cluster {cluster.__version__}, {path}; pyzmq {zmq.__version__}; {n64:,} msgs at 64 B, "
          f"{n1k:,} at 1 KiB, {npp:,} round trips")
    results: Dict[str, Any] = {"path": path}
    rows: List[Tuple[Any, ...]] = []
    for size, n in ((64, n64), (1024, n1k)):
        r = {s: throughput(s, n, size) for s in ("cluster", "cluster-batched", "zmq-push", "zmq-pair")}
        results[f"throughput_{size}"] = r
        zmq_best = max(r["zmq-push"], r["zmq-pair"])
        rows.append((f"throughput {size} B (msg/s)", r["cluster"], r["cluster-batched"], r["zmq-push"], r["zmq-pair"],
                     r["cluster"] / zmq_best, r["cluster-batched"] / zmq_best))
    pp = {s: pingpong(s, npp, max(100, npp // 10)) for s in ("cluster", "zmq-pair", "zmq-push")}
    results["pingpong_64_us"] = pp
    for i, q in enumerate(("p50", "p99")):
        best = min(pp["zmq-pair"][i], pp["zmq-push"][i])
        rows.append((f"ping-pong 64 B {q} (us)", pp["cluster"][i], None, pp["zmq-push"][i], pp["zmq-pair"][i],
                     best / pp["cluster"][i], None))

    head = ("case", "cluster", "cluster batched", "zmq PUSH/PULL", "zmq PAIR", "plain/zmq", "batched/zmq")
    fmt = "{:<28} {:>12} {:>16} {:>14} {:>12} {:>10} {:>12}"
    print(fmt.format(*head))
    for row in rows:
        cells = [row[0]] + [
            "-" if v is None else (f"{v:.2f}x" if j >= 5 else f"{v:,.0f}" if v >= 100 else f"{v:.1f}")
            for j, v in enumerate(row[1:], start=1)
        ]
        print(fmt.format(*cells))
    print("ratios: against the better of the two pyzmq patterns; for latency, zmq time / cluster time (>1 = cluster faster)")
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
