"""CronJobs: the run decision as pure logic, then the controller on a real etcd with a clock the test moves."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from corral.controllers.base import Informers
from corral.controllers.cronjobs import SCHEDULED_AT, CronJobController, job_name, plan
from corral.controllers.jobs import rfc3339
from corral.model.errors import Invalid
from corral.model.kinds import BY_KIND
from corral.model.resources import (
    Condition,
    ContainerSpec,
    ContainerTemplate,
    CronJob,
    CronJobSpec,
    CronJobStatus,
    Event,
    Job,
    JobSpec,
    JobTemplate,
    ObjectMeta,
)
from corral.model.validation import decode
from corral.store.embedded import EmbeddedEtcd
from corral.store.etcd import EtcdStore
from corral.store.objects import Objects
from corral.store.typed import decode as decode_kv
from tests.fixtures.cluster import eventually

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def cronjob(schedule: str = "*/5 * * * *", *, policy: str = "Allow", last: datetime | None = None,
            deadline: int | None = None, suspend: bool = False, tz: str = "", history: int = 3) -> CronJob:
    return CronJob(
        metadata=ObjectMeta(name="tick", namespace="default", uid="u1", creation_timestamp=rfc3339(T0)),
        spec=CronJobSpec(schedule=schedule, time_zone=tz, concurrency_policy=policy,  # type: ignore[arg-type]
                         starting_deadline_seconds=deadline, suspend=suspend, successful_jobs_history_limit=history,
                         job_template=JobTemplate(spec=JobSpec(template=ContainerTemplate(spec=ContainerSpec(
                             image="127.0.0.1:5000/busybox:1", command=["true"], restart_policy="Never"))))),
        status=CronJobStatus(last_schedule_time=rfc3339(last) if last else ""),
    )


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_nothing_runs_before_the_first_time_and_the_next_time_is_known() -> None:
    p = plan(cronjob(), [], at(4))
    assert p.run is None and p.next_run == at(5)


def test_the_scheduled_time_runs_once_it_has_come() -> None:
    p = plan(cronjob(), [], at(5.5))
    assert p.run == at(5) and p.next_run == at(10)
    assert job_name("tick", at(5)) == f"tick-{int(at(5).timestamp() // 60)}"


def test_after_an_outage_only_the_most_recent_missed_time_runs() -> None:
    p = plan(cronjob(last=at(5)), [], at(31))
    assert p.run == at(30) and not p.events


def test_too_many_missed_times_still_run_the_latest_and_say_so() -> None:
    p = plan(cronjob(last=at(5)), [], at(5 + 5 * 300))
    assert p.run == at(5 + 5 * 300)
    assert [e[1] for e in p.events] == ["TooManyMissedTimes"]


def test_a_starting_deadline_drops_runs_older_than_it() -> None:
    p = plan(cronjob(last=at(5), deadline=60), [], at(33))
    assert p.run is None and p.next_run == at(35)
    p = plan(cronjob(last=at(5), deadline=240), [], at(33))
    assert p.run == at(30)


def test_forbid_skips_a_run_while_a_job_is_active_and_replace_deletes_it() -> None:
    active = [Job(metadata=ObjectMeta(name="tick-old"))]
    p = plan(cronjob(policy="Forbid", last=at(5)), active, at(10.5))
    assert p.run is None and p.events[0][1] == "JobAlreadyActive"
    p = plan(cronjob(policy="Replace", last=at(5)), active, at(10.5))
    assert p.run == at(10) and p.replace == active
    p = plan(cronjob(policy="Allow", last=at(5)), active, at(10.5))
    assert p.run == at(10) and not p.replace


def test_a_suspended_cronjob_runs_nothing() -> None:
    assert plan(cronjob(suspend=True), [], at(6)).run is None


def test_the_schedule_is_read_in_its_time_zone() -> None:
    p = plan(cronjob("0 9 * * *", tz="Europe/Paris"), [], datetime(2026, 3, 3, 8, 30, tzinfo=UTC))
    assert p.run == datetime(2026, 3, 3, 8, 0, tzinfo=UTC)  # 09:00 in Paris (UTC+1 in March)
    p = plan(cronjob("0 9 * * *"), [], datetime(2026, 3, 3, 8, 30, tzinfo=UTC))
    assert p.run is None and p.next_run == datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


def test_bad_schedules_and_zones_are_refused_naming_the_field() -> None:
    info = BY_KIND["CronJob"]
    with pytest.raises(Invalid) as e:
        decode({"metadata": {"name": "x"}, "spec": {"schedule": "61 * * *", "timeZone": "Nowhere/Land",
                "jobTemplate": {"spec": {"template": {"spec": {"image": "i", "restartPolicy": "Never"}}}}}}, info)
    fields = {d.field for d in e.value.details}
    assert fields == {"spec.timeZone"}
    with pytest.raises(Invalid) as e:
        decode({"metadata": {"name": "x"}, "spec": {"schedule": "61 * * * *",
                "jobTemplate": {"spec": {"template": {"spec": {"image": "i"}}}}}}, info)
    assert {d.field for d in e.value.details} == {"spec.schedule", "spec.jobTemplate.spec.template.spec.restartPolicy"}


# --- the controller on a real etcd ---------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest_asyncio.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[CronJobController, Objects, Clock, EtcdStore]]:
    etcd = EmbeddedEtcd(data_dir=tmp_path / "etcd")  # its own: no other controller acts on these CronJobs
    await etcd.start()
    store = EtcdStore([etcd.endpoint])
    clock = Clock(T0)
    informers = Informers(store)
    objects = Objects(store)
    controller = CronJobController(informers, objects, clock=clock)
    synced = asyncio.Event()
    tasks = [asyncio.create_task(informers.run(synced)), asyncio.create_task(controller.run(synced))]
    try:
        await asyncio.wait_for(synced.wait(), 10)
        yield controller, objects, clock, store
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await store.close()
        await etcd.stop()


async def jobs(objects: Objects, store: EtcdStore) -> list[Job]:
    page = await store.list(BY_KIND["Job"].prefix("default"))
    return sorted((decode_kv(kv, Job) for kv in page.items), key=lambda j: j.metadata.name)


async def test_the_controller_creates_a_job_at_each_time_and_forbid_waits_for_the_active_one(
        running: tuple[CronJobController, Objects, Clock, EtcdStore]) -> None:
    controller, objects, clock, store = running
    cj = cronjob(policy="Forbid")
    cj.metadata = ObjectMeta(name="tick", namespace="default")
    clock.now = T0
    made = await objects.create(cj)
    made.status.last_schedule_time = rfc3339(T0)  # the schedule counts from the test clock's start
    await objects.update_status(made)
    key = BY_KIND["CronJob"].key("default", "tick")

    clock.now = at(5.2)
    controller.enqueue(key)

    async def one_job() -> list[Job]:
        found = await jobs(objects, store)
        assert [j.metadata.name for j in found] == [job_name("tick", at(5))]
        return found

    first = (await eventually(one_job, timeout=10, what="the 10:05 job"))[0]
    assert first.metadata.annotations[SCHEDULED_AT] == rfc3339(at(5))
    assert first.metadata.owner_references[0].kind == "CronJob"
    assert first.spec.template.spec.command == ["true"]

    async def status_says(active: int, last: datetime) -> None:
        got = await objects.get(CronJob, "tick", namespace="default")
        assert len(got.status.active) == active and got.status.last_schedule_time == rfc3339(last), got.status

    await eventually(lambda: status_says(1, at(5)), timeout=10, what="status: one active, last 10:05")

    clock.now = at(10.2)  # the 10:10 run comes while 10:05 still runs: Forbid skips it
    controller.enqueue(key)
    await asyncio.sleep(0.5)
    assert len(await jobs(objects, store)) == 1

    async def warned() -> None:
        page = await store.list(BY_KIND["Event"].prefix("default"))
        assert "JobAlreadyActive" in {decode_kv(kv, Event).spec.reason for kv in page.items}

    await eventually(warned, timeout=10, what="a JobAlreadyActive event")

    first.status.conditions = [Condition(type="Complete", status="True", last_transition_time=rfc3339(at(10.3)))]
    first.status.completion_time = rfc3339(at(10.3))
    clock.now = at(10.4)
    await objects.update_status(first)  # it finishes: the skipped 10:10 run may start now

    async def two_jobs() -> None:
        found = await jobs(objects, store)
        assert [j.metadata.name for j in found] == [job_name("tick", at(5)), job_name("tick", at(10))]

    await eventually(two_jobs, timeout=10, what="the 10:10 run once the 10:05 job finished")
    await eventually(lambda: status_says(1, at(10)), timeout=10, what="status: one active, last 10:10")
    got = await objects.get(CronJob, "tick", namespace="default")
    assert got.status.last_successful_time == rfc3339(at(10.3))

    clock.now = at(60.5)  # a long outage: one catch-up run (11:00), not ten
    for j in await jobs(objects, store):
        j.status.conditions = [Condition(type="Complete", status="True")]
        j.status.completion_time = rfc3339(at(60))
        await objects.update_status(j)
    controller.enqueue(key)

    async def caught_up() -> None:
        names = [j.metadata.name for j in await jobs(objects, store)]
        assert names == [job_name("tick", at(5)), job_name("tick", at(10)), job_name("tick", at(60))], names

    await eventually(caught_up, timeout=10, what="one catch-up run after the outage")
