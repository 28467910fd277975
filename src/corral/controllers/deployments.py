"""The Deployment controller: keeps a Deployment's containers at ``spec.replicas`` and rolls out templates.

Keys are Deployments' etcd keys. A Deployment's events enqueue it; a Container's events enqueue
the Deployment named by its controlling ``ownerReference`` (kind Deployment), and an index from
owner uid to container keys, kept by the same handler, lets ``reconcile`` find a Deployment's
containers without walking the cache.

One ``reconcile(key)`` is one bounded, level-based step:

1. **revision** — the template's hash is recorded as the current revision in the Deployment's
   annotations (``rollout.record_revision``; not while paused);
2. **observe** — a ``rollout.Replica`` per owned container, plus what this controller created or
   deleted that the informer has not shown yet (``Assumed``: so a sync that runs before the cache
   caught up does not create or delete twice, as Kubernetes' expectations prevent);
3. **act** — ``rollout.plan`` says which containers to create (at most ``burst`` a sync; name
   ``<deployment>-<5 chars>``, the template's labels plus ``corral.io/template-hash``, the
   controller ownerReference) and which to delete (``Objects.delete``: graceful, the agent removes
   its finalizer);
4. **status** — counts, ``observedGeneration``, revision, and the Progressing/Available
   conditions, written only when they changed.

It returns when to look again: the progress deadline, the moment a ready container has been ready
for ``minReadySeconds``, or a short delay while assumed changes are unconfirmed. Adopting
selector-matching orphans and deleting a Deployment's containers with it are not done here: the
garbage collector owns the cascade.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import msgspec

from corral.controllers import rollout
from corral.controllers.base import Controller, Informers, follow_owned
from corral.controllers.rollout import TEMPLATE_HASH_LABEL, Counts, Replica
from corral.model.errors import AlreadyExists
from corral.model.kinds import BY_KIND
from corral.model.lifecycle import parse_time
from corral.model.resources import (
    Condition,
    Container,
    ContainerTemplate,
    Deployment,
    DeploymentStatus,
    ObjectMeta,
    OwnerReference,
)
from corral.store.indexers import BY_CONTROLLER
from corral.store.informer import Change
from corral.store.objects import Objects

log = logging.getLogger(__name__)

CONTAINERS = BY_KIND["Container"]
DEPLOYMENTS = BY_KIND["Deployment"]
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
ASSUME_FOR = 30.0  # seconds an unconfirmed create/delete is assumed before the cache is trusted again
UNCONFIRMED_RECHECK = 2.0

T = TypeVar("T")


def _copy(obj: T, tp: type[T]) -> T:
    """A deep copy: cached objects are shared and never mutated."""
    return msgspec.json.decode(msgspec.json.encode(obj), type=tp)


def container_name(deployment: str) -> str:
    return f"{deployment[:57]}-{''.join(secrets.choice(NAME_ALPHABET) for _ in range(5))}"


def replica_of(c: Container, *, min_ready: int, now: datetime) -> Replica:
    st = c.status
    ready = st.ready and st.phase == "Running" and not c.metadata.deletion_timestamp
    available = ready
    if ready and min_ready > 0:
        since = parse_time(next((x.last_transition_time for x in st.conditions if x.type == "Ready"), "")
                           or st.started_at)
        available = since is not None and now - since >= timedelta(seconds=min_ready)
    return Replica(
        name=c.metadata.name, hash=c.metadata.labels.get(TEMPLATE_HASH_LABEL, ""),
        created=c.metadata.creation_timestamp, scheduled=bool(c.spec.node or st.node),
        running=st.phase == "Running", ready=ready, available=available,
        terminating=bool(c.metadata.deletion_timestamp), finished=st.phase in ("Failed", "Succeeded"),
    )


def build_container(d: Deployment, template: ContainerTemplate, template_hash: str) -> Container:
    tpl = _copy(template, ContainerTemplate)
    tpl.spec.node = ""
    return Container(
        metadata=ObjectMeta(
            name=container_name(d.metadata.name), namespace=d.metadata.namespace,
            labels={**tpl.metadata.labels, TEMPLATE_HASH_LABEL: template_hash},
            annotations=dict(tpl.metadata.annotations),
            owner_references=[OwnerReference(kind="Deployment", name=d.metadata.name, uid=d.metadata.uid,
                                             controller=True)],
        ),
        spec=tpl.spec,
    )


@dataclass
class Assumed:
    """Creates and deletes of one Deployment that the informer has not shown yet (loop time deadlines)."""

    created: dict[str, tuple[Replica, float]] = field(default_factory=dict)
    deleted: dict[str, float] = field(default_factory=dict)

    def merge(self, seen: Sequence[Replica], now: float) -> list[Replica]:
        """``seen`` with the unconfirmed creates added and the unconfirmed deletes marked terminating."""
        names = {r.name: r for r in seen}
        for name, (_r, until) in list(self.created.items()):
            if name in names or until < now:
                del self.created[name]
        for name, until in list(self.deleted.items()):
            r = names.get(name)
            if r is None or r.terminating or until < now:
                del self.deleted[name]
        out = [msgspec_replace(r, terminating=True) if r.name in self.deleted else r for r in seen]
        out.extend(r for r, _ in self.created.values())
        return out

    @property
    def pending(self) -> bool:
        return bool(self.created or self.deleted)


def msgspec_replace(r: Replica, *, terminating: bool) -> Replica:
    return Replica(name=r.name, hash=r.hash, created=r.created, scheduled=r.scheduled, running=r.running,
                   ready=False if terminating else r.ready, available=False if terminating else r.available,
                   terminating=terminating, finished=r.finished)


class DeploymentController(Controller):
    name = "deployments"
    workers = 4

    def __init__(self, informers: Informers, objects: Objects, *, burst: int = 100) -> None:
        super().__init__(informers, objects)
        self.burst = burst
        self.deployments = informers.of(Deployment)
        self.containers = informers.of(Container)
        follow_owned(self.containers, "Deployment", lambda ns, name: self.enqueue(DEPLOYMENTS.key(ns, name)))
        self.assumed: dict[str, Assumed] = {}  # deployment key -> unconfirmed changes
        self.deployments.add_handler(self._on_deployment)

    # --- handlers: keys only ------------------------------------------------------------------

    def _on_deployment(self, _change: Change, key: str, _obj: Deployment, _old: Deployment | None) -> None:
        self.enqueue(key)

    # --- the sync -----------------------------------------------------------------------------

    def containers_of(self, d: Deployment) -> list[Container]:
        return self.containers.by_index(BY_CONTROLLER, d.metadata.uid)

    async def reconcile(self, key: str) -> float | None:
        cached = self.deployments.get(key)
        if cached is None:
            self.assumed.pop(key, None)
            return None
        if cached.metadata.deletion_timestamp:
            return None  # the garbage collector removes its containers
        d = cached
        spec = d.spec
        now = datetime.now(UTC)
        loop_now = asyncio.get_running_loop().time()
        new_hash = rollout.template_hash(spec.template)

        # 1. the current revision, in the annotations
        history = rollout.read_history(d.metadata.annotations)
        new_revision = False
        revision = d.status.revision
        if not spec.paused:
            history, revision, new_revision = rollout.record_revision(history, spec.template,
                                                                       limit=spec.revision_history_limit)
            if new_revision or d.metadata.annotations.get(rollout.REVISION_ANNOTATION) != str(revision):
                d = _copy(d, Deployment)
                d.metadata.annotations[rollout.REVISION_ANNOTATION] = str(revision)
                d.metadata.annotations[rollout.HISTORY_ANNOTATION] = rollout.write_history(history)
                d = await self.objects.update(d)
                log.info("deployment %s/%s: revision %d (template %s)", d.metadata.namespace,
                         d.metadata.name, revision, new_hash)

        # 2. what is there
        assumed = self.assumed.setdefault(key, Assumed())
        seen = [replica_of(c, min_ready=spec.min_ready_seconds, now=now) for c in self.containers_of(d)]
        replicas = assumed.merge(seen, loop_now)

        # 3. one step
        ru = spec.strategy.rolling_update
        surge, unavailable = rollout.resolve_bounds(spec.replicas, ru.max_surge, ru.max_unavailable)
        if spec.strategy.type == "Recreate" and not spec.paused:
            step = rollout.plan_recreate(replicas, want=spec.replicas, new_hash=new_hash)
            unavailable = spec.replicas
        else:
            step = rollout.plan(replicas, want=spec.replicas, new_hash=new_hash, strategy="RollingUpdate",
                                surge=surge, unavailable=unavailable, paused=spec.paused,
                                scale_hash=self._scale_hash(replicas, history, new_hash))
        capped = await self._act(d, step, history, new_hash, assumed, replicas, loop_now)
        replicas = assumed.merge(seen, loop_now)

        # 4. status
        after = rollout.count(replicas, new_hash)
        before = Counts(replicas=d.status.replicas, updated=d.status.updated_replicas,
                        ready=d.status.ready_replicas, available=d.status.available_replicas)
        conditions = rollout.progressing(d.status.conditions, name=d.metadata.name, before=before, after=after,
                                         want=spec.replicas, paused=spec.paused, new_revision=new_revision,
                                         deadline=spec.progress_deadline_seconds, now=now)
        conditions = rollout.available_condition(conditions, after=after, want=spec.replicas,
                                                 unavailable=unavailable, now=now)
        status = DeploymentStatus(
            observed_generation=d.metadata.generation, replicas=after.replicas, updated_replicas=after.updated,
            ready_replicas=after.ready, available_replicas=after.available,
            unavailable_replicas=max(0, spec.replicas - after.available), revision=revision, conditions=conditions,
        )
        if status != d.status:
            d = _copy(d, Deployment)
            d.status = status
            await self.objects.update_status(d)
        return self._again(replicas, conditions, spec.progress_deadline_seconds, spec.min_ready_seconds,
                           capped=capped, assumed=assumed, now=now)

    @staticmethod
    def _scale_hash(replicas: Sequence[Replica], history: Sequence[rollout.RevisionEntry], new_hash: str) -> str:
        """While paused: the newest revision that has live containers (the current one if none has)."""
        order = {e.hash: e.revision for e in history}
        live = {r.hash for r in replicas if r.live}
        if not live or new_hash in live:
            return new_hash
        return max(live, key=lambda h: order.get(h, -1))

    async def _act(self, d: Deployment, step: rollout.Plan, history: Sequence[rollout.RevisionEntry],
                   new_hash: str, assumed: Assumed, replicas: Sequence[Replica], loop_now: float) -> bool:
        """Create and delete what ``step`` says, at most ``burst`` of each; True when more was left."""
        templates = {e.hash: e.template for e in history}
        ns = d.metadata.namespace
        creates: list[tuple[ContainerTemplate, str]] = []
        for h, n in step.create.items():
            template = d.spec.template if h == new_hash else templates.get(h)
            if template is None:  # an old revision beyond the history: use the current template
                template, h = d.spec.template, new_hash
            creates.extend((template, h) for _ in range(n))
        deletes = step.delete[: self.burst]
        capped = len(creates) > self.burst or len(step.delete) > self.burst
        creates = creates[: self.burst]

        async def create(template: ContainerTemplate, h: str) -> None:
            for _ in range(3):
                c = build_container(d, template, h)
                try:
                    made = await self.objects.create(c)
                except AlreadyExists:
                    continue  # a name taken by chance: draw another
                assumed.created[made.metadata.name] = (
                    Replica(name=made.metadata.name, hash=h, created=made.metadata.creation_timestamp),
                    loop_now + ASSUME_FOR)
                return

        async def delete(name: str) -> None:
            await self.objects.delete(Container, name, namespace=ns)
            assumed.deleted[name] = loop_now + ASSUME_FOR

        if not creates and not deletes:
            return capped
        results = await asyncio.gather(*(create(t, h) for t, h in creates), *(delete(n) for n in deletes),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        log.info("deployment %s/%s: created %d, deleted %d container(s)%s", ns, d.metadata.name,
                 len(creates) - sum(1 for r in results[: len(creates)] if isinstance(r, BaseException)),
                 len(deletes) - sum(1 for r in results[len(creates):] if isinstance(r, BaseException)),
                 f"; {len(errors)} failed: {errors[0]}" if errors else "")
        if errors:
            raise errors[0]
        return capped

    @staticmethod
    def _again(replicas: Sequence[Replica], conditions: Sequence[Condition], deadline: int,
               min_ready: int, *, capped: bool, assumed: Assumed, now: datetime) -> float | None:
        """When to sync again without an event: more to do, a deadline, a readiness clock, unconfirmed writes."""
        delays: list[float] = []
        if capped:
            delays.append(0.0)
        if assumed.pending:
            delays.append(UNCONFIRMED_RECHECK)
        if (left := rollout.deadline_in(conditions, deadline=deadline, now=now)) is not None:
            delays.append(left)
        if min_ready > 0 and any(r.ready and not r.available for r in replicas):
            delays.append(1.0)
        return min(delays) if delays else None
