"""Exec in a running container against the real containerd + runc: exit codes, timeouts, cleanup."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from corral.model.errors import NotFound
from corral.runtime.client import Client
from corral.runtime.containers import create_container, delete_container
from corral.runtime.exec import ExecTimeout, exec_process
from corral.runtime.images import Image
from corral.runtime.spec import build_spec
from corral.runtime.tasks import Task, create_task


@asynccontextmanager
async def running(client: Client, image: Image) -> AsyncIterator[Task]:
    """A started ``sleep 600`` container; removed afterwards whatever happens."""
    cid = f"exe-{secrets.token_hex(3)}"
    spec = build_spec(container_id=cid, image_config=image.config, command=["sleep", "600"])
    try:
        await create_container(client, id=cid, image=image, spec=spec)
        task = await create_task(client, cid)
        exit_ = await task.start()
        await exit_.cancel()
        yield task
    finally:
        await delete_container(client, cid)


async def test_an_exec_reports_the_exit_code_of_its_command_and_sees_the_containers_filesystem(
    ctr_client: Client, busybox_image: Image
) -> None:
    async with running(ctr_client, busybox_image) as task:
        cid = task.container_id
        assert await exec_process(ctr_client, cid, ["true"], timeout=5) == 0
        assert await exec_process(ctr_client, cid, ["sh", "-c", "exit 1"], timeout=5) == 1
        assert await exec_process(ctr_client, cid, ["test", "-e", "/tmp/flag"], timeout=5) == 1
        assert await exec_process(ctr_client, cid, ["touch", "/tmp/flag"], timeout=5) == 0
        assert await exec_process(ctr_client, cid, ["test", "-e", "/tmp/flag"], timeout=5) == 0
        assert await task.pids() and len(await task.pids()) == 1  # every exec was deleted


async def test_an_exec_past_its_timeout_is_killed_and_leaves_no_process(ctr_client: Client, busybox_image: Image) -> None:
    async with running(ctr_client, busybox_image) as task:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ExecTimeout):
            await exec_process(ctr_client, task.container_id, ["sleep", "30"], timeout=0.5)
        assert loop.time() - started < 5
        assert len(await task.pids()) == 1  # only the container's own sleep
        assert (await task.status()).state == "running"


async def test_a_cancelled_exec_is_cleaned_up(ctr_client: Client, busybox_image: Image) -> None:
    async with running(ctr_client, busybox_image) as task:
        call = asyncio.create_task(exec_process(ctr_client, task.container_id, ["sleep", "30"], timeout=60))
        await asyncio.sleep(0.5)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert len(await task.pids()) == 1


async def test_an_exec_in_a_missing_container_is_not_found(ctr_client: Client) -> None:
    with pytest.raises(NotFound):
        await exec_process(ctr_client, "no-such-container", ["true"], timeout=1)
