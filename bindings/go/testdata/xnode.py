"""xnode.py: the Python member of the cross-language test (../xlang_test.go).

    python3 xnode.py ID CONFIG

The same protocol as xnode.c: prints "ready" once listening; on the text
"start" sends bytes, text and JSON to every peer; on "bye" closes and exits 0;
prints "got FROM KIND HEX" for anything else (JSON re-serialized).
"""

import json
import sys

import cluster


def payload(env):
    """The received message as (kind, bytes)."""
    if isinstance(env.msg, bytes):
        return env.kind or 0, env.msg
    if isinstance(env.msg, str):
        return 1, env.msg.encode("utf-8")
    return 2, json.dumps(env.msg).encode("utf-8")


def main():
    me = int(sys.argv[1])
    with cluster.Node(me, sys.argv[2]) as node:
        print("ready", flush=True)
        while True:
            env = node.recv(timeout=60)
            if env.msg == "bye":
                return
            if env.msg == "start":
                for peer in node.peers:
                    node.send(peer, b"Py\x00\xff", timeout=5)
                    node.send(peer, "text from Python", timeout=5)
                    node.send(peer, {"from": "Python", "id": me}, timeout=5)
                continue
            kind, data = payload(env)
            print("got %d %d %s" % (env.pid, kind, data.hex()), flush=True)


if __name__ == "__main__":
    main()
