"""Deleting a CronJob takes its Jobs and their containers with it (garbage collector), on the
session's real control plane. The containers ask for a node label no node has: they stay unbound,
so deletes remove them at once."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest_asyncio

from corral.api.client import ApiClient
from corral.controllers.cronjobs import build_job
from corral.controllers.jobs import JOB_NAME_LABEL
from corral.model.errors import NotFound
from corral.model.resources import (
    Container,
    ContainerSpec,
    ContainerTemplate,
    CronJob,
    CronJobSpec,
    Job,
    JobSpec,
    JobTemplate,
    Namespace,
    ObjectMeta,
)
from tests.fixtures.cluster import eventually
from tests.fixtures.control import RunningControl


@pytest_asyncio.fixture
async def client(control_plane: RunningControl) -> AsyncIterator[ApiClient]:
    async with ApiClient(control_plane.url, control_plane.admin_token, ssl_context=control_plane.ssl) as c:
        yield c


async def test_deleting_a_cronjob_deletes_its_jobs_and_their_containers(client: ApiClient) -> None:
    ns = f"cjgc-{uuid.uuid4().hex[:8]}"
    await client.create(Namespace(metadata=ObjectMeta(name=ns)))
    try:
        cj = await client.create(CronJob(metadata=ObjectMeta(name="yearly", namespace=ns), spec=CronJobSpec(
            schedule="0 0 1 1 *", job_template=JobTemplate(spec=JobSpec(parallelism=2, completions=2, template=(
                ContainerTemplate(spec=ContainerSpec(image="127.0.0.1:5000/busybox:1", restart_policy="Never",
                                                     node_selector={"corral-test/no-such-node": "true"}))))))))
        await client.create(build_job(cj, name="now", scheduled=None, manual=True))

        async def two_containers() -> None:
            items, _ = await client.list(Container, namespace=ns, label_selector=f"{JOB_NAME_LABEL}=now")
            assert len(items) == 2

        await eventually(two_containers, timeout=20, what="the job's two containers")
        await client.delete(CronJob, "yearly", namespace=ns)

        async def all_gone() -> None:
            jobs, _ = await client.list(Job, namespace=ns)
            containers, _ = await client.list(Container, namespace=ns)
            assert not jobs and not containers, ([j.metadata.name for j in jobs],
                                                 [c.metadata.name for c in containers])

        await eventually(all_gone, timeout=30, what="the cronjob's job and containers collected")
    finally:
        with contextlib.suppress(NotFound):
            await client.delete(Namespace, ns)
