"""cluster: peer-to-peer messaging for the servers of a statically configured
cluster, over TCP or an in-process mock network with fault injection.

    import cluster
    with cluster.Node(1, "cluster.json") as node:
        node.send(2, {"hello": "world"})
        env = node.recv(timeout=1.0)      # Envelope(pid=2, msg_id=0, msg=..., kind=...)

A thin layer over the C ABI of ``libcluster`` (include/cluster.h).
"""

from . import _ffi
from .errors import (
    AddrInUse,
    BufferTooSmall,
    Closed,
    ClusterError,
    ClusterIOError,
    ConfigError,
    Full,
    InternalError,
    InvalidArgument,
    OutOfRange,
    Timeout,
    TooLarge,
    UnknownPeer,
)
from .mock import MockCluster
from .node import (
    BROADCAST,
    CUT_BOTH,
    CUT_IN,
    CUT_OUT,
    KIND_BYTES,
    KIND_JSON,
    KIND_TEXT,
    Envelope,
    Inbox,
    Node,
    Outbox,
)

MockServer = Node
"""A mock server is a `Node` (the original's ``mock.MockServer``)."""

IOError = ClusterIOError  # noqa: A001 - the former name; not in __all__ (it shadows a built-in)

__version__: str = _ffi.ffi.string(_ffi.lib.cluster_version()).decode()
"""The version of the loaded libcluster."""

__all__ = [
    "BROADCAST",
    "CUT_BOTH",
    "CUT_IN",
    "CUT_OUT",
    "KIND_BYTES",
    "KIND_JSON",
    "KIND_TEXT",
    "AddrInUse",
    "BufferTooSmall",
    "Closed",
    "ClusterError",
    "ClusterIOError",
    "ConfigError",
    "Envelope",
    "Full",
    "Inbox",
    "InternalError",
    "InvalidArgument",
    "MockCluster",
    "MockServer",
    "Node",
    "OutOfRange",
    "Outbox",
    "Timeout",
    "TooLarge",
    "UnknownPeer",
]
