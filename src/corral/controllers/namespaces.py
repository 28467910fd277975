"""Namespace deletion: a Terminating namespace is emptied, then its finalizer goes and so does it.

Deleting a namespace through the API marks it (``deletionTimestamp``, phase ``Terminating``) and
keeps it while the ``corral.io/namespace`` finalizer is on it; the API refuses new objects in it
from that moment. This controller works the namespace's key: it lists every namespaced kind under
the namespace's prefix *in etcd* (Events and other kinds no informer caches included) and deletes
each object with ``Objects.delete`` — so a Container on a node goes gracefully through its agent,
and an owner's dependents go with it. While anything is left (containers waiting for their
agents) the key is looked at again after ``RECHECK`` seconds, and sooner when a watched object of
the namespace is deleted. When the namespace is empty, the finalizer is removed, and with no other
finalizer that removes the namespace.

One sync deletes at most ``MAX_DELETES`` objects and requeues at once, so a namespace with many
thousands of Events does not hold a worker for minutes. Named volumes' directories on the nodes
are the agents' to remove when their Volume object goes; this controller only deletes objects.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from corral.controllers.base import Controller, Informers
from corral.model.errors import NotFound
from corral.model.kinds import BY_KIND, KINDS
from corral.model.lifecycle import NAMESPACE_FINALIZER
from corral.model.resources import Container, Deployment, Namespace, Object
from corral.store import typed
from corral.store.informer import Change
from corral.store.objects import Objects

log = logging.getLogger(__name__)

RECHECK = 1.0
MAX_DELETES = 500
PAGE = 500
NAMESPACES = BY_KIND["Namespace"]


class NamespaceController(Controller):
    name = "namespaces"

    def __init__(self, informers: Informers, objects: Objects) -> None:
        super().__init__(informers, objects)
        self.namespaces = informers.of(Namespace)
        self.namespaces.add_handler(self._on_namespace)
        for tp in (Container, Deployment):  # kinds already cached: their deletions wake a terminating namespace
            informers.of(tp).add_handler(self._on_content)

    def _on_namespace(self, change: Change, _key: str, ns: Namespace, _old: Namespace | None) -> None:
        if change is not Change.DELETED and ns.metadata.deletion_timestamp:
            self.enqueue(ns.metadata.name)

    def _on_content(self, change: Change, _key: str, obj: Any, _old: Any) -> None:
        if change is Change.DELETED:
            ns = self.namespaces.get(NAMESPACES.key("", obj.metadata.namespace))
            if ns is not None and ns.metadata.deletion_timestamp:
                self.enqueue(ns.metadata.name)

    async def reconcile(self, key: str) -> float | None:
        ns = self.namespaces.get(NAMESPACES.key("", key))
        if ns is None or not ns.metadata.deletion_timestamp:
            return None
        left, deleted = 0, 0
        for info in KINDS:
            if not info.namespaced:
                continue
            start_after = ""
            while True:
                page = await self.objects.store.list(info.prefix(key), limit=PAGE, start_after=start_after)
                for kv in page.items:
                    obj: Object = typed.decode(kv, info.type)
                    if obj.metadata.deletion_timestamp:
                        left += 1
                        continue  # already going (waiting for its agent or a finalizer)
                    if deleted >= MAX_DELETES:
                        return 0.0  # enough for one sync: the rest in the next one
                    gone = await self.objects.delete(info.type, obj.metadata.name, namespace=key)
                    deleted += 1
                    if gone is not None and gone.metadata.finalizers:
                        left += 1  # marked; it goes when its finalizers do
                if not page.more or not page.items:
                    break
                start_after = page.items[-1].key
        if deleted:
            log.info("namespaces: deleted %d objects in terminating namespace %s", deleted, key)
        if left:
            return RECHECK  # some may still be there (graceful deletes); look again
        await self._finish(key)
        return None

    async def _finish(self, name: str) -> None:
        """The namespace is empty: remove its finalizer (which removes it, if it was the last)."""

        def release(ns: Namespace) -> Namespace | None:
            if not ns.metadata.deletion_timestamp or NAMESPACE_FINALIZER not in ns.metadata.finalizers:
                return None  # not being deleted (one made again under the same name), or released already
            ns.metadata.finalizers = [f for f in ns.metadata.finalizers if f != NAMESPACE_FINALIZER]
            ns.status = msgspec.structs.replace(ns.status, phase="Terminating")
            return ns

        try:
            await self.objects.guaranteed_update(Namespace, name, release)
        except NotFound:
            return
        log.info("namespaces: namespace %s is empty and gone", name)
