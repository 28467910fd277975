"""corral's one error tree.

Every layer raises these; adapters (``store/`` for etcd, ``runtime/`` for containerd) translate
their library's errors at the boundary so nothing above them sees a raw ``GRPCError``. The API
turns each into the contract's error body: ``{"error": {"code", "reason", "message", "details"}}``.

Whether a failure is worth retrying is part of its type, decided where it is raised (kopf's
``TemporaryError(delay)`` / ``PermanentError``): a ``TemporaryError`` (a part unreachable now, a
lost compare-and-swap, a CNI plugin's "try again later", a failed pull) is retried after its
``delay`` — or, without one, after the key's backoff; a ``PermanentError`` (input that cannot work
as it is) is not retried until the key is added again, i.e. until its object changes. Anything
else is retried with backoff. The one reader of this is the work loop in ``aiokit/workqueue.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One bad field: its dotted path (``spec.resources.limits.memory``) and what is wrong with it."""

    field: str
    message: str


class CorralError(Exception):
    """Base of every error corral raises on purpose. ``code`` is the HTTP status it maps to."""

    code = 500
    reason = "InternalError"

    def __init__(self, message: str, *, details: Sequence[FieldError] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = tuple(details)

    def to_body(self) -> dict[str, object]:
        return {
            "error": {
                "code": self.code,
                "reason": self.reason,
                "message": self.message,
                "details": [{"field": d.field, "message": d.message} for d in self.details],
            }
        }


class TemporaryError(CorralError):
    """Retry: after ``delay`` seconds when it is known (the class's or the raiser's), else after backoff."""

    delay: float | None = None

    def __init__(self, message: str, *, delay: float | None = None, details: Sequence[FieldError] = ()) -> None:
        super().__init__(message, details=details)
        if delay is not None:
            self.delay = delay


class PermanentError(CorralError):
    """Retrying the same input cannot help: the key is looked at again only when it is added again."""


class BadRequest(CorralError):
    code = 400
    reason = "BadRequest"


class Unauthorized(CorralError):
    code = 401
    reason = "Unauthorized"


class Forbidden(CorralError):
    code = 403
    reason = "Forbidden"


class NotFound(CorralError):
    code = 404
    reason = "NotFound"


class MethodNotAllowed(CorralError):
    code = 405
    reason = "MethodNotAllowed"


class Conflict(TemporaryError):
    """A write lost a compare-and-swap: the object changed since it was read (read again and retry)."""

    delay = 0.05
    code = 409
    reason = "Conflict"


class AlreadyExists(Conflict):
    reason = "AlreadyExists"


class Gone(CorralError):
    """The requested revision was compacted away; list again and watch from the new revision."""

    code = 410
    reason = "Expired"


class TooLarge(CorralError):
    code = 413
    reason = "RequestEntityTooLarge"


class UnsupportedMediaType(CorralError):
    code = 415
    reason = "UnsupportedMediaType"


class Invalid(PermanentError):
    """The input is well-formed but wrong; ``details`` names every bad field (retried only once it changes)."""

    code = 422
    reason = "Invalid"


class Unavailable(TemporaryError):
    """A part corral depends on (etcd, containerd, a registry, a node) cannot be reached now."""

    code = 503
    reason = "ServiceUnavailable"


class StoreUnavailable(Unavailable):
    """The API server answers but its store (etcd) does not: nothing can be written, and so nothing
    (a node's containers included) can be released. Agents tell this from an unreachable API."""

    reason = "StoreUnavailable"


class Timeout(Unavailable):
    code = 504
    reason = "Timeout"
