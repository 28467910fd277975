"""Garbage collection: objects whose owners are all gone are deleted; orphaning owners let go first.

An object names its owners in ``metadata.ownerReferences`` (kind, name, uid). The collector keeps
two indexes, fed by the shared informers of the kinds it is given: every *owner* object by uid
(``OWNER_KINDS``: Deployment, Job, CronJob, DaemonSet; any kind can be added), and every *dependent* by the uids of
the owners it names. Keys of the queue are ``<Kind>|<store key>``.

- A dependent is checked when it appears or its ownerReferences change, and whenever an owner it
  names is deleted. If none of its owners of a kind the collector knows exists any more, it is
  deleted — ``Objects.delete``, so a Container goes gracefully through its agent. Before deleting,
  the owners are read from etcd, not the cache: a dependent created right after its owner may be
  seen first (a lagging cache must never delete a live object's dependents). A uid that differs
  from the one named means the owner was replaced by a namesake: the old owner is gone.
  An owner of a kind the collector does not watch is assumed alive (nothing is deleted on a guess).
- **Background** (the default ``propagationPolicy``): the owner goes at once; its dependents follow
  through the rule above. **Foreground** is served as Background (the owner does not wait for its
  dependents). **Orphan**: the API adds the ``corral.io/orphan`` finalizer to the owner and marks it
  deleted; the collector removes the owner's reference from every dependent that names it, then the
  finalizer, and the owner goes while the dependents stay (each with the remaining references).

Every sync is level-based: it reads the caches (and etcd for the final check) and is safe to
repeat. A dependent that is already being deleted is left to finish.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Sequence
from typing import Any

from corral.controllers.base import Controller, Informers, Shared
from corral.model.errors import NotFound
from corral.model.kinds import BY_KIND, ObjectKey
from corral.model.lifecycle import ORPHAN_FINALIZER
from corral.model.resources import Container, CronJob, DaemonSet, Deployment, Job, Object
from corral.store import typed
from corral.store.objects import Objects

log = logging.getLogger(__name__)

DEFAULT_OWNERS: tuple[type[Object], ...] = (Deployment, Job, CronJob, DaemonSet)
DEFAULT_DEPENDENTS: tuple[type[Object], ...] = (Container, Job)


def _key(obj: Object) -> ObjectKey:
    return BY_KIND[obj.kind].key(obj.metadata.namespace, obj.metadata.name)


def _owner_uids(obj: Object | None) -> set[str]:
    return {ref.uid for ref in obj.metadata.owner_references} if obj is not None else set()


class GarbageCollector(Controller):
    name = "gc"

    def __init__(self, informers: Informers, objects: Objects, *,
                 owners: Sequence[type[Object]] = DEFAULT_OWNERS,
                 dependents: Sequence[type[Object]] = DEFAULT_DEPENDENTS) -> None:
        super().__init__(informers, objects)
        self.owner_kinds: dict[str, Shared[Any]] = {tp.KIND: informers.of(tp) for tp in owners}
        self.dependent_kinds: dict[str, Shared[Any]] = {tp.KIND: informers.of(tp) for tp in dependents}
        self.owners: dict[str, str] = {}  # uid -> "Kind|key" of every owner object in the caches
        self.dependents: dict[str, set[str]] = {}  # owner uid -> "Kind|key" of the objects naming it
        for kind, shared in self.owner_kinds.items():
            shared.handlers.append(functools.partial(self._on_owner, kind))
        for kind, shared in self.dependent_kinds.items():
            shared.handlers.append(functools.partial(self._on_dependent, kind))

    # --- indexes (informer callbacks: no I/O) -----------------------------------------------

    def _on_owner(self, kind: str, type_: str, old: Object | None, new: Object | None) -> None:
        if new is None:
            assert old is not None
            if self.owners.get(old.metadata.uid) == f"{kind}|{_key(old)}":
                del self.owners[old.metadata.uid]
            for dep in self.dependents.get(old.metadata.uid, ()):
                self.enqueue(dep)  # their owner is gone: are they orphans now?
            return
        self.owners[new.metadata.uid] = f"{kind}|{_key(new)}"
        if new.metadata.deletion_timestamp and ORPHAN_FINALIZER in new.metadata.finalizers:
            self.enqueue(f"{kind}|{_key(new)}")

    def _on_dependent(self, kind: str, type_: str, old: Object | None, new: Object | None) -> None:
        qkey = f"{kind}|{_key(new if new is not None else old)}"  # type: ignore[arg-type]
        before, after = _owner_uids(old), _owner_uids(new)
        for uid in before - after:
            deps = self.dependents.get(uid)
            if deps is not None:
                deps.discard(qkey)
                if not deps:
                    del self.dependents[uid]
        for uid in after - before:
            self.dependents.setdefault(uid, set()).add(qkey)
        if after and (old is None or before != after):
            self.enqueue(qkey)

    # --- sync --------------------------------------------------------------------------------

    async def reconcile(self, key: str) -> float | None:
        kind, _, store_key = key.partition("|")
        if kind in self.owner_kinds:
            owner = self.owner_kinds[kind].get(store_key)
            if owner is not None and owner.metadata.deletion_timestamp and ORPHAN_FINALIZER in owner.metadata.finalizers:
                await self._orphan(kind, owner)
        if kind in self.dependent_kinds:
            dependent = self.dependent_kinds[kind].get(store_key)
            if dependent is not None:
                await self._collect(dependent)
        return None

    async def _collect(self, obj: Object) -> None:
        """Delete ``obj`` when none of the owners it names (of kinds the collector knows) exists."""
        meta = obj.metadata
        if meta.deletion_timestamp or not meta.owner_references:
            return
        for ref in meta.owner_references:
            if ref.kind not in self.owner_kinds or ref.uid in self.owners:
                return  # an owner we cannot judge, or one the cache holds: not garbage
        for ref in meta.owner_references:  # the cache says all gone: ask etcd before acting
            info = BY_KIND[ref.kind]
            kv = await self.objects.store.get(info.key(meta.namespace if info.namespaced else "", ref.name))
            if kv is not None and typed.decode(kv, info.type).metadata.uid == ref.uid:
                return  # the cache lags behind a live owner; its ADDED event will come
        log.info("gc: deleting %s %s/%s: its owner %s is gone", obj.kind.lower(), meta.namespace, meta.name,
                 ", ".join(f"{r.kind.lower()} {r.name}" for r in meta.owner_references))
        await self.objects.delete(type(obj), meta.name, namespace=meta.namespace)

    async def _orphan(self, kind: str, owner: Object) -> None:
        """Take ``owner`` out of its dependents' ownerReferences, then remove its orphan finalizer."""
        uid = owner.metadata.uid

        def strip(dep: Object) -> Object | None:
            refs = [r for r in dep.metadata.owner_references if r.uid != uid]
            if len(refs) == len(dep.metadata.owner_references):
                return None
            dep.metadata.owner_references = refs
            return dep

        for dep_key in sorted(self.dependents.get(uid, ())):
            dep_kind, _, store_key = dep_key.partition("|")
            info = BY_KIND[dep_kind]
            with contextlib.suppress(NotFound):  # fresh from etcd, never a cached object written back
                await self.objects.registry.guaranteed_update(info, ObjectKey(store_key), strip, tp=info.type)

        def release(current: Object) -> Object | None:
            if current.metadata.uid != uid or ORPHAN_FINALIZER not in current.metadata.finalizers:
                return None
            current.metadata.finalizers = [f for f in current.metadata.finalizers if f != ORPHAN_FINALIZER]
            return current  # with no finalizer left, this removes it

        try:
            written = await self.objects.registry.guaranteed_update(BY_KIND[kind], _key(owner), release, tp=type(owner))
        except NotFound:
            return
        if not written.changed:
            return
        log.info("gc: orphaned the dependents of %s %s/%s", kind.lower(), owner.metadata.namespace, owner.metadata.name)
