"""Preemption: which lower-priority containers to evict so that a pending one fits, on which node.

Pure logic over the cache (kube-scheduler's DefaultPreemption, simplified). For a container ``c``
that no node takes and whose ``preemptionPolicy`` is not ``Never``:

1. candidate nodes are those whose rejection could be undone by removing containers — the reason
   is one of ``REMOVABLE`` (cpu, memory, container count, a host port); a node that is not ready,
   cordoned, tainted, or does not match the selector or affinity cannot be fixed by evicting;
2. on each, every container of *lower* priority than ``c`` that is not already being deleted is
   removed from a copy of the node's sums; if ``c`` still does not pass every filter, the node is
   out. Otherwise victims are *reprieved* one by one, highest priority first (newest first among
   equals), as long as ``c`` still fits: what remains is a minimal set for that order;
3. the node with the fewest victims wins; ties go to the lower highest-victim priority, then to
   the node's name.

Containers already being deleted on a node are not counted as victims (their resources are freed
soon): if ``c`` would fit once they are gone, the answer is "wait", not "evict more".

``Preemptor`` carries the plan out for the scheduling loop (see its docstring). The preemptor is
counted on its nominated node at once (an assumed placement, as kube-scheduler treats nominated
pods), so the room its victims free is not taken by another container; the loop drops that hold
when it decides the preemptor again (on its own, once the victims are gone), and retries parked
containers highest priority first.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import msgspec

from corral.model.errors import Conflict, NotFound
from corral.model.kinds import CONTAINERS, EVENTS, ObjectKey
from corral.model.lifecycle import new_event, now_rfc3339
from corral.model.resources import Container, ObjectReference
from corral.model.strategies import CONTAINERS as CONTAINER_STRATEGY
from corral.scheduler.cache import SchedulerCache
from corral.scheduler.framework import (
    HOST_PORT,
    INSUFFICIENT_CPU,
    INSUFFICIENT_MEMORY,
    TOO_MANY,
    ContainerRequest,
    NodeView,
    Policy,
)
from corral.store.base import Put, Store
from corral.store.objects import Objects
from corral.store.typed import encode

log = logging.getLogger(__name__)

REMOVABLE = frozenset({INSUFFICIENT_CPU, INSUFFICIENT_MEMORY, TOO_MANY, HOST_PORT})


@dataclass(frozen=True, slots=True)
class Candidate:
    request: ContainerRequest
    terminating: bool


@dataclass(frozen=True, slots=True)
class Preemption:
    node: str
    victims: tuple[ContainerRequest, ...]  # empty: it fits once the terminating ones are gone


def _fits(policy: Policy, c: ContainerRequest, n: NodeView) -> bool:
    return all(f.filter(c, n) is None for f in policy.filters if f.applies(c))


def _without(n: NodeView, gone: Iterable[ContainerRequest]) -> NodeView:
    view = copy.copy(n)
    view.ports, view.owners = dict(n.ports), dict(n.owners)
    for r in gone:
        view.remove(r)
    return view


def plan_preemption(policy: Policy, c: ContainerRequest, nodes: Sequence[NodeView],
                    placed: dict[str, list[Candidate]], reasons: dict[str, str | None]) -> Preemption | None:
    """Where and whom to evict for ``c`` (see the module docstring); None when nothing helps.

    ``placed`` lists each node's containers; ``reasons`` is each node's rejection of ``c``.
    """
    best: tuple[tuple[int, int, str], Preemption] | None = None
    for n in nodes:
        if reasons.get(n.name) not in REMOVABLE:
            continue
        here = placed.get(n.name, [])
        terminating = [p.request for p in here if p.terminating]
        if terminating and _fits(policy, c, _without(n, terminating)):
            return Preemption(n.name, ())  # room is being made already: wait for it
        lower = [p.request for p in here if not p.terminating and p.request.priority < c.priority]
        if not lower or not _fits(policy, c, _without(n, [*terminating, *lower])):
            continue
        victims = list(lower)
        for r in sorted(lower, key=lambda r: (-r.priority, r.key)):  # reprieve the most important first
            trial = [v for v in victims if v is not r]
            if _fits(policy, c, _without(n, [*terminating, *trial])):
                victims = trial
        rank = (len(victims), max(v.priority for v in victims), n.name)
        if best is None or rank < best[0]:
            best = (rank, Preemption(n.name, tuple(victims)))
    return best[1] if best is not None else None


class Preemptor:
    """Acts on ``plan_preemption`` for the loop: graceful deletes of the victims, an Event on each
    victim and on the preemptor, and ``status.nominatedNode`` on the preemptor (a CAS write; a lost
    one is fine: the next attempt sees the terminating victims and waits)."""

    def __init__(self, store: Store, cache: SchedulerCache, policy: Policy, *,
                 emit: Callable[[list[Put]], Awaitable[None]]) -> None:
        self.store, self.cache, self.policy = store, cache, policy
        self.objects = Objects(store)
        self.emit = emit
        self.preempted = 0  # victims evicted, for stats
        self.nominated: set[str] = set()  # preemptors holding room on their nominated node (assumed there)

    def release(self, key: str) -> None:
        """Stop holding room for ``key`` (it is being decided again, or is gone)."""
        self.nominated.discard(key)
        if self.cache.is_assumed(key):
            self.cache.forget(key)

    @staticmethod
    def wants(c: Container) -> bool:
        """Whether ``c`` may preempt: it has a resolved priority and its policy allows it."""
        return c.spec.priority is not None and c.spec.preemption_policy != "Never"

    async def preempt(self, key: str, c: Container, request: ContainerRequest) -> Preemption | None:
        nodes = self.cache.nodes()
        checks = [f for f in self.policy.filters if f.applies(request)]
        reasons = {n.name: next((why for f in checks if (why := f.filter(request, n)) is not None), None)
                   for n in nodes}
        placed: dict[str, list[Candidate]] = {}
        for other, node, terminating in self.cache.placements():
            if other.key != key:
                placed.setdefault(node, []).append(Candidate(other, terminating))
        found = plan_preemption(self.policy, request, nodes, placed, reasons)
        if found is None:
            return None
        # hold the room: counted on the nominated node (as an assumed placement) until the loop decides
        # the preemptor again, so that nothing of lower priority takes what its victims free
        self.cache.assume(request, found.node)
        self.nominated.add(key)
        if not found.victims:
            return found
        now = now_rfc3339()
        meta = c.metadata
        events: list[Put] = []
        for v in found.victims:
            _, namespace, name = v.key.rsplit("/", 2)
            log.info("scheduler: %s/%s (priority %d) preempts %s/%s (priority %d) on %s", meta.namespace,
                     meta.name, request.priority, namespace, name, v.priority, found.node)
            await self.objects.delete(Container, name, namespace=namespace)
            self.preempted += 1
            events.append(_event(namespace, name, "Preempted", "Warning", now,
                                 f"preempted by {meta.namespace}/{meta.name} (priority {request.priority}) "
                                 f"to make room on {found.node}"))
        names = ", ".join(v.key.split("/", 3)[-1] for v in found.victims)
        events.append(_event(meta.namespace, meta.name, "Preempting", "Normal", now,
                             f"evicting {len(found.victims)} container(s) of lower priority on {found.node}: {names}"))
        await self.emit(events)

        def nominate(current: Container) -> Container:  # newer than ``c``: the loop just wrote why it is Pending
            return CONTAINER_STRATEGY.prepare_for_status(
                current, msgspec.structs.replace(current.status, nominated_node=found.node))

        with contextlib.suppress(Conflict, NotFound):  # one try: a container changed meanwhile is decided again
            await self.objects.registry.guaranteed_update(CONTAINERS, ObjectKey(key), nominate, tp=Container, attempts=1)
        return found


def _event(namespace: str, name: str, reason: str, type_: str, now: str, message: str) -> Put:
    event = new_event(ObjectReference(kind="Container", namespace=namespace, name=name), reason=reason,
                      message=message, component="scheduler", warning=type_ == "Warning", when=now)
    return Put(EVENTS.key(namespace, event.metadata.name), encode(event))
