"""Translation of etcd's gRPC errors into corral's error tree, at the store boundary.

etcd answers a failed request with a gRPC status code and an ``etcdserver: ...`` message; the
grpc.aio channel itself raises ``UsageError`` once it is closed. ``translate`` maps each to one
``CorralError`` so nothing above ``store/`` ever sees a raw gRPC error: connection trouble is
``Unavailable`` (``Timeout`` past a deadline), a compacted revision is ``Compacted``, an unknown
lease is ``NotFound``, an oversized request is ``TooLarge``. ``retryable`` tells a watch whether
to reconnect or give up.
"""

from __future__ import annotations

from aetcd import rpc

from corral.model.errors import (
    AlreadyExists,
    BadRequest,
    CorralError,
    Forbidden,
    NotFound,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from corral.model.errors import Timeout as TimeoutError_
from corral.store.base import Compacted

GRPC_ERRORS: tuple[type[BaseException], ...] = (rpc.AioRpcError, rpc.BaseError)
"""What a call on the etcd channel raises besides cancellation: catch these, then ``translate``."""

_C = rpc.StatusCode


def translate(err: BaseException, *, what: str) -> CorralError:
    """The corral error for ``err`` raised while doing ``what`` (``"create /corral/x"``)."""
    if not isinstance(err, rpc.AioRpcError):
        return Unavailable(f"etcd: {what}: the client channel is closed or broken ({err})")
    code = err.code()
    detail = err.details() or ""
    message = f"etcd: {what}: {detail or code.name}"
    if code == _C.UNAVAILABLE or code == _C.CANCELLED:
        return Unavailable(message)
    if code == _C.DEADLINE_EXCEEDED:
        return TimeoutError_(message)
    if code == _C.OUT_OF_RANGE and "compacted" in detail:
        return Compacted(message, compact_revision=0)
    if code == _C.NOT_FOUND:
        return NotFound(message)
    if code == _C.INVALID_ARGUMENT or code == _C.OUT_OF_RANGE:
        if "too large" in detail:
            return TooLarge(message)
        return BadRequest(message)
    if code == _C.RESOURCE_EXHAUSTED:
        return TooLarge(message) if "larger than" in detail else Unavailable(message)
    if code == _C.FAILED_PRECONDITION and "already exists" in detail:
        return AlreadyExists(message)
    if code == _C.UNAUTHENTICATED:
        return Unauthorized(message)
    if code == _C.PERMISSION_DENIED:
        return Forbidden(message)
    return Unavailable(message)


def retryable(err: CorralError) -> bool:
    """Whether a watch should reconnect after ``err`` (connection trouble) or give up."""
    return isinstance(err, Unavailable)
