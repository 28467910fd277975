"""Jobs end to end on a real worker: completions within parallelism, back-off to Failed, logs, refusals.

The module runs its own cluster with ``job_backoff`` 0.5 s (``serve --job-backoff``), so a failing
Job's doubling back-off (0.5, 1, 2 s) fits in a test. A watch (an informer) of the Job's
containers checks after every event that no more than ``parallelism`` ran at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sys
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from corral.api.client import ApiClient
from corral.api.listwatch import api_informer
from corral.controllers.jobs import JOB_NAME_LABEL
from corral.model.errors import Invalid
from corral.model.lifecycle import parse_time
from corral.model.resources import (
    Container,
    ContainerSpec,
    ContainerTemplate,
    CronJob,
    CronJobSpec,
    Job,
    JobSpec,
    JobTemplate,
    ObjectMeta,
)
from tests.fixtures.cluster import Cluster, eventually, start_cluster
from tests.fixtures.registry import Registry


@pytest_asyncio.fixture(scope="module")
async def jobs_cluster(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> AsyncIterator[Cluster]:
    async with start_cluster(tmp_path_factory.mktemp("jobs"), registry, workers=1,
                             control={"job_backoff": 0.5}) as c:
        yield c


def job(cluster: Cluster, name: str, script: str, *, completions: int = 1, parallelism: int = 1,
        backoff_limit: int = 6, restart: str = "Never") -> Job:
    return Job(
        metadata=ObjectMeta(name=name),
        spec=JobSpec(
            completions=completions, parallelism=parallelism, backoff_limit=backoff_limit,
            template=ContainerTemplate(spec=ContainerSpec(
                image=cluster.image, command=["sh", "-c", script], restart_policy=restart,  # type: ignore[arg-type]
                termination_grace_period_seconds=1)),
        ),
    )


async def finished(api: ApiClient, name: str, *, timeout: float = 120) -> Job:
    async def check() -> Job:
        j = await api.get(Job, name)
        assert any(c.type in ("Complete", "Failed") and c.status == "True" for c in j.status.conditions), j.status
        return j

    return await eventually(check, timeout=timeout, what=f"job {name} finishes")


async def corral_cli(cluster: Cluster, *args: str, timeout: float = 60) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "corral.cli.main", *args, "--server", cluster.plane.url,
        "--token", cluster.plane.admin_token, env={**os.environ, "CORRAL_CA": str(cluster.plane.ca_file)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_a_job_of_five_completions_runs_at_most_two_at_once_and_completes(jobs_cluster: Cluster) -> None:
    api = jobs_cluster.api
    most = 0
    reflector = api_informer(api, Container, namespace="default", label_selector=f"{JOB_NAME_LABEL}=five")

    def look(*_event: object) -> None:
        nonlocal most
        running = [c for c in reflector.objects.values()
                   if c.status.phase not in ("Succeeded", "Failed") and not c.metadata.deletion_timestamp]
        most = max(most, len(running))

    reflector.add_handler(look)
    task = asyncio.create_task(reflector.run())
    try:
        await asyncio.wait_for(reflector.synced.wait(), 10)
        await api.create(job(jobs_cluster, "five", "echo done-$HOSTNAME; sleep 1", completions=5, parallelism=2))
        j = await finished(api, "five")
        await asyncio.sleep(0.5)  # the last events reach the watch
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert [(c.type, c.status) for c in j.status.conditions] == [("Complete", "True")]
    assert (j.status.succeeded, j.status.failed, j.status.active) == (5, 0, 0)
    assert j.status.start_time and j.status.completion_time
    assert parse_time(j.status.completion_time) >= parse_time(j.status.start_time)  # type: ignore[operator]
    items, _ = await api.list(Container, label_selector=f"{JOB_NAME_LABEL}=five")
    assert sorted(c.status.phase for c in items) == ["Succeeded"] * 5
    assert all(c.metadata.owner_references[0].kind == "Job" and c.spec.restart_policy == "Never" for c in items)
    assert 1 <= most <= 2, f"{most} containers of the job ran at once"

    code, out = await corral_cli(jobs_cluster, "get", "jobs")
    assert code == 0 and "five" in out and "5/5" in out and "Complete" in out, out
    newest = max(items, key=lambda c: (c.metadata.creation_timestamp, c.metadata.name))
    code, out = await corral_cli(jobs_cluster, "logs", "job/five")
    assert code == 0 and "done-" in out, out
    code, own = await corral_cli(jobs_cluster, "logs", newest.metadata.name)
    assert own == out


async def test_a_failing_job_backs_off_and_stops_at_its_backoff_limit(jobs_cluster: Cluster) -> None:
    api = jobs_cluster.api
    await api.create(job(jobs_cluster, "fails", "exit 3", backoff_limit=2))
    j = await finished(api, "fails")
    failed = next(c for c in j.status.conditions if c.type == "Failed")
    assert (failed.status, failed.reason) == ("True", "BackoffLimitExceeded")
    assert (j.status.failed, j.status.succeeded, j.status.active) == (3, 0, 0)
    items, _ = await api.list(Container, label_selector=f"{JOB_NAME_LABEL}=fails")
    assert len(items) == 3 and all(c.status.exit_code == 3 for c in items)
    starts = sorted(t for c in items if (t := parse_time(c.metadata.creation_timestamp)) is not None)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert gaps[0] >= 0.5 and gaps[1] >= 1.0, f"no doubling back-off between retries: {gaps}"
    await asyncio.sleep(1.0)
    again, _ = await api.list(Container, label_selector=f"{JOB_NAME_LABEL}=fails")
    assert len(again) == 3, "a failed job made more containers"


async def test_a_job_past_its_deadline_fails_and_its_container_is_stopped(jobs_cluster: Cluster) -> None:
    api = jobs_cluster.api
    j = job(jobs_cluster, "slow", "sleep 300")
    j.spec.active_deadline_seconds = 2
    await api.create(j)
    done = await finished(api, "slow")
    assert [(c.type, c.reason) for c in done.status.conditions] == [("Failed", "DeadlineExceeded")]

    async def stopped() -> None:
        items, _ = await api.list(Container, label_selector=f"{JOB_NAME_LABEL}=slow")
        assert all(c.metadata.deletion_timestamp for c in items), [c.status.phase for c in items]

    await eventually(stopped, timeout=30, what="the deadline-exceeded job's container is being deleted")


async def test_a_finished_job_is_deleted_after_its_ttl_with_its_containers(jobs_cluster: Cluster) -> None:
    api = jobs_cluster.api
    j = job(jobs_cluster, "brief", "true")
    j.spec.ttl_seconds_after_finished = 1
    await api.create(j)

    async def gone() -> None:
        jobs, _ = await api.list(Job)
        assert "brief" not in [x.metadata.name for x in jobs]
        items, _ = await api.list(Container, label_selector=f"{JOB_NAME_LABEL}=brief")
        assert not items

    await eventually(gone, timeout=60, what="the job and its container are gone after the TTL")


async def test_create_job_from_a_cronjob_runs_its_template_now(jobs_cluster: Cluster) -> None:
    api = jobs_cluster.api
    template = job(jobs_cluster, "unused", "echo from-cron")
    await api.create(CronJob(metadata=ObjectMeta(name="yearly"), spec=CronJobSpec(
        schedule="0 0 1 1 *", job_template=JobTemplate(spec=template.spec))))
    code, out = await corral_cli(jobs_cluster, "create", "job", "now", "--from=cronjob/yearly")
    assert code == 0 and "job/now created" in out, out
    j = await finished(api, "now")
    assert [c.type for c in j.status.conditions] == ["Complete"]
    assert j.metadata.owner_references[0].kind == "CronJob"
    code, out = await corral_cli(jobs_cluster, "logs", "job/now")
    assert code == 0 and "from-cron" in out, out
    code, out = await corral_cli(jobs_cluster, "create", "job", "again", "--from=deployment/yearly")
    assert code != 0 and "cronjob/NAME" in out, out


async def test_a_job_whose_containers_would_restart_always_is_refused(jobs_cluster: Cluster) -> None:
    with pytest.raises(Invalid) as e:
        await jobs_cluster.api.create(job(jobs_cluster, "forever", "true", restart="Always"))
    assert "spec.template.spec.restartPolicy" in str(e.value.details)
