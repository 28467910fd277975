"""The Store protocol: what corral needs from its state store, and nothing more.

Keys are strings (``/corral/containers/default/web``), values are bytes (an object's JSON).
A value's *revision* is etcd's ``mod_revision``: it is the object's ``resourceVersion`` and the
token for compare-and-swap. Errors are corral's own: ``AlreadyExists`` and ``Conflict`` for lost
CAS, ``NotFound``, ``Gone`` when a watch starts from a compacted revision, ``Unavailable`` when the
store cannot be reached.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from corral.model.errors import Gone


class Compacted(Gone):
    """The revision a watch or read asked for was compacted; relist, then watch from the list."""

    def __init__(self, message: str, *, compact_revision: int) -> None:
        super().__init__(message)
        self.compact_revision = compact_revision


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int = 1
    lease: int = 0


class EventType(enum.Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change. For DELETE, ``value`` is the last value the key had (etcd's prev_kv)."""

    type: EventType
    key: str
    value: bytes
    revision: int
    create_revision: int = 0
    version: int = 0
    lease: int = 0

    def to_kv(self) -> KeyValue:
        """The key as this event left it (for DELETE: as it was just before)."""
        return KeyValue(
            key=self.key,
            value=self.value,
            create_revision=self.create_revision,
            mod_revision=self.revision,
            version=self.version,
            lease=self.lease,
        )


class WatchStream(Protocol):
    """What ``Store.watch`` returns: an async iterator of events that can be closed early."""

    def __aiter__(self) -> AsyncIterator[WatchEvent]: ...

    async def __anext__(self) -> WatchEvent: ...

    async def aclose(self) -> None:
        """Stop watching and release the stream; iteration then ends."""
        ...


@dataclass(frozen=True, slots=True)
class Page:
    items: list[KeyValue]
    revision: int
    more: bool = False


ANY_REVISION = -1  # a Put with this expected_revision writes whatever is there (no compare)


@dataclass(frozen=True, slots=True)
class Put:
    """One write in a batch: create when ``expected_revision`` is 0, put over anything when it is
    ``ANY_REVISION``, else CAS on it."""

    key: str
    value: bytes
    expected_revision: int = 0
    lease: int = 0


class Store(Protocol):
    async def get(self, key: str) -> KeyValue | None: ...

    async def list(self, prefix: str, *, limit: int = 0, start_after: str = "", revision: int = 0) -> Page:
        """Keys under ``prefix`` in key order, at one revision (``revision=0``: the newest)."""
        ...

    async def create(self, key: str, value: bytes, *, lease: int = 0) -> int:
        """Create ``key``; the new revision. ``AlreadyExists`` if it is there."""
        ...

    async def update(self, key: str, value: bytes, *, expected_revision: int, lease: int = 0) -> int:
        """Replace ``key`` if its mod_revision is ``expected_revision``; ``Conflict``/``NotFound`` if not."""
        ...

    async def put(self, key: str, value: bytes, *, lease: int = 0, linger: float = 0.0) -> int:
        """Write ``key`` whether or not it exists (no compare); the new revision. A store that batches
        writes may hold this one up to ``linger`` seconds to share a txn; others ignore it."""
        ...

    async def delete(self, key: str, *, expected_revision: int = 0) -> int:
        """Delete ``key`` (CAS when ``expected_revision``); the revision of the delete."""
        ...

    async def batch(self, puts: Sequence[Put]) -> Sequence[int | None]:
        """Apply independent CAS writes in few round trips; per put, its new revision or None if it lost."""
        ...

    def watch(self, prefix: str, *, from_revision: int) -> WatchStream:
        """Every change under ``prefix`` from ``from_revision`` on, in order, across reconnects.

        Raises ``Compacted`` when ``from_revision`` is no longer in the store's history.
        """
        ...

    async def grant_lease(self, ttl: int) -> int: ...

    async def keep_alive(self, lease: int) -> int:
        """Refresh ``lease``; its remaining TTL (0 or ``NotFound`` if it expired)."""
        ...

    async def revoke_lease(self, lease: int) -> None: ...

    async def close(self) -> None: ...
