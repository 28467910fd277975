"""The controllers' common shape: shared informers feed keys into a dedup queue; workers reconcile keys.

``Informers`` keeps one informer (store/informer.py) per kind for every controller and the
scheduler of a leader (one etcd watch and one decode per change, however many look at it); each
registers its handlers and the named indexes it reads (store/indexers.py) on it.
A ``Controller`` names the kinds it looks at and maps their events
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
from typing import Any, TypeVar

from corral.aiokit.eventrecorder import EventRecorder
from corral.aiokit.histogram import Histogram
from corral.aiokit.queueing import WorkQueue
from corral.aiokit.workers import Outcome, run_workers
from corral.model.kinds import BY_KIND
from corral.model.lifecycle import reference_to
from corral.model.resources import Object, ObjectReference, OwnerReference
from corral.store import typed
from corral.store.base import KeyValue, Store
from corral.store.indexers import BY_CONTROLLER, controller_uid
from corral.store.informer import Change, Informer
from corral.store.listwatch import store_informer
from corral.store.objects import Objects

log = logging.getLogger(__name__)

T = TypeVar("T")

ObjT = TypeVar("ObjT", bound=Object)


def controller_of(obj: Object, owner_kind: str) -> OwnerReference | None:
    """``obj``'s controlling owner when it is of ``owner_kind`` (None otherwise)."""
    return next((o for o in obj.metadata.owner_references if o.controller and o.kind == owner_kind), None)


def follow_owned(dependents: Informer[str, ObjT], owner_kind: str, changed: Callable[[str, str], None]) -> None:
    """Keep ``dependents`` indexed by their controlling owner (``BY_CONTROLLER``: a controller's
    ``by_index(BY_CONTROLLER, owner uid)`` is a dict lookup, never a scan) and call ``changed(namespace,
    owner name)`` on every change of a dependent controlled by an ``owner_kind`` — the deployments,
    jobs and daemon sets controllers (containers) and the cron jobs controller (jobs) share this."""
    dependents.add_index(BY_CONTROLLER, controller_uid)

    def on_dependent(_change: Change, _key: str, obj: ObjT, old: ObjT | None) -> None:
        ref = controller_of(obj, owner_kind)
        if ref is not None:
            changed(obj.metadata.namespace, ref.name)
        if old is not None and (was := controller_of(old, owner_kind)) is not None and was != ref:
            changed(old.metadata.namespace, was.name)

    dependents.add_handler(on_dependent)


class Informers:
    """The leader's informers: one per kind (``of``) or raw key prefix (``of_prefix``), over the
    store, shared by every controller and the scheduler; ``run`` runs them all."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._informers: dict[str, Informer[str, Any]] = {}

    def of(self, tp: type[ObjT]) -> Informer[str, ObjT]:
        """The informer of kind ``tp`` (made on first use: ask for it before ``run``)."""
        prefix = BY_KIND[tp.KIND].prefix()
        informer = self._informers.get(prefix)
        if informer is None:
            informer = self._informers[prefix] = store_informer(self.store, prefix, lambda kv: typed.decode(kv, tp))
        return informer

    def of_prefix(self, prefix: str, decode: Callable[[KeyValue], T]) -> Informer[str, T]:
        """The informer of every key under ``prefix`` that is not an object (the agents' heartbeats)."""
        informer = self._informers.get(prefix)
        if informer is None:
            informer = self._informers[prefix] = store_informer(self.store, prefix, decode)
        return informer

    def all(self) -> dict[str, Informer[str, Any]]:
        """Every informer, by the key prefix it follows (for /metrics)."""
        return self._informers

    async def run(self, synced: asyncio.Event | None = None) -> None:
        async with asyncio.TaskGroup() as tg:
            for prefix, informer in self._informers.items():
                tg.create_task(informer.run(), name=f"informer-{prefix}")
            for informer in self._informers.values():
                await informer.synced.wait()
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
