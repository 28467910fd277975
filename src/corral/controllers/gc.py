"""Garbage collection: objects whose owners are all gone are deleted; orphaning owners let go first.

An object names its owners in ``metadata.ownerReferences`` (kind, name, uid). The collector reads
two named indexes of the shared informers of the kinds it is given (store/indexers.py): every
*owner* object by its uid (``BY_UID``; ``DEFAULT_OWNERS``: Deployment, Job, CronJob, DaemonSet; any
kind can be added), and every *dependent* by the uids of the owners it names (``BY_OWNER``). Keys
of the queue are ``<Kind>|<store key>``.

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

from corral.controllers.base import Controller, Informers
from corral.model.errors import NotFound
from corral.model.kinds import BY_KIND, ObjectKey
from corral.model.lifecycle import ORPHAN_FINALIZER
from corral.model.resources import Container, CronJob, DaemonSet, Deployment, Job, Object
from corral.store import typed
from corral.store.indexers import BY_OWNER, BY_UID, owner_uids, uid_of
from corral.store.informer import Change, Informer
from corral.store.objects import Objects

log = logging.getLogger(__name__)

DEFAULT_OWNERS: tuple[type[Object], ...] = (Deployment, Job, CronJob, DaemonSet)
DEFAULT_DEPENDENTS: tuple[type[Object], ...] = (Container, Job)


def _key(obj: Object) -> ObjectKey:
    return BY_KIND[obj.kind].key(obj.metadata.namespace, obj.metadata.name)


class GarbageCollector(Controller):
    name = "gc"

    def __init__(self, informers: Informers, objects: Objects, *,
                 owners: Sequence[type[Object]] = DEFAULT_OWNERS,
                 dependents: Sequence[type[Object]] = DEFAULT_DEPENDENTS) -> None:
        super().__init__(informers, objects)
        self.owner_kinds: dict[str, Informer[str, Any]] = {tp.KIND: informers.of(tp) for tp in owners}
        self.dependent_kinds: dict[str, Informer[str, Any]] = {tp.KIND: informers.of(tp) for tp in dependents}
        for kind, informer in self.owner_kinds.items():
            informer.add_index(BY_UID, uid_of)
            informer.add_handler(functools.partial(self._on_owner, kind))
        for kind, informer in self.dependent_kinds.items():
            informer.add_index(BY_OWNER, owner_uids)
            informer.add_handler(functools.partial(self._on_dependent, kind))

    # --- the indexes ---------------------------------------------------------------------------

    def owner_exists(self, kind: str, uid: str) -> bool:
        """Whether the cache holds an owner of ``kind`` with ``uid``."""
        return bool(self.owner_kinds[kind].keys_by_index(BY_UID, uid))

    def dependents_of(self, uid: str) -> list[str]:
        """``Kind|key`` of every cached object that names the owner with ``uid``."""
        return [f"{kind}|{key}" for kind, informer in self.dependent_kinds.items()
                for key in informer.keys_by_index(BY_OWNER, uid)]

    # --- handlers: keys only -------------------------------------------------------------------

    def _on_owner(self, kind: str, change: Change, key: str, owner: Object, _old: Object | None) -> None:
        if change is Change.DELETED:
            for dep in self.dependents_of(owner.metadata.uid):
                self.enqueue(dep)  # their owner is gone: are they orphans now?
        elif owner.metadata.deletion_timestamp and ORPHAN_FINALIZER in owner.metadata.finalizers:
            self.enqueue(f"{kind}|{key}")

    def _on_dependent(self, kind: str, change: Change, key: str, obj: Object, old: Object | None) -> None:
        if change is Change.DELETED or not obj.metadata.owner_references:
            return
        if old is None or owner_uids(old) != owner_uids(obj):
            self.enqueue(f"{kind}|{key}")

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
            if ref.kind not in self.owner_kinds or self.owner_exists(ref.kind, ref.uid):
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

        for dep_key in sorted(self.dependents_of(uid)):
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
