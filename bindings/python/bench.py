#!/usr/bin/env python3
"""Throughput and latency through the Python wrapper, side by side with pyzmq.

    pip install ./bindings/python pyzmq
    python bindings/python/bench.py            # about a minute and a half
    python bindings/python/bench.py --quick    # a few seconds, smaller counts

Each case runs its sender and its receiver in two separate processes over
loopback TCP, with the same workload for cluster and pyzmq:
- throughput at 64 B and 1 KiB: cluster with plain calls (send / recv),
  with the channel-like calls (outbox.put / inbox.get, 64 B only), batched
  (send_many / recv_many); pyzmq PUSH/PULL and PAIR (send / recv). The
  receiver counts and times from the first message to the last; a run
  whose receiver does not get every message fails the bench (cluster also
  checks the last msg_id and that neither node counted a drop);
- ping-pong at 64 B: round-trip time p50 / p99 (cluster send / recv, pyzmq
  PAIR, pyzmq PUSH/PULL over two sockets);
- the mock network's broadcast (the Go bench's mock workload, whose pure-Go
  baseline is the original Go mock): 5 mock servers, deliveries/s with
  send and with send_many (--mock-only runs just this).

Every case runs --runs times (default 3), the cases of one round back to
back, so a change in the machine's load hits all of them alike. It prints
the median of each and its spread (min-max), the ratios to the better pyzmq
pattern (the median of the per-round ratios), and whether the goals are met:
plain calls at least pyzmq's 64 B throughput and latency, the batched path
at least twice its 64 B throughput.
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
# (whose C port is not compiled). Spawned children inherit this sys.path.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

from cluster.testing import free_ports, local_config, wait_connected  # noqa: E402 (after the path fix)

BATCH = 256
LIMIT = 120  # seconds a case may take before the bench calls it lost or hung

# The throughput modes of cluster: how the sender sends and the receiver receives.
PLAIN, CHANNEL, BATCHED = "cluster", "cluster-put/get", "cluster-batched"


def drops(stats: Dict[str, Any]) -> int:
    """Messages a node counted as dropped, for any reason."""
    return sum(stats["dropped"].values()) + sum(sum(p["dropped"].values()) for p in stats["peers"])


# -- cluster -------------------------------------------------------------------


def cluster_sender(cfg: Dict[str, Any], n: int, size: int, mode: str, ready: Any, go: Any, done: Any, out: Any) -> None:
    import cluster

    with cluster.Node(1, cfg) as node:
        wait_connected([node])
        ready.set()
        go.wait()
        payload = b"x" * size
        if mode == BATCHED:
            chunk = [(2, i, payload) for i in range(BATCH)]
            for _ in range(n // BATCH):
                node.send_many(chunk)
            rest = n % BATCH
            if rest:
                node.send_many([(2, n - rest + i, payload) for i in range(rest)])
        elif mode == CHANNEL:
            put = node.outbox.put
            for i in range(n):
                put((2, i, payload))
        else:
            send = node.send
            for i in range(n):
                send(2, payload, i)
        done.wait()  # stay up until the receiver has everything
        out.put(("sender", drops(node.stats())))


def cluster_receiver(cfg: Dict[str, Any], n: int, mode: str, out: Any) -> None:
    import cluster

    with cluster.Node(2, cfg) as node:
        if mode == BATCHED:
            last = node.recv_many(1024)
            t0 = time.perf_counter()
            got = len(last)
            recv_many = node.recv_many
            while got < n:
                last = recv_many(1024)
                got += len(last)
            env = last[-1]
        else:
            recv = node.inbox.get if mode == CHANNEL else node.recv
            env = recv()
            t0 = time.perf_counter()
            for _ in range(n - 1):
                env = recv()
            got = n
        elapsed = time.perf_counter() - t0
        stats = node.stats()
        ok = got == n and env.msg_id == n - 1 and stats["delivered"] == n and drops(stats) == 0
        out.put(("receiver", elapsed if ok else f"got {got}, last msg_id {env.msg_id}, stats {stats}"))


def cluster_pong(cfg: Dict[str, Any], n: int, ready: Any) -> None:
    import cluster

    with cluster.Node(2, cfg) as node:
        wait_connected([node])
        ready.set()
        for _ in range(n):
            env = node.recv()
            node.send(env.pid, env.msg, env.msg_id)


def cluster_ping(cfg: Dict[str, Any], n: int, warm: int, out: Any, ready: Any) -> None:
    import cluster

    with cluster.Node(1, cfg) as node:
        wait_connected([node])
        ready.wait()
        payload = b"p" * 64
        rtts = []
        for i in range(n + warm):
            t = time.perf_counter()
            node.send(2, payload, i)
            env = node.recv()
            rtts.append(time.perf_counter() - t)
            if env.msg_id != i:
                out.put(f"reply {env.msg_id} to {i}")
                return
        out.put(rtts[warm:])


# -- pyzmq ---------------------------------------------------------------------


def zmq_sender(kind: str, port: int, n: int, size: int, ready: Any, go: Any, done: Any, out: Any) -> None:
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
    out.put(("sender", 0))


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
    out.put(("receiver", time.perf_counter() - t0))
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


def finish(procs: List[Any]) -> None:
    for p in procs:
        p.join(60)
        if p.is_alive():
            p.kill()
            p.join()


def throughput(system: str, n: int, size: int) -> float:
    """Messages per second received; raises if any message was lost."""
    out, ready, go, bound, done = CTX.Queue(), CTX.Event(), CTX.Event(), CTX.Event(), CTX.Event()
    if system.startswith("cluster"):
        cfg = local_config([1, 2])
        recv = CTX.Process(target=cluster_receiver, args=(cfg, n, system, out))
        send = CTX.Process(target=cluster_sender, args=(cfg, n, size, system, ready, go, done, out))
    else:
        kind = system.split("-")[1]
        (port,) = free_ports(1)
        recv = CTX.Process(target=zmq_receiver, args=(kind, port, n, out, bound))
        send = CTX.Process(target=zmq_sender, args=(kind, port, n, size, ready, go, done, out))
    recv.start()
    if not system.startswith("cluster"):
        bound.wait(30)
    send.start()
    try:
        if not ready.wait(60):
            raise RuntimeError(f"{system}: sender never got ready")
        go.set()
        try:
            who, elapsed = out.get(timeout=LIMIT)
        except Exception:
            raise RuntimeError(f"{system} {size} B: the receiver did not get all {n:,} messages") from None
        if not isinstance(elapsed, float):
            raise RuntimeError(f"{system} {size} B: messages lost or out of order: {elapsed}")
        done.set()
        who, dropped = out.get(timeout=60)
        if dropped:
            raise RuntimeError(f"{system} {size} B: the sender counted {dropped} drops")
    finally:
        done.set()
        finish([recv, send])
    return (n - 1) / elapsed


# -- the mock network ------------------------------------------------------------

MOCK_SERVERS = 5
MOCK_MSG = "a mock broadcast"  # a 16-byte string, as the Go bench's


def mock_child(mode: str, count: int, out: Any) -> None:
    """The Go bench's mock workload (bindings/go/bench.sh -only mock): 5 mock
    servers each broadcast ``count`` string messages (one `send` a message,
    or `send_many` of BATCH) from a thread while another thread per server
    takes its deliveries with `recv_many`, checking each sender's order and
    every payload; puts deliveries/s (or what went wrong) on ``out``."""
    import threading

    from cluster import BROADCAST, MockCluster

    mc = MockCluster()
    nodes = [mc.add_server(pid) for pid in range(1, MOCK_SERVERS + 1)]
    want = (MOCK_SERVERS - 1) * count
    errors: List[str] = []

    def send(node: Any) -> None:
        if mode == "send":
            for i in range(count):
                node.send(BROADCAST, MOCK_MSG, i)
        else:
            for first in range(0, count, BATCH):
                node.send_many([(BROADCAST, i, MOCK_MSG) for i in range(first, min(count, first + BATCH))])

    def drain(node: Any) -> None:
        nxt = {p: 0 for p in range(1, MOCK_SERVERS + 1) if p != node.pid}
        got = 0
        while got < want:
            for e in node.recv_many(1024, timeout=60):
                if e.msg_id != nxt.get(e.pid) or e.msg != MOCK_MSG:
                    errors.append(f"server {node.pid}: message {e.msg_id} from {e.pid}, want {nxt.get(e.pid)}")
                    return
                nxt[e.pid] += 1
                got += 1

    threads = [threading.Thread(target=drain, args=(n,)) for n in nodes]
    threads += [threading.Thread(target=send, args=(n,)) for n in nodes]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads[:MOCK_SERVERS]:
        t.join()
    elapsed = time.perf_counter() - t0
    for t in threads[MOCK_SERVERS:]:
        t.join()
    for n in nodes:
        st = n.stats()
        dropped = sum(st["dropped"].values())
        if st["sent"] != want or st["delivered"] != want or dropped:
            errors.append(f"server {n.pid}: counted {st['sent']} sent, {st['delivered']} delivered, {dropped} dropped")
    mc.close()
    out.put(errors[0] if errors else MOCK_SERVERS * want / elapsed)


def mock_guarded(mode: str, count: int, out: Any) -> None:
    """mock_child, an exception put on ``out`` as text."""
    try:
        mock_child(mode, count, out)
    except Exception as e:
        out.put(repr(e))


def mock_broadcast(mode: str, count: int) -> float:
    """Deliveries/s of the mock workload (see mock_child), in a child process."""
    out = CTX.Queue()
    p = CTX.Process(target=mock_guarded, args=(mode, count, out))
    p.start()
    try:
        v = out.get(timeout=LIMIT)
    except Exception:
        raise RuntimeError(f"mock {mode}: no result within {LIMIT} s") from None
    finally:
        finish([p])
    if not isinstance(v, float):
        raise RuntimeError(f"mock {mode}: {v}")
    return v


def mock_once(mode: str, count_text: str) -> int:
    """--mock-once: one mock run here, its rate and CPU time per delivery
    printed for the Go bench (bindings/go/bench.sh -only mock). A run that
    loses a message, or takes longer than LIMIT, fails (exit 1): a drain
    that stops leaves its senders blocked, so the process exits without
    waiting for them."""
    import queue
    import threading

    count = int(count_text) if count_text.isdigit() else 0
    if mode not in ("send", "send_many") or count < 1:
        print("bench.py: --mock-once send|send_many COUNT (COUNT >= 1)", file=sys.stderr)
        return 2
    out: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
    cpu0 = time.process_time()
    threading.Thread(target=mock_guarded, args=(mode, count, out), daemon=True).start()
    try:
        v = out.get(timeout=LIMIT)
    except queue.Empty:
        v = f"no result within {LIMIT} s"
    cpu = time.process_time() - cpu0
    if not isinstance(v, float):
        print(f"bench.py: mock {mode}: {v}", file=sys.stderr, flush=True)
        os._exit(1)
    deliveries = MOCK_SERVERS * (MOCK_SERVERS - 1) * count
    print(f"result {v:.1f} {cpu * 1e9 / deliveries:.1f}")
    return 0


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
    try:
        rtts = out.get(timeout=LIMIT)
    finally:
        finish([pong, ping])
    if not isinstance(rtts, list):
        raise RuntimeError(f"{system} ping-pong: {rtts}")
    q = statistics.quantiles(sorted(rtts), n=100)
    return q[49] * 1e6, q[98] * 1e6


def spread(values: List[float]) -> str:
    """'median [min-max]' of a case's runs."""
    def f(v: float) -> str:
        return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"

    return f"{f(statistics.median(values))} [{f(min(values))}-{f(max(values))}]"


