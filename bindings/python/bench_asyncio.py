#!/usr/bin/env python3
"""asyncio through the Python wrapper, side by side with pyzmq's zmq.asyncio.

    pip install ./bindings/python pyzmq
    python bindings/python/bench_asyncio.py            # about half a minute
    python bindings/python/bench_asyncio.py --quick    # a few seconds

Each case runs its two ends in two processes over loopback TCP, each in its
own asyncio loop, with the same workload for both libraries:
- stream, 64 B: the sender awaits `node.asend` (zmq: `await sock.send` on
  PUSH) N times; the receiver awaits `node.arecv` (zmq: `await sock.recv` on
  PULL) and times from the first message to the last;
- ping-pong, 64 B: `await asend` then `await arecv` (zmq: PAIR send/recv)
  against an echo task; round-trip p50 and p99.
Every case runs --runs times (default 3), the cases of one round back to
back; it prints medians with their spread and the median of the per-round
ratios, and whether the goals hold: stream throughput and ping-pong p50 at
least pyzmq's (zmq.asyncio).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import sys
import time
from typing import Any, Callable, Dict, List

# Measure the installed package, not the source tree beside this script.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

from cluster.testing import free_ports, local_config, wait_connected  # noqa: E402

PAYLOAD = b"x" * 64


# -- the four ends ------------------------------------------------------------


def cluster_stream(role: str, cfg: Dict[str, Any], n: int, ready: Any, out: Any) -> None:
    import cluster

    async def send(node: cluster.Node) -> None:
        for i in range(n):
            await node.asend(2, PAYLOAD, i)

    async def recv(node: cluster.Node) -> float:
        env = await node.arecv()
        t0 = time.perf_counter()
        for _ in range(n - 1):
            env = await node.arecv()
        assert env.msg_id == n - 1, env
        return time.perf_counter() - t0

    with cluster.Node(1 if role == "send" else 2, cfg) as node:
        wait_connected([node])
        ready.wait() if role == "send" else ready.set()
        if role == "send":
            asyncio.run(send(node))
            out.get()  # stay up until the receiver is done
        else:
            out.put(n / asyncio.run(recv(node)))


def zmq_stream(role: str, port: int, n: int, ready: Any, out: Any) -> None:
    import zmq
    import zmq.asyncio

    async def main() -> Any:
        ctx = zmq.asyncio.Context()
        if role == "send":
            sock = ctx.socket(zmq.PUSH)
            sock.connect(f"tcp://127.0.0.1:{port}")
            ready.wait()
            for _ in range(n):
                await sock.send(PAYLOAD)
            return None
        sock = ctx.socket(zmq.PULL)
        sock.bind(f"tcp://127.0.0.1:{port}")
        ready.set()
        await sock.recv()
        t0 = time.perf_counter()
        for _ in range(n - 1):
            await sock.recv()
        return n / (time.perf_counter() - t0)

    rate = asyncio.run(main())
    if role == "send":
        out.get()
    else:
        out.put(rate)


def cluster_pingpong(role: str, cfg: Dict[str, Any], n: int, ready: Any, out: Any) -> None:
    import cluster

    async def echo(node: cluster.Node) -> None:
        for _ in range(n):
            env = await node.arecv()
            await node.asend(env.pid, env.msg, env.msg_id)

    async def ping(node: cluster.Node) -> List[float]:
        rtts = []
        for i in range(n):
            t = time.perf_counter()
            await node.asend(2, PAYLOAD, i)
            env = await node.arecv()
            rtts.append(time.perf_counter() - t)
            assert env.msg_id == i
        return rtts

    with cluster.Node(2 if role == "echo" else 1, cfg) as node:
        wait_connected([node])
        if role == "echo":
            ready.set()
            asyncio.run(echo(node))
        else:
            ready.wait()
            out.put(asyncio.run(ping(node)))


def zmq_pingpong(role: str, port: int, n: int, ready: Any, out: Any) -> None:
    import zmq
    import zmq.asyncio

    async def main() -> Any:
        ctx = zmq.asyncio.Context()
        sock = ctx.socket(zmq.PAIR)
        if role == "echo":
            sock.bind(f"tcp://127.0.0.1:{port}")
            ready.set()
            for _ in range(n):
                await sock.send(await sock.recv())
            return None
        sock.connect(f"tcp://127.0.0.1:{port}")
        ready.wait()
        rtts = []
        for _ in range(n):
            t = time.perf_counter()
            await sock.send(PAYLOAD)
            await sock.recv()
            rtts.append(time.perf_counter() - t)
        return rtts

    rtts = asyncio.run(main())
    if role == "ping":
        out.put(rtts)


# -- running a case -------------------------------------------------------------


def run_pair(a: Callable[..., None], a_args: tuple, b: Callable[..., None], b_args: tuple, out: Any) -> Any:
    """Runs two ends in two processes; returns what the measuring end put."""
    pa = mp.Process(target=a, args=a_args)
    pb = mp.Process(target=b, args=b_args)
    pa.start()
    pb.start()
    result = out.get(timeout=120)
    out.put(None)  # lets a sender that waits for the end exit
    pa.join(60)
    pb.join(60)
    return result


def stream(lib: str, n: int) -> float:
    ready, out = mp.Event(), mp.Queue()
    if lib == "cluster":
        cfg = local_config([1, 2])
        return run_pair(cluster_stream, ("recv", cfg, n, ready, out), cluster_stream, ("send", cfg, n, ready, out), out)
    port = free_ports(1)[0]
    return run_pair(zmq_stream, ("recv", port, n, ready, out), zmq_stream, ("send", port, n, ready, out), out)


def pingpong(lib: str, n: int) -> List[float]:
    ready, out = mp.Event(), mp.Queue()
    if lib == "cluster":
        cfg = local_config([1, 2])
        fn: Callable[..., None] = cluster_pingpong
        end: Any = cfg
    else:
        fn, end = zmq_pingpong, free_ports(1)[0]
    rtts = run_pair(fn, ("echo", end, n, ready, out), fn, ("ping", end, n, ready, out), out)
    return sorted(rtts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n_stream, n_ping = (20_000, 2_000) if args.quick else (200_000, 20_000)
    mp.set_start_method("spawn")
    rows: Dict[str, List[float]] = {}
    ratios: Dict[str, List[float]] = {"stream": [], "p50": [], "p99": []}
    for _ in range(args.runs):
        got = {lib: stream(lib, n_stream) for lib in ("cluster", "zmq")}
        ping = {lib: pingpong(lib, n_ping) for lib in ("cluster", "zmq")}
        for lib in ("cluster", "zmq"):
            rtt = ping[lib]
            rows.setdefault(f"{lib} stream 64 B (msg/s)", []).append(got[lib])
            rows.setdefault(f"{lib} ping-pong p50 (us)", []).append(rtt[int(len(rtt) * 0.5)] * 1e6)
            rows.setdefault(f"{lib} ping-pong p99 (us)", []).append(rtt[int(len(rtt) * 0.99)] * 1e6)
        ratios["stream"].append(got["cluster"] / got["zmq"])
        for q, frac in (("p50", 0.5), ("p99", 0.99)):
            z, c = ping["zmq"], ping["cluster"]
            ratios[q].append(z[int(len(z) * frac)] / c[int(len(c) * frac)])
    calls = {"cluster": "await asend / await arecv", "zmq": "zmq.asyncio await send / await recv"}
    print(f"{'case':44} {'median [min-max]':>28}   calls")
    for name, vals in rows.items():
        med = statistics.median(vals)
        fmt = "{:,.0f}" if "msg/s" in name else "{:,.1f}"
        spread = f"{fmt.format(med)} [{fmt.format(min(vals))}-{fmt.format(max(vals))}]"
        print(f"{name:44} {spread:>28}   {calls[name.split()[0]]}")
    print("ratios (median of per-round ratios; above 1 means cluster is faster):")
    for q, vals in ratios.items():
        print(f"  {q:7} {statistics.median(vals):.2f}x [{min(vals):.2f}-{max(vals):.2f}]")
    for q, goal in (("stream", "stream throughput >= zmq.asyncio"), ("p50", "ping-pong p50 <= zmq.asyncio")):
        r = statistics.median(ratios[q])
        print(f"goal {goal}: {r:.2f}x -> {'met' if r >= 1 else 'MISSED'}")


if __name__ == "__main__":
    main()
