"""containerd's gRPC errors, translated into corral's error tree at the runtime boundary.

containerd answers with gRPC status codes (its ``errdefs`` package maps its own errors onto them):
NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION (e.g. a task still running), UNAVAILABLE, ... Here
each code becomes a ``corral.model.errors`` class so nothing above ``runtime/`` sees a ``GRPCError``.
A lost connection (socket gone, containerd restarting) is ``ContainerdUnavailable``, which the
client uses to decide that its channel must be rebuilt.
"""

from __future__ import annotations

import asyncio

from grpclib.const import Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

from corral.model.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    CorralError,
    Forbidden,
    Invalid,
    NotFound,
    Timeout,
    TooLarge,
    Unauthorized,
    Unavailable,
)

INSTALL_HINT = "install it with `scripts/install-deps.sh` (Debian packages containerd runc)"


class ContainerdUnavailable(Unavailable):
    """containerd cannot be reached: its socket is missing, refused the connection or dropped it."""


class ContainerdError(CorralError):
    """containerd failed in a way that is not the caller's fault (gRPC UNKNOWN, INTERNAL, ...)."""


_BY_STATUS: dict[Status, type[CorralError]] = {
    Status.NOT_FOUND: NotFound,
    Status.ALREADY_EXISTS: AlreadyExists,
    Status.FAILED_PRECONDITION: Conflict,
    Status.ABORTED: Conflict,
    Status.INVALID_ARGUMENT: Invalid,
    Status.OUT_OF_RANGE: BadRequest,
    Status.UNAVAILABLE: Unavailable,
    Status.DEADLINE_EXCEEDED: Timeout,
    Status.RESOURCE_EXHAUSTED: TooLarge,
    Status.PERMISSION_DENIED: Forbidden,
    Status.UNAUTHENTICATED: Unauthorized,
    Status.CANCELLED: Unavailable,
}

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # ConnectionRefusedError, FileNotFoundError (no socket), ConnectionResetError, BrokenPipe
    StreamTerminatedError,
    ProtocolError,
)


def translate(exc: BaseException, *, method: str) -> CorralError:
    """The corral error for ``exc`` raised by the call to ``method`` (a gRPC path)."""
    short = method.rsplit(".", 1)[-1] or method  # "/containerd.services.tasks.v1.Tasks/Kill" -> "Tasks/Kill"
    if isinstance(exc, CorralError):
        return exc
    if isinstance(exc, GRPCError):
        cls = _BY_STATUS.get(exc.status, ContainerdError)
        return cls(f"containerd {short}: {exc.message or exc.status.name}")
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return Timeout(f"containerd {short}: no answer before the deadline")
    if isinstance(exc, CONNECTION_ERRORS):
        return ContainerdUnavailable(f"containerd {short}: cannot reach containerd ({exc!r})")
    return ContainerdError(f"containerd {short}: {exc!r}")
