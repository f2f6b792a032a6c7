#!/usr/bin/env python3
"""A two-terminal chat over a real TCP cluster, like the original library's.

Run ``python chat.py 1`` in one terminal and ``python chat.py 2`` in another;
lines typed in one appear in the other. An optional second argument is a
config (JSON text or a path) to use instead of the built-in one.
"""

import sys
import threading

import cluster

CONFIG = {
    "Peers": [
        {"Id": 1, "Address": "localhost:7071"},
        {"Id": 2, "Address": "localhost:7072"},
    ]
}


def show(node: cluster.Node) -> None:
    """Prints every line that arrives, until the node closes."""
    for env in node:
        print(f"[{env.pid}] {env.msg}", flush=True)


def main() -> int:
    if len(sys.argv) not in (2, 3) or not sys.argv[1].lstrip("-").isdigit():
        print("usage: chat.py ID [CONFIG]   (ID is 1 or 2 with the built-in config)", file=sys.stderr)
        return 2
    try:
        node = cluster.Node(int(sys.argv[1]), sys.argv[2] if len(sys.argv) == 3 else CONFIG)
    except cluster.ClusterError as e:
        print(f"chat: {e}", file=sys.stderr)
        return 1
    with node:
        print(f"chat: node {node.pid}, peers {node.peers}; type lines, Ctrl-D to quit", flush=True)
        reader = threading.Thread(target=show, args=(node,), daemon=True)
        reader.start()
        try:
            for line in sys.stdin:
                node.broadcast(line.rstrip("\n"))
        except KeyboardInterrupt:
            pass
    reader.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
