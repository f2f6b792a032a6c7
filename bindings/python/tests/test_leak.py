"""No leak: resident memory stays flat over 200,000 messages each way."""

from __future__ import annotations

import gc
import threading

import cluster

PAYLOAD = b"L" * 256


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def pump(a: cluster.Node, b: cluster.Node, n: int) -> None:
    """Sends ``n`` messages a -> b (half one by one, half in batches) and
    receives them (half with recv, half with recv_many)."""

    def send() -> None:
        for i in range(n // 2):
            a.send(2, PAYLOAD, msg_id=i)
        batch = [(2, i, PAYLOAD) for i in range(100)]
        for _ in range(n // 2 // 100):
            a.send_many(batch)

    t = threading.Thread(target=send)
    t.start()
    got = 0
    while got < n:
        if got % 2:
            b.recv(30)
            got += 1
        else:
            got += len(b.recv_many(64, 30))
    t.join()


def test_rss_is_flat_over_200k_messages(nodes):
    a, b = nodes([1, 2])
    pump(a, b, 20_000)  # warm-up: buffers, caches, allocator arenas
    gc.collect()
    before = rss_bytes()
    pump(a, b, 200_000)
    gc.collect()
    grown = rss_bytes() - before
    # a leak of the payload alone would be over 50 MB
    assert grown < 16 * 1024 * 1024, f"RSS grew by {grown / 2**20:.1f} MiB"
    stats = b.stats()
    assert stats["delivered"] == 220_000
