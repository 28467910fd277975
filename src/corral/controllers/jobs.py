"""The Job controller: runs a Job's container template until ``completions`` of them succeed.

Keys are Jobs' etcd keys. A Job's events enqueue it; a Container's events enqueue the Job named by
its controlling ``ownerReference`` (kind Job), and an index from the Job's uid to its containers'
keys, kept by the same handler, finds them without walking the cache.

One ``reconcile(key)`` is a level-based step (Kubernetes' job controller, without indexes or pod
failure policies):

1. **count** — the Job's containers: *active* (not finished, not being deleted), *succeeded* and
   *failed* (phase), plus the restarts of ``OnFailure`` containers, which count as failures too.
   Containers this controller created that the informer has not shown yet count as active
   (``expected``), so a sync that runs early never creates twice and never exceeds
   ``parallelism``.
2. **decide** — Failed/``BackoffLimitExceeded`` once failures exceed ``backoffLimit``;
   Failed/``DeadlineExceeded`` once ``activeDeadlineSeconds`` have passed since ``startTime``;
   Complete once ``completions`` succeeded. A finished Job's active containers are deleted
   (gracefully); its finished ones stay, so ``corral logs job/NAME`` can read them.
3. **act** — otherwise create ``min(parallelism, completions - succeeded) - active`` containers
   (name ``<job>-<5 chars>``, the template's labels plus ``corral.io/job-name``, restartPolicy as
   the template says — never Always, validation refuses it — and the controller ownerReference).
   After a failure the next creation waits ``backoff_base * 2^(failures-1)`` seconds from the last
   failure, capped at ``backoff_cap`` (Kubernetes: 10 s doubling up to 6 min; tests shorten the
   base through ``serve --job-backoff``).
4. **status** — counts, ``startTime``/``completionTime`` and the conditions, written when changed.

A finished Job with ``ttlSecondsAfterFinished`` is deleted that long after it finished; the garbage
collector then removes its containers. The sync returns when to look again: the deadline, the end
of a back-off, the TTL, or a short recheck while creations are unconfirmed.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from corral.aiokit.backoff import exponential
from corral.controllers.base import Controller, Informers, follow_owned
from corral.model.errors import AlreadyExists
from corral.model.kinds import BY_KIND
from corral.model.lifecycle import parse_time
from corral.model.resources import (
    Condition,
    Container,
    ContainerTemplate,
    Job,
    ObjectMeta,
    OwnerReference,
)
from corral.store.indexers import BY_CONTROLLER
from corral.store.informer import Change
from corral.store.objects import Objects

log = logging.getLogger(__name__)

CONTAINERS = BY_KIND["Container"]
JOBS = BY_KIND["Job"]
JOB_NAME_LABEL = "corral.io/job-name"
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
EXPECT_FOR = 30.0  # seconds a create the informer has not shown is assumed to be in flight
UNCONFIRMED_RECHECK = 1.0
BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
DEADLINE_EXCEEDED = "DeadlineExceeded"
COMPLETE, FAILED = "Complete", "Failed"


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def finished_condition(job: Job) -> Condition | None:
    """The Job's Complete or Failed condition when it is True (a finished Job), else None."""
    return next((c for c in job.status.conditions if c.type in (COMPLETE, FAILED) and c.status == "True"), None)


def build_container(job: Job) -> Container:
    tpl = msgspec.json.decode(msgspec.json.encode(job.spec.template), type=ContainerTemplate)
    name = f"{job.metadata.name[:57]}-{''.join(secrets.choice(NAME_ALPHABET) for _ in range(5))}"
    return Container(
        metadata=ObjectMeta(
            name=name, namespace=job.metadata.namespace,
            labels={**tpl.metadata.labels, JOB_NAME_LABEL: job.metadata.name},
            annotations=dict(tpl.metadata.annotations),
            owner_references=[OwnerReference(kind="Job", name=job.metadata.name, uid=job.metadata.uid,
                                             controller=True)],
        ),
        spec=tpl.spec,
    )


def backoff_delay(failures: int, *, base: float, cap: float) -> float:
    """Seconds to wait before the next creation after ``failures`` failures (0 with none)."""
    return exponential(failures - 1, initial=base, maximum=cap) if failures > 0 else 0.0


@dataclass
class Counts:
    active: list[Container] = field(default_factory=list)
    succeeded: int = 0
    failed: int = 0
    last_failure: datetime | None = None


def count(containers: list[Container]) -> Counts:
    out = Counts()
    for c in containers:
        st = c.status
        failures = st.restart_count if c.spec.restart_policy == "OnFailure" else 0
        if st.phase == "Succeeded":
            out.succeeded += 1
        elif st.phase == "Failed":
            failures += 1
        elif not c.metadata.deletion_timestamp:
            out.active.append(c)
        out.failed += failures
        if failures:
            when = parse_time(st.finished_at) or parse_time(c.metadata.creation_timestamp)
            if when is not None and (out.last_failure is None or when > out.last_failure):
                out.last_failure = when
    return out


