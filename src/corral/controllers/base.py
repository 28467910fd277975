"""The controllers' common shape: shared informers feed keys into a dedup queue; workers reconcile keys.

``Informers`` keeps one store informer per kind for every controller of a control instance (one
etcd watch per kind, however many controllers look at it) and fans its events out to the
handlers controllers register. A ``Controller`` names the kinds it looks at and maps their events
to the keys it owns; ``run`` gives it a ``WorkQueue`` and a few workers that call its
``reconcile(key)`` — level-based and idempotent: it reads the informers' caches, never a copy of
its own, and may return a delay after which the key is looked at again. The loop is the one in
``aiokit/workers.py``, shared with the agent: a ``TemporaryError`` retries the key after its delay
(a ``Conflict``, someone wrote first: at once) or backoff, a ``PermanentError`` waits for the key's
next event, anything else retries with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from corral.aiokit.eventrecorder import EventRecorder
from corral.aiokit.metrics import Histogram
from corral.aiokit.queueing import WorkQueue
from corral.aiokit.workers import Outcome, run_workers
from corral.model.kinds import BY_KIND
from corral.model.lifecycle import reference_to
from corral.model.resources import Object, ObjectReference, OwnerReference
from corral.store import typed
from corral.store.base import KeyValue, Store
from corral.store.informer import Informer
from corral.store.objects import Objects

log = logging.getLogger(__name__)

ObjT = TypeVar("ObjT", bound=Object)
Handler = Callable[[str, Any, Any], None]  # (event type, old, new); old or new may be None


class Shared(Generic[ObjT]):
    """One kind's informer with any number of handlers."""

    def __init__(self, store: Store, tp: type[ObjT]) -> None:
        info = BY_KIND[tp.KIND]
        self.handlers: list[Handler] = []
        self.informer: Informer[ObjT] = Informer(
            store, info.prefix(), lambda kv: _decode(kv, tp),
            on_add=lambda _k, o: self._fan("ADDED", None, o),
            on_update=lambda _k, old, new: self._fan("MODIFIED", old, new),
            on_delete=lambda _k, o: self._fan("DELETED", o, None),
        )

    def _fan(self, type_: str, old: ObjT | None, new: ObjT | None) -> None:
        for handler in self.handlers:
            try:
                handler(type_, old, new)
            except Exception:
                log.exception("a %s handler failed", type_)

    def get(self, key: str) -> ObjT | None:
        return self.informer.get(key)

    def items(self) -> list[ObjT]:
        return [obj for _, obj in self.informer.items()]


def controller_of(obj: Object, owner_kind: str) -> OwnerReference | None:
    """``obj``'s controlling owner when it is of ``owner_kind`` (None otherwise)."""
    return next((o for o in obj.metadata.owner_references if o.controller and o.kind == owner_kind), None)


class OwnedIndex(Generic[ObjT]):
    """A named index of one shared informer: its objects by the uid of their controlling owner of
    ``owner_kind`` (client-go's indexer by owner). The controllers that own what they create —
    deployments, jobs and daemon sets (containers), cron jobs (jobs) — share this one piece: it is
    kept from the informer's events, so ``of(owner uid)`` is a dict lookup, never a scan, and every
    change of a dependent calls ``changed(namespace, owner name)`` so its owner is reconciled."""

    def __init__(self, dependents: Shared[ObjT], owner_kind: str, changed: Callable[[str, str], None]) -> None:
        self.dependents = dependents
        self.owner_kind = owner_kind
        self.changed = changed
        self._by_owner: dict[str, set[str]] = {}  # owner uid -> the dependents' keys
        dependents.handlers.append(self._on_event)

    def _on_event(self, _type: str, old: ObjT | None, new: ObjT | None) -> None:
        obj = new or old
        if obj is None or (ref := controller_of(obj, self.owner_kind)) is None:
            return
        key = BY_KIND[obj.kind].key(obj.metadata.namespace, obj.metadata.name)
        if new is None:
            keys = self._by_owner.get(ref.uid)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_owner[ref.uid]
        else:
            self._by_owner.setdefault(ref.uid, set()).add(key)
        self.changed(obj.metadata.namespace, ref.name)

    def of(self, owner_uid: str) -> list[ObjT]:
        """The dependents of the owner with ``owner_uid``, as the informer has them now."""
        return [obj for key in self._by_owner.get(owner_uid, ()) if (obj := self.dependents.get(key)) is not None]


def _decode(kv: KeyValue, tp: type[ObjT]) -> ObjT:
    return typed.decode(kv, tp)


class Informers:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._shared: dict[str, Shared[Any]] = {}

    def of(self, tp: type[ObjT]) -> Shared[ObjT]:
        kind: str = tp.KIND
        shared = self._shared.get(kind)
        if shared is None:
            shared = self._shared[kind] = Shared(self.store, tp)
        return shared

    async def run(self, synced: asyncio.Event | None = None) -> None:
        async with asyncio.TaskGroup() as tg:
            for kind, shared in self._shared.items():
                tg.create_task(shared.informer.run(), name=f"informer-{kind}")
            for shared in self._shared.values():
                await shared.informer.synced.wait()
            if synced is not None:
                synced.set()


class Controller:
    """Subclass: set ``name``, register handlers in ``__init__`` (calling ``self.enqueue``), write ``reconcile``."""

    name = "controller"
    workers = 2

    def __init__(self, informers: Informers, objects: Objects) -> None:
        self.informers = informers
        self.objects = objects
        self.queue: WorkQueue[str] = WorkQueue(base_delay=0.2, max_delay=30.0)
        # Events (aggregated, bounded: aiokit/eventrecorder.py), written while ``run`` runs
        self.events = EventRecorder(component=self.name, create=objects.create, update=objects.update)
        # figures for /metrics (roles/metrics.py reads them at scrape time)
        self.reconciles = 0
        self.errors = 0
        self.durations = Histogram()

    def enqueue(self, key: str) -> None:
        self.queue.add(key)

    async def record(self, about: Object | ObjectReference, reason: str, message: str, *, warning: bool = False,
                     when: str = "") -> None:
        """An Event from this controller (best effort: a lost Event never undoes the work it reports;
        a repeat within the recorder's window adds to the count of the one written)."""
        ref = about if isinstance(about, ObjectReference) else reference_to(about)
        self.events.record(ref, reason=reason, message=message, warning=warning, when=when)

    async def reconcile(self, key: str) -> float | None:
        raise NotImplementedError

    def _observe(self, outcome: Outcome, seconds: float) -> None:
        self.reconciles += 1
        if outcome is not Outcome.OK:
            self.errors += 1
        self.durations.observe(seconds)

    async def run(self, synced: asyncio.Event) -> None:
        """Work keys once the informers have synced; runs until cancelled."""
        await synced.wait()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.events.run(), name=f"{self.name}-events")
            tg.create_task(run_workers(self.queue, self.reconcile, name=self.name, workers=self.workers,
                                       observe=self._observe), name=f"{self.name}-workers")
