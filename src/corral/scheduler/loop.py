"""The scheduling loop: unscheduled containers in, CAS bindings out, in batches.

Flow (kube-scheduler's shape, sized for one asyncio program):

1. Two informers (nodes, containers: the leader's shared ones, store/informer.py) call ``on_node``/``on_container``
   (through ``node_changed``/``container_changed``, the informers' one handler shape). They keep the
   ``SchedulerCache`` current and put the *key* of every container that needs a node
   (``spec.node`` empty, no ``deletionTimestamp``, phase Pending) on a dedup queue; the latest
   object seen per key is kept in ``_pending`` and is what gets bound (never re-read from etcd
   per decision).
2. The worker takes up to ``batch_size`` keys, decides each one synchronously against the cache
   (``Selector``: filters, a sample of feasible nodes scored) and *assumes* every placement at once,
   so the next decision already sees it. Then the batch is committed while the next one is being
   decided (up to ``max_inflight`` commits at a time):
   - bindings go out through the registry's ``bind`` (``store/registry.py``) as one ``store.batch``
     of CAS puts, each on the resourceVersion it was decided on, each the Container strategy's
     binding: ``spec.node``, ``status.phase=Scheduled``, ``status.node``, condition ``Scheduled``;
   - a lost CAS forgets the assumption, re-reads that one key and queues it again if it still
     needs a node;
   - bound containers get a ``Scheduled`` Event, on the shared lease of the moment
     (``store/leases.py``) so it expires after ``event_ttl`` seconds. Events are written by a writer
     of their own (batches of creates), off the binding path: a binding never waits for its Event.
     Like Kubernetes' event recorder, a backlog beyond ``MAX_EVENT_BACKLOG`` is dropped and counted;
   - containers that fit nowhere get ``reason: Unschedulable`` and the counted reasons as their
     message (written only when it changed, and then also said by a ``FailedScheduling`` Warning
     Event through the ``EventRecorder`` the controllers use: repeats are one Event with a count)
     and are *parked*.
3. Parked containers go back on the queue when capacity may have appeared (the cache's
   ``on_change``: a node added or changed, a container finished or deleted), not before their
   per-key backoff (doubling, capped), and all of them every ``resync`` seconds; a change to a
   parked container's spec retries it at once.

Containers pinned by the user (``spec.node`` set at creation) are never scheduled, only counted.
``explain`` answers why-not per node for one container, from the same filters.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from corral.aiokit.eventrecorder import EventRecorder
from corral.model.errors import CorralError, NotFound
from corral.model.kinds import BY_KIND
from corral.model.lifecycle import now_rfc3339
from corral.model.resources import (
    Condition,
    Container,
    ContainerStatus,
    Event,
    EventSource,
    EventSpec,
    Node,
    ObjectMeta,
    ObjectReference,
)
from corral.model.strategies import SCHEDULED, with_condition
from corral.scheduler.affinity import prepare
from corral.scheduler.algorithm import MIN_FEASIBLE_TO_FIND, Decision, Selector
from corral.scheduler.cache import SchedulerCache
from corral.scheduler.framework import ContainerRequest
from corral.scheduler.policy import build_policy
from corral.scheduler.preemption import Preemptor
from corral.store.base import KeyValue, Put, Store
from corral.store.informer import Change, Informer
from corral.store.leases import BucketLeases
from corral.store.listwatch import store_informer
from corral.store.objects import Objects
from corral.store.typed import decode, encode

log = logging.getLogger(__name__)

CONTAINERS = BY_KIND["Container"]
NODES = BY_KIND["Node"]
EVENTS = BY_KIND["Event"]
COMPONENT = "scheduler"
UNSCHEDULABLE = "Unschedulable"
FAILED_SCHEDULING = "FailedScheduling"
MAX_EVENT_BACKLOG = 10_000  # Scheduled Events waiting to be written; more are dropped (and counted)
EVENT_BATCH = 1024  # Events per store.batch (split into txns by the store)
DROP_LOG_SECONDS = 10.0  # at most one warning about dropped Events this often
T = TypeVar("T", Node, Container)


def _decoder(tp: type[T]) -> Callable[[KeyValue], T]:
    return lambda kv: decode(kv, tp)


def needs_node(c: Container) -> bool:
    return not c.spec.node and not c.metadata.deletion_timestamp and c.status.phase == "Pending"


@dataclass(slots=True)
class Stats:
    decisions: int = 0
    bound: int = 0
    conflicts: int = 0
    unschedulable: int = 0
    status_writes: int = 0
    batches: int = 0
    events: int = 0
    events_dropped: int = 0


@dataclass(slots=True)
class _Bind:
    key: str
    container: Container
    request: ContainerRequest
    node: str


class Scheduler:
    """Binds every unscheduled container to a node; see the module docstring.

    Construct it with a ``Store`` and ``await run()`` in a task (it runs until cancelled).
    ``synced`` is set once both informers have listed. The prefixes are the kinds' own; tests
    give private ones to share one etcd.
    """

    def __init__(
        self,
        store: Store,
        *,
        policy: str = "spread",
        percentage_of_nodes_to_score: int = 0,
        min_nodes_to_score: int = MIN_FEASIBLE_TO_FIND,
        batch_size: int = 128,
        max_inflight: int = 4,
        emit_events: bool = True,
        event_ttl: float = 3600.0,
        backoff: float = 0.1,
        max_backoff: float = 10.0,
        resync: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        nodes_prefix: str = NODES.prefix(),
        containers_prefix: str = CONTAINERS.prefix(),
    ) -> None:
        self.store = store
        self.event_leases = BucketLeases(store, ttl=event_ttl) if event_ttl > 0 else None
        # bindings and status writes follow the Container strategy; Events go on the shared lease
        objects = Objects(store, event_leases=self.event_leases)
        self.registry = objects.registry
        # FailedScheduling Events (aggregated, bounded: aiokit/eventrecorder.py); Scheduled ones are batched below
        self.recorder = EventRecorder(component=COMPONENT, create=objects.create, update=objects.update)
        self.nodes_prefix, self.containers_prefix = nodes_prefix, containers_prefix
        self.cache = SchedulerCache(on_change=self._capacity_changed)
        self.selector = Selector(
            build_policy(policy), percentage=percentage_of_nodes_to_score, minimum=min_nodes_to_score
        )
        self.batch_size = batch_size
        self.emit_events = emit_events
        self.backoff, self.max_backoff, self.resync = backoff, max_backoff, resync
        self.stats = Stats()
        self.synced = asyncio.Event()
        self._clock = clock
        self._pending: dict[str, Container] = {}
        self._queue: deque[str] = deque()
        self._queued: set[str] = set()
        self._parked: dict[str, float] = {}  # key -> not before (clock)
        self._attempts: dict[str, int] = {}
        self._bound_at: dict[str, int] = {}  # key -> revision of our binding, until the feed shows it
        self._capacity_dirty = False
        self._last_resync = clock()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(max_inflight)
        self._event_backlog: list[Put] = []
        self._events_queued = asyncio.Event()
        self._event_writer_running = False
        self._drop_logged_at = -DROP_LOG_SECONDS
        self.preemptor = Preemptor(store, self.cache, self.selector.policy, emit=self._emit)

    # --- feed handlers -------------------------------------------------------------------------

    def on_node(self, key: str, node: Node | None) -> None:
        """A node was listed, added or changed (``node``), or deleted (None)."""
        if node is None:
            self.cache.delete_node(key.rsplit("/", 1)[-1])
        else:
            self.cache.set_node(node)

    def node_changed(self, change: Change, key: str, node: Node, _old: Node | None) -> None:
        """The informers' handler for nodes (the one handler shape, store/informer.py)."""
        self.on_node(key, None if change is Change.DELETED else node)

    def container_changed(self, change: Change, key: str, c: Container, _old: Container | None) -> None:
        """The informers' handler for containers."""
        self.on_container(key, None if change is Change.DELETED else c)

    def on_container(self, key: str, c: Container | None) -> None:
        """A container was listed, added or changed (``c``), or deleted (None)."""
        if c is None:
            self.cache.delete_container(key)
            self._drop(key)
            self._bound_at.pop(key, None)
            return
        bound = self._bound_at.get(key)
        if bound is not None:
            if int(c.metadata.resource_version or 0) < bound:
                return  # from before our own binding: stale
            del self._bound_at[key]
        self.cache.set_container(key, c)
        if not needs_node(c):
            self._drop(key)
            return
        prev = self._pending.get(key)
        self._pending[key] = c
        if key in self._parked:
            if prev is not None and prev.spec == c.spec:
                return  # only its status changed (e.g. our own Unschedulable message)
            del self._parked[key]
        self._enqueue(key)

    def _drop(self, key: str) -> None:
        self.preemptor.nominated.discard(key)
        self._pending.pop(key, None)
        self._parked.pop(key, None)
        self._attempts.pop(key, None)

    def _enqueue(self, key: str) -> None:
        if key not in self._queued:
            self._queued.add(key)
            self._queue.append(key)
            self._wake.set()

    def _capacity_changed(self) -> None:
        if self._parked:
            self._capacity_dirty = True
            self._wake.set()

    # --- deciding ------------------------------------------------------------------------------

    def _decide(self, key: str, c: Container) -> tuple[ContainerRequest, Decision]:
        if key in self.preemptor.nominated:  # its reservation on the nominated node: not against itself
            self.preemptor.release(key)
        request = prepare(ContainerRequest.of(key, c), self.cache)
        decision = self.selector.select(request, self.cache.nodes())
        self.stats.decisions += 1
        if decision.node is not None:
            self.cache.assume(request, decision.node)
        return request, decision

    def explain(self, c: Container) -> dict[str, str | None]:
        """Why-not, per node: the reason each node rejects ``c``, or None where it would fit."""
        key = CONTAINERS.key(c.metadata.namespace, c.metadata.name)
        return self.selector.explain(prepare(ContainerRequest.of(key, c), self.cache), self.cache.nodes())

    def _take_batch(self) -> tuple[list[_Bind], list[tuple[str, Container, str]]]:
        binds: list[_Bind] = []
        unfit: list[tuple[str, Container, str]] = []
        while self._queue and len(binds) + len(unfit) < self.batch_size:
            key = self._queue.popleft()
            self._queued.discard(key)
            c = self._pending.get(key)
            if c is None or key in self._parked:
                continue
            request, decision = self._decide(key, c)
            if decision.node is None:
                self._park(key)  # now, so capacity that appears while the commit runs retries it
                unfit.append((key, c, decision.message))
            else:
                binds.append(_Bind(key, c, request, decision.node))
        return binds, unfit

    # --- committing ----------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Decide and commit one batch from the queue; how many containers it took."""
        binds, unfit = self._take_batch()
        await self._commit(binds, unfit)
        return len(binds) + len(unfit)

    async def _commit(self, binds: list[_Bind], unfit: list[tuple[str, Container, str]]) -> None:
        try:
            if binds:
                await self._bind(binds)
            if unfit:
                await self._mark_unschedulable(unfit)
                for key, c, _message in unfit:  # rare: only containers with a priority class
                    if Preemptor.wants(c):
                        await self.preemptor.preempt(key, c, prepare(ContainerRequest.of(key, c), self.cache))
        except CorralError as e:  # the store is unreachable: undo, retry later
            log.warning("scheduler: committing a batch failed (%s); retrying it with backoff", e)
            for b in binds:
                if b.key not in self._bound_at:
                    self.cache.forget(b.key)
                    self._park(b.key)
            self._capacity_dirty = True  # retry them when their backoff ends, not at the next resync
            self._wake.set()

    async def _bind(self, binds: list[_Bind]) -> None:
        now = now_rfc3339()
        self.stats.batches += 1
        results = await self.registry.bind(binds, now=now)
        lost: list[str] = []
        events: list[Put] = []
        for b, rev in zip(binds, results, strict=True):
            if rev is None:
                self.cache.forget(b.key)
                self.stats.conflicts += 1
                lost.append(b.key)
                continue
            self.stats.bound += 1
            self._bound_at[b.key] = rev
            self._drop(b.key)
            if self.emit_events:
                events.append(self._event_put(b, rev, now))
        if events:
            await self._emit(events)
        for key in lost:  # re-read the few that lost, and queue them again if they still need a node
            kv = await self.store.get(key)
            self.on_container(key, decode(kv, Container) if kv else None)

    async def _emit(self, events: list[Put]) -> None:
        """Hand Events to the writer (or, with no writer running, as in ``run_once``, write them now)."""
        if not self._event_writer_running:
            await self._put_events(events)
            self.stats.events += len(events)
            return
        room = max(MAX_EVENT_BACKLOG - len(self._event_backlog), 0)
        if len(events) > room:
            self.stats.events_dropped += len(events) - room
            events = events[:room]
            now = self._clock()
            if now - self._drop_logged_at >= DROP_LOG_SECONDS:  # say so, but not per batch
                self._drop_logged_at = now
                log.warning("scheduler: %d Scheduled events wait to be written; dropping the rest "
                            "(%d dropped so far); the bindings are not affected", MAX_EVENT_BACKLOG,
                            self.stats.events_dropped)
        self._event_backlog.extend(events)
        self._events_queued.set()

    async def _write_events(self) -> None:
        """Write queued Events in batches until cancelled. Best effort: a failed batch is logged,
        counted as dropped, and never undoes or delays a binding."""
        self._event_writer_running = True
        try:
            while True:
                await self._events_queued.wait()
                self._events_queued.clear()
                while self._event_backlog:
                    batch = self._event_backlog[:EVENT_BATCH]
                    del self._event_backlog[:EVENT_BATCH]
                    try:
                        await self._put_events(batch)
                        self.stats.events += len(batch)
                    except CorralError as e:
                        self.stats.events_dropped += len(batch)
                        log.warning("scheduler: could not record %d Scheduled events: %s", len(batch), e)
        finally:
            self._event_writer_running = False

    async def _put_events(self, events: list[Put]) -> None:
        """Create the Events on the current lease (once more on a fresh one if that lease expired)."""
        if self.event_leases is None:
            await self.store.batch(events)
            return
        await self.event_leases.on_lease(
            lambda lease: self.store.batch([dataclasses.replace(p, lease=lease) for p in events]))

    def _event_put(self, b: _Bind, rev: int, now: str) -> Put:
        meta = b.container.metadata
        name = f"{meta.name}.scheduled.{rev}"
        event = Event(
            metadata=ObjectMeta(name=name, namespace=meta.namespace, creation_timestamp=now),
            spec=EventSpec(
                involved_object=ObjectReference(kind="Container", namespace=meta.namespace, name=meta.name,
                                                uid=meta.uid),
                reason=SCHEDULED,
                message=f"assigned {meta.namespace}/{meta.name} to {b.node}",
                source=EventSource(component=COMPONENT),
                first_timestamp=now,
                last_timestamp=now,
            ),
        )
        return Put(EVENTS.key(meta.namespace, name), encode(event))

    async def _mark_unschedulable(self, unfit: list[tuple[str, Container, str]]) -> None:
        now = now_rfc3339()
        writes: list[tuple[str, Container, ContainerStatus]] = []
        for key, c, message in unfit:
            self.stats.unschedulable += 1
            if c.status.reason == UNSCHEDULABLE and c.status.message == message:
                continue  # already says so: no write storm
            cond = Condition(type=SCHEDULED, status="False", reason=UNSCHEDULABLE, message=message,
                             last_transition_time=now)
            status = msgspec.structs.replace(
                c.status, reason=UNSCHEDULABLE, message=message,
                conditions=with_condition(c.status.conditions, cond),
            )
            writes.append((key, c, status))
            if self.emit_events:
                meta = c.metadata
                self.recorder.record(ObjectReference(kind="Container", namespace=meta.namespace, name=meta.name,
                                                     uid=meta.uid), reason=FAILED_SCHEDULING, message=message,
                                     warning=True)
        if writes:
            self.stats.status_writes += len(writes)
            await self.registry.write_statuses(writes)  # a lost CAS is fine: the feed brings the newer version

    def _park(self, key: str) -> None:
        attempts = self._attempts.get(key, 0) + 1
        self._attempts[key] = attempts
        delay = min(self.backoff * 2 ** (attempts - 1), self.max_backoff)
        self._parked[key] = self._clock() + delay

    def _priority(self, key: str) -> int:
        c = self._pending.get(key)
        return (c.spec.priority or 0) if c is not None else 0

    def _unpark(self) -> float | None:
        """Queue the parked containers that are due; seconds until the next check, None: no need."""
        now = self._clock()
        if now - self._last_resync >= self.resync:
            self._last_resync = now
            self._capacity_dirty = bool(self._parked)
        wait: float | None = self._last_resync + self.resync - now if self._parked else None
        if not self._capacity_dirty:
            return wait
        due = [k for k, t in self._parked.items() if t <= now]
        if self.preemptor.nominated:  # higher priorities first, so freed room goes where it was made for
            due.sort(key=lambda k: -self._priority(k))
        for key in due:
            del self._parked[key]
            self._enqueue(key)
        if self._parked:
            soonest = min(self._parked.values()) - now
            wait = soonest if wait is None else min(wait, soonest)
        else:
            self._capacity_dirty = False
        return wait

    # --- running -------------------------------------------------------------------------------

    def informers(self) -> tuple[Informer[str, Node], Informer[str, Container]]:
        """The two feeds of its own, wired to ``node_changed``/``container_changed`` (``run`` runs them)."""
        nodes = store_informer(self.store, self.nodes_prefix, _decoder(Node))
        nodes.add_handler(self.node_changed)
        containers = store_informer(self.store, self.containers_prefix, _decoder(Container))
        containers.add_handler(self.container_changed)
        return nodes, containers

    async def run(self, *, feeds_synced: asyncio.Event | None = None) -> None:
        """Feed, decide and bind until cancelled. With ``feeds_synced``, the caller feeds
        ``on_node``/``on_container`` from informers it runs (the leader shares the controllers')
        and sets the event once they have listed; without, the scheduler runs its own two."""
        async with asyncio.TaskGroup() as tg:
            if feeds_synced is None:
                nodes, containers = self.informers()
                tg.create_task(nodes.run(), name="scheduler-informer-nodes")
                tg.create_task(containers.run(), name="scheduler-informer-containers")
                await nodes.synced.wait()
                await containers.synced.wait()
            else:
                await feeds_synced.wait()
            self.synced.set()
            if self.emit_events:
                tg.create_task(self._write_events(), name="scheduler-events")
                tg.create_task(self.recorder.run(), name="scheduler-failed-scheduling-events")
            await self._work(tg)

    async def _work(self, tg: asyncio.TaskGroup) -> None:
        while True:
            if self._capacity_dirty or not self._queue:
                wait = self._unpark()
                if not self._queue:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait)
                    continue
            await self._slots.acquire()
            binds, unfit = self._take_batch()
            tg.create_task(self._guarded(self._commit(binds, unfit)), name="scheduler-commit")
            await asyncio.sleep(0)  # let the feeds and commits run between batches

    async def _guarded(self, commit: Coroutine[Any, Any, None]) -> None:
        try:
            await commit
        except NotFound:  # pragma: no cover - a key vanished between batch and get; the feed handles it
            pass
        finally:
            self._slots.release()
