"""Typed objects in the store, with the lifecycle rules the API applies — for the control plane's writers.

Controllers run beside the API on the same etcd; ``Objects`` gives them the API's semantics
without an HTTP hop: ``create`` stamps a new object (uid, time, generation, finalizers) and fails
with ``AlreadyExists``; ``update`` and ``update_status`` are compare-and-swap on the object's
resourceVersion (``Conflict`` when someone else wrote first) and keep what the other writer owns;
``delete`` is graceful while finalizers remain. With ``event_leases``, an Event it creates is put on
the current shared lease (``leases.py``) and expires like one created through the API (an update
of one — the event recorder's count of repeats — puts it on the lease of the moment too).
"""

from __future__ import annotations

from typing import TypeVar

from corral.model.errors import Conflict, NotFound
from corral.model.kinds import BY_KIND, KindInfo
from corral.model.lifecycle import carry_over, prepare_delete, stamp_new
from corral.model.resources import Object
from corral.store import typed
from corral.store.base import Store
from corral.store.leases import BucketLeases

ObjT = TypeVar("ObjT", bound=Object)


def _info(obj_or_type: object) -> KindInfo:
    kind = obj_or_type.KIND if isinstance(obj_or_type, type) else obj_or_type.kind  # type: ignore[attr-defined]
    return BY_KIND[str(kind)]


class Objects:
    def __init__(self, store: Store, *, event_leases: BucketLeases | None = None) -> None:
        self.store = store
        self.event_leases = event_leases

    async def get(self, tp: type[ObjT], name: str, *, namespace: str = "") -> ObjT:
        info = _info(tp)
        kv = await self.store.get(info.key(namespace, name))
        if kv is None:
            raise NotFound(f'{info.kind.lower()} "{name}" not found')
        return typed.decode(kv, tp)

    async def create(self, obj: ObjT) -> ObjT:
        info = _info(obj)
        stamp_new(obj)
        key, value = typed.key_of(info, obj), typed.encode(obj)
        if self.event_leases is not None and info.kind == "Event":  # expires like one made through the API
            revision = await self.event_leases.on_lease(lambda lease: self.store.create(key, value, lease=lease))
        else:
            revision = await self.store.create(key, value)
        obj.metadata.resource_version = str(revision)
        return obj

    async def _current(self, obj: ObjT) -> tuple[KindInfo, ObjT, int]:
        """The stored version of ``obj`` and its revision; Conflict if ``obj`` was read at another one."""
        info = _info(obj)
        kv = await self.store.get(typed.key_of(info, obj))
        if kv is None:
            raise NotFound(f'{info.kind.lower()} "{obj.metadata.name}" not found')
        expected = int(obj.metadata.resource_version or kv.mod_revision)
        if expected != kv.mod_revision:
            raise Conflict(f'{info.kind.lower()} "{obj.metadata.name}" changed since it was read')
        return info, typed.decode(kv, type(obj)), expected

    async def update(self, obj: ObjT) -> ObjT:
        """Write ``obj``'s metadata and spec if it is unchanged since it was read (its resourceVersion)."""
        info, current, expected = await self._current(obj)
        carry_over(obj, current, status_subresource=info.status_subresource)
        return await self._write(info, obj, expected)

    async def update_status(self, obj: ObjT) -> ObjT:
        """Write ``obj``'s status onto the stored object if it is unchanged since it was read."""
        info, current, expected = await self._current(obj)
        current.status = obj.status
        return await self._write(info, current, expected)

    async def _write(self, info: KindInfo, obj: ObjT, expected: int) -> ObjT:
        key = typed.key_of(info, obj)
        obj.metadata.resource_version = ""
        if obj.metadata.deletion_timestamp and not obj.metadata.finalizers:
            await self.store.delete(key, expected_revision=expected)
            return obj
        value = typed.encode(obj)
        if self.event_leases is not None and info.kind == "Event":  # an update without a lease would make it immortal
            revision = await self.event_leases.on_lease(
                lambda lease: self.store.update(key, value, expected_revision=expected, lease=lease))
        else:
            revision = await self.store.update(key, value, expected_revision=expected)
        obj.metadata.resource_version = str(revision)
        return obj

    async def delete(self, tp: type[ObjT], name: str, *, namespace: str = "", grace: int | None = None,
                     attempts: int = 5) -> ObjT | None:
        """Delete (gracefully while finalizers remain); None if it was already gone."""
        info = _info(tp)
        key = info.key(namespace, name)
        for _ in range(attempts):
            kv = await self.store.get(key)
            if kv is None:
                return None
            obj = typed.decode(kv, tp)
            try:
                if prepare_delete(obj, grace=grace):
                    await self.store.delete(key, expected_revision=kv.mod_revision)
                    return obj
                obj.metadata.resource_version = ""
                revision = await self.store.update(key, typed.encode(obj), expected_revision=kv.mod_revision)
                obj.metadata.resource_version = str(revision)
                return obj
            except (Conflict, NotFound):
                continue
        raise Conflict(f'{info.kind.lower()} "{name}" keeps changing; delete it again')
