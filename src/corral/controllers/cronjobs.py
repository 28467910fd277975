"""The CronJob controller: creates a Job from ``jobTemplate`` at each time of a cron schedule.

Keys are CronJobs' etcd keys; a CronJob's events enqueue it, and a Job's events enqueue the
CronJob named by its controlling ownerReference. Times come from ``clock`` (injected: tests move
it by hand) and the schedule is read in ``spec.timeZone`` (``model.cron``, croniter).

``plan`` is the decision, pure (Kubernetes' cronjob controller v2 rules):

- the candidate times are the schedule's times after ``status.lastScheduleTime`` (or the
  CronJob's creation) up to now; with ``startingDeadlineSeconds``, none older than that. Only the
  **most recent** candidate may run: after a control-plane outage at most one catch-up run
  happens, however many were missed; more than ``TOO_MANY_MISSED`` (100) missed gives a Warning
  Event ``TooManyMissedTimes``;
- a candidate later than its ``startingDeadlineSeconds`` is skipped (Event ``MissedSchedule``);
- ``suspend`` runs nothing; ``concurrencyPolicy`` Forbid skips a run while a Job of this CronJob
  is active (the same time is tried again until a newer one supersedes it), Replace deletes the
  active Jobs first, Allow runs alongside.

The Job is named ``<cronjob>-<minutes since the epoch of the scheduled time>`` (Kubernetes'
naming), so creating it twice is impossible: AlreadyExists means it was made. It carries the
template's labels, a controller ownerReference to the CronJob and the annotation
``corral.io/scheduled-at``. Finished Jobs beyond ``successfulJobsHistoryLimit`` /
``failedJobsHistoryLimit`` are deleted, oldest first (the garbage collector removes their
containers). Status: ``active`` (references to unfinished Jobs), ``lastScheduleTime``,
``lastSuccessfulTime``. The sync returns the seconds until the next scheduled time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec

from corral.controllers.base import Controller, Informers, follow_owned
from corral.controllers.jobs import COMPLETE, FAILED, finished_condition, rfc3339
from corral.model import cron
from corral.model.errors import AlreadyExists
from corral.model.kinds import BY_KIND
from corral.model.lifecycle import parse_time
from corral.model.resources import (
    CronJob,
    Job,
    JobSpec,
    ObjectMeta,
    ObjectReference,
    OwnerReference,
)
from corral.store.indexers import BY_CONTROLLER
from corral.store.informer import Change
from corral.store.objects import Objects

log = logging.getLogger(__name__)

CRONJOBS = BY_KIND["CronJob"]
JOBS = BY_KIND["Job"]
SCHEDULED_AT = "corral.io/scheduled-at"
CRONJOB_NAME_LABEL = "corral.io/cronjob-name"
TOO_MANY_MISSED = 100


def job_name(cronjob: str, scheduled: datetime) -> str:
    return f"{cronjob}-{int(scheduled.timestamp() // 60)}"


def build_job(cj: CronJob, *, name: str, scheduled: datetime | None, manual: bool = False) -> Job:
    """A Job from ``cj``'s template (``manual``: made by ``corral create job --from``)."""
    tpl = cj.spec.job_template
    annotations = dict(tpl.metadata.annotations)
    if scheduled is not None:
        annotations[SCHEDULED_AT] = rfc3339(scheduled)
    if manual:
        annotations["corral.io/instantiate"] = "manual"
    return Job(
        metadata=ObjectMeta(
            name=name, namespace=cj.metadata.namespace,
            labels={**tpl.metadata.labels, CRONJOB_NAME_LABEL: cj.metadata.name},
            annotations=annotations,
            owner_references=[OwnerReference(kind="CronJob", name=cj.metadata.name, uid=cj.metadata.uid,
                                             controller=True)],
        ),
        spec=msgspec.json.decode(msgspec.json.encode(tpl.spec), type=JobSpec),
    )


@dataclass
class Plan:
    run: datetime | None = None  # the scheduled time to create a Job for now
    replace: list[Job] = field(default_factory=list)  # active Jobs to delete first (Replace)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    next_run: datetime | None = None  # when to look again


