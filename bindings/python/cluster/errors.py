"""The exception tree, one class per status code of the C ABI."""

from __future__ import annotations

from typing import Dict, NoReturn, Type

from ._ffi import ffi, lib


class ClusterError(Exception):
    """Base of every error the library reports.

    ``code`` is the C status (a negative ``CLUSTER_E_*`` value), ``name`` its
    stable name, and ``str(error)`` the message of the call that failed.
    """

    code: int = 0

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def name(self) -> str:
        """The status code's stable C name, e.g. ``"CLUSTER_E_TIMEOUT"``."""
        return str(ffi.string(lib.cluster_strerror(self.code)).decode())


class InvalidArgument(ClusterError, ValueError):
    """An argument was outside its domain (CLUSTER_E_NULL_ARG, CLUSTER_E_INVALID_ARG)."""

    code = -2


class OutOfRange(InvalidArgument, OverflowError):
    """An integer argument does not fit the C type it is passed as (a pid or
    msg_id in int64_t, a seed in uint64_t, ...); the message names the
    argument and its range. Both a `ValueError` (as `InvalidArgument`) and an
    `OverflowError` (what Python raises for an int too big for C)."""

    code = -2


class ConfigError(ClusterError, ValueError):
    """The configuration is invalid; the message names the field (CLUSTER_E_CONFIG)."""

    code = -3


class AddrInUse(ClusterError, OSError):
    """The node's address is already in use (CLUSTER_E_ADDR_IN_USE)."""

    code = -4


class ClusterIOError(ClusterError, OSError):
    """An operating-system I/O error (CLUSTER_E_IO).

    Not named ``IOError``: ``from cluster import *`` would shadow the built-in
    (an alias of `OSError`). ``cluster.IOError`` remains as an alias for old
    code, left out of ``__all__``."""

    code = -5


IOError_ = ClusterIOError
"""The class's former name, kept for old code."""


class UnknownPeer(ClusterError, KeyError):
    """The destination id is not a member of the cluster (CLUSTER_E_UNKNOWN_PEER)."""

    code = -6

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class TooLarge(ClusterError, ValueError):
    """The payload is larger than MaxMessageSize (CLUSTER_E_TOO_LARGE)."""

    code = -7


class Timeout(ClusterError, TimeoutError):
    """A blocking call ran out of time (CLUSTER_E_TIMEOUT)."""

    code = -8


class Closed(ClusterError):
    """The node or mock cluster is closed (CLUSTER_E_CLOSED)."""

    code = -9


class Full(ClusterError):
    """A bounded queue was full: the message was dropped and counted (CLUSTER_E_FULL)."""

    code = -10


class InternalError(ClusterError):
    """A bug inside the library, caught at the boundary (CLUSTER_E_PANIC)."""

    code = -11


class BufferTooSmall(ClusterError):
    """A buffer was too small (CLUSTER_E_BUFFER_TOO_SMALL); the wrapper retries, so
    users should never see it."""

    code = -12


_BY_CODE: Dict[int, Type[ClusterError]] = {
    -1: InvalidArgument,
    -2: InvalidArgument,
    -3: ConfigError,
    -4: AddrInUse,
    -5: ClusterIOError,
    -6: UnknownPeer,
    -7: TooLarge,
    -8: Timeout,
    -9: Closed,
    -10: Full,
    -11: InternalError,
    -12: BufferTooSmall,
}


def error_for(code: int, message: str) -> ClusterError:
    """The exception for status ``code`` carrying ``message``."""
    cls = _BY_CODE.get(code, ClusterError)
    if not message:
        message = ffi.string(lib.cluster_strerror(code)).decode()
    return cls(message, code)


def raise_error(code: int, err: object) -> NoReturn:
    """Raises the exception for a failed call; ``err`` is its ``cluster_error_t *``."""
    message = ffi.string(err.message).decode("utf-8", "replace")  # type: ignore[attr-defined]
    raise error_for(code, message)