class JobController(Controller):
    name = "jobs"
    workers = 2

    def __init__(self, informers: Informers, objects: Objects, *, backoff_base: float = 10.0,
                 backoff_cap: float = 360.0, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__(informers, objects)
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.clock = clock
        self.jobs = informers.of(Job)
        self.containers = informers.of(Container)
        follow_owned(self.containers, "Job", lambda ns, name: self.enqueue(JOBS.key(ns, name)))
        self.expected: dict[str, dict[str, float]] = {}  # job key -> names created, not yet seen -> until
        self.jobs.add_handler(self._on_job)

    def _on_job(self, _change: Change, key: str, _obj: Job, _old: Job | None) -> None:
        self.enqueue(key)

    def containers_of(self, job: Job) -> list[Container]:
        return self.containers.by_index(BY_CONTROLLER, job.metadata.uid)

    async def reconcile(self, key: str) -> float | None:
        job = self.jobs.get(key)
        if job is None:
            self.expected.pop(key, None)
            return None
        if job.metadata.deletion_timestamp:
            return None  # the garbage collector removes its containers
        now = self.clock()
        containers = self.containers_of(job)
        counts = count(containers)
        loop_now = asyncio.get_running_loop().time()
        expected = self.expected.setdefault(key, {})
        seen = {c.metadata.name for c in containers}
        for name, until in list(expected.items()):
            if name in seen or until < loop_now:
                del expected[name]
        active = len(counts.active) + len(expected)
        spec = job.spec
        status = msgspec.structs.replace(job.status, conditions=list(job.status.conditions))
        status.start_time = status.start_time or rfc3339(now)
        started = parse_time(status.start_time) or now
        waits: list[float] = []

        done = finished_condition(job)
        if done is None:
            if counts.failed > spec.backoff_limit:
                done = Condition(type=FAILED, status="True", reason=BACKOFF_LIMIT_EXCEEDED,
                                 message=f"{counts.failed} failures, more than backoffLimit {spec.backoff_limit}",
                                 last_transition_time=rfc3339(now))
            elif spec.active_deadline_seconds is not None and \
                    (now - started).total_seconds() >= spec.active_deadline_seconds:
                done = Condition(type=FAILED, status="True", reason=DEADLINE_EXCEEDED,
                                 message=f"ran longer than activeDeadlineSeconds ({spec.active_deadline_seconds})",
                                 last_transition_time=rfc3339(now))
            elif counts.succeeded >= spec.completions:
                done = Condition(type=COMPLETE, status="True", reason="Completed",
                                 message=f"{counts.succeeded} of {spec.completions} completions succeeded",
                                 last_transition_time=rfc3339(now))
                status.completion_time = rfc3339(now)
            if done is not None:
                status.conditions = [c for c in status.conditions if c.type != done.type] + [done]
                log.info("job %s: %s (%s)", key, done.type, done.reason)
                await self.record(job, done.reason, done.message, warning=done.type != COMPLETE, when=rfc3339(self.clock()))
        if done is not None:
            for c in counts.active:  # a finished Job runs nothing
                await self.objects.delete(Container, c.metadata.name, namespace=c.metadata.namespace)
            active = 0
        else:
            if spec.active_deadline_seconds is not None:
                waits.append(spec.active_deadline_seconds - (now - started).total_seconds())
            want = min(spec.parallelism, spec.completions - counts.succeeded)
            delay = backoff_delay(counts.failed, base=self.backoff_base, cap=self.backoff_cap)
            ready_at = counts.last_failure.timestamp() + delay if counts.last_failure is not None else 0.0
            if want > active and now.timestamp() < ready_at:
                waits.append(ready_at - now.timestamp())  # backing off after a failure
            elif want > active:
                for _ in range(want - active):
                    made = await self._create(job)
                    expected[made] = loop_now + EXPECT_FOR
                    active += 1
                    await self.record(job, "SuccessfulCreate", f"created container {made}", when=rfc3339(self.clock()))
            elif want < active:  # parallelism lowered: stop the newest extras
                extra = sorted(counts.active, key=lambda c: c.metadata.creation_timestamp)[want:]
                for c in extra:
                    await self.objects.delete(Container, c.metadata.name, namespace=c.metadata.namespace)
                    active -= 1
        status.active, status.succeeded, status.failed = active, counts.succeeded, counts.failed
        if status != job.status:
            job = msgspec.structs.replace(job, metadata=msgspec.structs.replace(job.metadata), status=status)
            job = await self.objects.update_status(job)

        if done is not None and spec.ttl_seconds_after_finished is not None:
            finished = parse_time(done.last_transition_time) or now
            left = spec.ttl_seconds_after_finished - (now - finished).total_seconds()
            if left <= 0:
                log.info("job %s: deleted %ss after it finished (ttlSecondsAfterFinished)", key,
                         spec.ttl_seconds_after_finished)
                await self.objects.delete(Job, job.metadata.name, namespace=job.metadata.namespace)
                return None
            waits.append(left)
        if expected:
            waits.append(UNCONFIRMED_RECHECK)
        return max(min(waits), 0.05) if waits else None

    async def _create(self, job: Job) -> str:
        for _ in range(3):
            try:
                made = await self.objects.create(build_container(job))
            except AlreadyExists:
                continue  # a name taken by chance: draw another
            return made.metadata.name
        raise AlreadyExists(f"job {job.metadata.name}: could not find a free container name")
