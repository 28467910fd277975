"""The controllers' typed client of the registry (``registry.py``): objects in, objects out.

Controllers run beside the API on the same etcd; ``Objects`` gives them the API's semantics
without an HTTP hop, because it *is* the API's write path: ``create`` stamps a new object by its
kind's strategy and fails with ``AlreadyExists``; ``update`` and ``update_status`` are the
registry's ``guaranteed_update`` pinned to the object's resourceVersion (``Conflict`` when someone
else wrote first: the controller's worker syncs again from what it now sees) and keep what the
other writer owns; ``delete`` is graceful while finalizers remain and retries a lost race itself, as
``guaranteed_update`` does for a change decided on the freshly read object.
With ``event_leases``, Events are put on the current shared lease and expire like the API's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from corral.model.errors import NotFound
from corral.model.resources import Object
from corral.model.strategies import kind_of
from corral.store.base import Store
from corral.store.leases import BucketLeases
from corral.store.registry import Registry

ObjT = TypeVar("ObjT", bound=Object)


class Objects:
    def __init__(self, store: Store, *, event_leases: BucketLeases | None = None) -> None:
        self.registry = Registry(store, event_leases=event_leases)
        self.store = store

    async def get(self, tp: type[ObjT], name: str, *, namespace: str = "") -> ObjT:
        info = kind_of(tp)
        obj, _revision = await self.registry.read(info, info.key(namespace, name), tp)
        return obj

    async def guaranteed_update(self, tp: type[ObjT], name: str, mutate: Callable[[ObjT], ObjT | None], *,
                                namespace: str = "") -> ObjT:
        """The registry's read → ``mutate`` → CAS loop on the stored object (fresh from etcd, never a
        cache's), retried on a lost race; ``mutate`` returns None when there is nothing to write.
        A write that leaves the object marked for deletion with no finalizer removes it."""
        info = kind_of(tp)
        return (await self.registry.guaranteed_update(info, info.key(namespace, name), mutate, tp=tp)).obj

    async def create(self, obj: ObjT) -> ObjT:
        return await self.registry.create(obj)

    async def update(self, obj: ObjT) -> ObjT:
        """Write ``obj``'s metadata and spec if it is unchanged since it was read (its resourceVersion)."""
        return (await self.registry.update(obj)).obj

    async def update_status(self, obj: ObjT) -> ObjT:
        """Write ``obj``'s status onto the stored object if it is unchanged since it was read."""
        return (await self.registry.update_status(obj)).obj

    async def delete(self, tp: type[ObjT], name: str, *, namespace: str = "", grace: int | None = None,
                     attempts: int = 5) -> ObjT | None:
        """Delete (gracefully while finalizers remain); None if it was already gone."""
        info = kind_of(tp)
        try:
            written = await self.registry.delete(info, info.key(namespace, name), tp, grace=grace, attempts=attempts)
        except NotFound:
            return None
        return written.obj