def plan(cj: CronJob, active: list[Job], now: datetime) -> Plan:
    """What to do at ``now`` (see the module docstring); pure."""
    spec = cj.spec
    out = Plan()
    earliest = parse_time(cj.status.last_schedule_time) or parse_time(cj.metadata.creation_timestamp) or now
    if spec.starting_deadline_seconds is not None:
        earliest = max(earliest, now - timedelta(seconds=spec.starting_deadline_seconds))
    times = cron.times_after(spec.schedule, spec.time_zone, earliest)
    latest: datetime | None = None
    missed = 0
    for t in times:
        if t > now:
            out.next_run = t
            break
        latest = t
        missed += 1
    if missed > TOO_MANY_MISSED:
        out.events.append(("Warning", "TooManyMissedTimes",
                           f"missed {missed} start times (more than {TOO_MANY_MISSED}); only the latest runs. "
                           "Set or lower spec.startingDeadlineSeconds, or check the clock"))
    if latest is None or spec.suspend:
        return out
    if spec.starting_deadline_seconds is not None and now - latest > timedelta(seconds=spec.starting_deadline_seconds):
        out.events.append(("Warning", "MissedSchedule",
                           f"missed the run of {rfc3339(latest)}: later than startingDeadlineSeconds"))
        return out
    if active and spec.concurrency_policy == "Forbid":
        out.events.append(("Normal", "JobAlreadyActive",
                           f"not starting the run of {rfc3339(latest)}: a job is still active (Forbid)"))
        return out  # tried again when the active job finishes (its event) or at the next time
    if active and spec.concurrency_policy == "Replace":
        out.replace = list(active)
    out.run = latest
    return out


class CronJobController(Controller):
    name = "cronjobs"
    workers = 2

    def __init__(self, informers: Informers, objects: Objects, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__(informers, objects)
        self.clock = clock
        self.cronjobs = informers.of(CronJob)
        self.jobs = informers.of(Job)
        follow_owned(self.jobs, "CronJob", lambda ns, name: self.enqueue(CRONJOBS.key(ns, name)))
        self._said: dict[str, tuple[str, str]] = {}  # cronjob key -> the last Event (reason, message)
        self.cronjobs.add_handler(self._on_cronjob)

    def _on_cronjob(self, _change: Change, key: str, _obj: CronJob, _old: CronJob | None) -> None:
        self.enqueue(key)

    def jobs_of(self, cj: CronJob) -> list[Job]:
        return self.jobs.by_index(BY_CONTROLLER, cj.metadata.uid)

    async def reconcile(self, key: str) -> float | None:
        cj = self.cronjobs.get(key)
        if cj is None or cj.metadata.deletion_timestamp:
            self._said.pop(key, None)
            return None
        now = self.clock()
        ns = cj.metadata.namespace
        jobs = self.jobs_of(cj)
        active = [j for j in jobs if finished_condition(j) is None and not j.metadata.deletion_timestamp]
        step = plan(cj, active, now)
        for type_, reason, message in step.events:
            if self._said.get(key) != (reason, message):  # once, not at every sync
                self._said[key] = (reason, message)
                await self.record(cj, reason, message, warning=type_ == "Warning", when=rfc3339(now))
        status = msgspec.structs.replace(cj.status, active=list(cj.status.active))
        if step.run is not None:
            for j in step.replace:
                await self.objects.delete(Job, j.metadata.name, namespace=ns)
                active.remove(j)
            name = job_name(cj.metadata.name, step.run)
            try:
                made = await self.objects.create(build_job(cj, name=name, scheduled=step.run))
                active.append(made)
                log.info("cronjob %s: created job %s for %s", key, name, rfc3339(step.run))
                await self.record(cj, "SuccessfulCreate", f"created job {name}", when=rfc3339(now))
            except AlreadyExists:
                pass  # made by an earlier sync
            status.last_schedule_time = rfc3339(step.run)
        status.active = sorted((ObjectReference(kind="Job", namespace=ns, name=j.metadata.name, uid=j.metadata.uid)
                                for j in active), key=lambda r: r.name)
        succeeded = [j for j in jobs if (c := finished_condition(j)) is not None and c.type == COMPLETE]
        if succeeded:
            last = max(j.status.completion_time for j in succeeded)
            status.last_successful_time = max(status.last_successful_time, last)
        if status != cj.status:
            cj = msgspec.structs.replace(cj, metadata=msgspec.structs.replace(cj.metadata), status=status)
            await self.objects.update_status(cj)
        await self._prune(cj, jobs)
        if step.next_run is None:
            return None
        return max((step.next_run - now).total_seconds(), 0.05)

    async def _prune(self, cj: CronJob, jobs: list[Job]) -> None:
        """Delete finished Jobs beyond the history limits, oldest first."""
        for kind, limit in ((COMPLETE, cj.spec.successful_jobs_history_limit),
                            (FAILED, cj.spec.failed_jobs_history_limit)):
            done = sorted((j for j in jobs if (c := finished_condition(j)) is not None and c.type == kind
                           and not j.metadata.deletion_timestamp),
                          key=lambda j: (j.metadata.creation_timestamp, j.metadata.name))
            for j in done[: max(len(done) - limit, 0)]:
                await self.objects.delete(Job, j.metadata.name, namespace=j.metadata.namespace)