def ratio_spread(values: List[float]) -> str:
    return f"{statistics.median(values):.2f}x [{min(values):.2f}-{max(values):.2f}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small counts and 2 runs (a smoke run)")
    ap.add_argument("--runs", type=int, default=None, help="rounds of every case (default 3; 2 with --quick)")
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    ap.add_argument("--mock-only", action="store_true", help="only the mock network's broadcast line")
    ap.add_argument("--mock-once", nargs=2, metavar=("MODE", "COUNT"),
                    help="one mock run in this process (MODE send or send_many, COUNT broadcasts a server), "
                         "printed as 'result DELIVERIES/S CPU-NS/DELIVERY' (the Go bench's mock lines run this)")
    args = ap.parse_args()
    if args.mock_once:
        return mock_once(*args.mock_once)
    scale = 0.1 if args.quick else 1.0
    runs = args.runs or (2 if args.quick else 3)
    n64, n1k, npp = int(1_200_000 * scale), int(300_000 * scale), int(10_000 * scale)
    nmock = int(50_000 * scale)

    try:
        import zmq
    except ImportError:
        if not args.mock_only:
            print("bench.py: pyzmq is needed for the comparison: pip install pyzmq", file=sys.stderr)
            return 2

    import cluster

    zmq_version = "" if args.mock_only else f"; pyzmq {zmq.__version__}"
    print(f"cluster {cluster.__version__} from {os.path.dirname(cluster.__file__)}{zmq_version}")
    print(f"{runs} runs of: {n64:,} msgs at 64 B, {n1k:,} at 1 KiB, {npp:,} round trips; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)

    tp_systems = {64: (PLAIN, CHANNEL, BATCHED, "zmq-push", "zmq-pair"), 1024: (PLAIN, BATCHED, "zmq-push", "zmq-pair")}
    pp_systems = ("cluster", "zmq-pair", "zmq-push")
    tp: Dict[int, Dict[str, List[float]]] = {size: {s: [] for s in systems} for size, systems in tp_systems.items()}
    pp: Dict[str, List[Tuple[float, float]]] = {s: [] for s in pp_systems}
    mock_modes = ("send", "send_many")
    mock: Dict[str, List[float]] = {m: [] for m in mock_modes}
    for r in range(runs):
        for m in mock_modes:
            mock[m].append(mock_broadcast(m, nmock))
        if args.mock_only:
            continue
        for size, n in ((64, n64), (1024, n1k)):
            for system in tp_systems[size]:
                tp[size][system].append(throughput(system, n, size))
        for system in pp_systems:
            pp[system].append(pingpong(system, npp, max(100, npp // 10)))
        print(f"  run {r + 1}/{runs} done, load average {os.getloadavg()[0]:.1f}", flush=True)

    print()
    print(f"mock broadcast: {MOCK_SERVERS} servers each broadcasting {nmock:,} strings, a thread each sending and "
          "one receiving (recv_many); deliveries/s, median [min-max]")
    for m in mock_modes:
        print(f"  {'mock ' + m:<32} {spread(mock[m]):>30}")
    print("  (the Go bench's pure-Go baseline runs this workload: bindings/go/bench.sh -only mock)")
    if args.mock_only:
        return 0

    def best_zmq_tp(size: int, i: int) -> float:
        return max(tp[size]["zmq-push"][i], tp[size]["zmq-pair"][i])

    def best_zmq_pp(q: int, i: int) -> float:
        return min(pp["zmq-pair"][i][q], pp["zmq-push"][i][q])

    fmt = "{:<34} {:>30} {:>24}"
    print()
    print(fmt.format("case", "median [min-max]", "vs better pyzmq"))
    ratios: Dict[str, List[float]] = {}
    for size in (64, 1024):
        for system in tp_systems[size]:
            r_list = [tp[size][system][i] / best_zmq_tp(size, i) for i in range(runs)]
            key = f"{system} {size} B"
            ratios[key] = r_list
            shown = ratio_spread(r_list) if system.startswith("cluster") else ""
            print(fmt.format(f"{key} (msg/s)", spread(tp[size][system]), shown))
    for q, name in ((0, "p50"), (1, "p99")):
        for system in pp_systems:
            # for latency: pyzmq's time / cluster's, so above 1 means cluster is faster
            r_list = [best_zmq_pp(q, i) / pp[system][i][q] for i in range(runs)]
            key = f"{system} ping-pong {name}"
            ratios[key] = r_list
            shown = ratio_spread(r_list) if system == "cluster" else ""
            print(fmt.format(f"{key} (us)", spread([v[q] for v in pp[system]]), shown))
    print("ratios: the median over the runs of cluster / the better pyzmq pattern in the same run;")
    print("for latency pyzmq's time / cluster's, so above 1 means cluster is faster")

    goals = [
        ("plain calls, 64 B throughput >= pyzmq", f"{PLAIN} 64 B", 1.0),
        ("put/get calls, 64 B throughput >= pyzmq", f"{CHANNEL} 64 B", 1.0),
        ("plain calls, ping-pong p50 <= pyzmq", "cluster ping-pong p50", 1.0),
        ("plain calls, ping-pong p99 <= pyzmq", "cluster ping-pong p99", 1.0),
        ("batched, 64 B throughput >= 2x pyzmq", f"{BATCHED} 64 B", 2.0),
    ]
    print()
    for text, key, need in goals:
        got = statistics.median(ratios[key])
        print(f"goal {text}: {got:.2f}x -> {'met' if got >= need else 'MISSED'}")
    if args.json:
        print(json.dumps({"runs": runs, "throughput": tp, "pingpong_us": pp, "ratios": ratios, "mock": mock}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
