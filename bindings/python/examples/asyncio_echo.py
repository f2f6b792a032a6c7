"""A tiny request/reply server on asyncio: node 1 answers each request with
its text in capitals; node 2 asks three questions and awaits the answers.
Both run in one event loop, on free loopback ports, with no thread per call.

    python asyncio_echo.py
"""

import asyncio

import cluster
from cluster.testing import local_config


async def serve(node: cluster.Node) -> None:
    """Answers every request until the node is closed."""
    async for req in node:
        await node.asend(req.pid, req.msg.upper(), msg_id=req.msg_id)


async def main() -> None:
    config = local_config([1, 2])
    with cluster.Node(1, config) as server, cluster.Node(2, config) as client:
        serving = asyncio.ensure_future(serve(server))
        for i, text in enumerate(["hello", "event", "loops"]):
            await client.asend(1, text, msg_id=i)
            reply = await client.arecv(timeout=10)
            print(f"asked {text!r}, node {reply.pid} answered {reply.msg!r}")
        server.close()  # ends `async for` in serve()
        await serving
        print("3 replies")


if __name__ == "__main__":
    asyncio.run(main())
