"""A task that "already exists" when the agent starts one (half made when containerd died) is removed and made again."""

from __future__ import annotations

import secrets

import pytest

from corral.reconcile.state import start_task
from corral.runtime.client import Client
from corral.runtime.containers import create_container, delete_container
from corral.runtime.images import Image
from corral.runtime.spec import build_spec
from corral.runtime.tasks import Stdio, Task, create_task

pytestmark = pytest.mark.containerd


async def test_starting_a_task_over_a_leftover_one_removes_the_leftover_and_runs(
    ctr_client: Client, busybox_image: Image
) -> None:
    cid = f"half-{secrets.token_hex(3)}"
    spec = build_spec(container_id=cid, image_config=busybox_image.config, command=["sleep", "600"])
    try:
        await create_container(ctr_client, id=cid, image=busybox_image, spec=spec)
        leftover = await create_task(ctr_client, cid)  # made, never started: what a crash mid-create leaves
        old_pid = (await leftover.status()).pid
        await start_task(ctr_client, cid, stdio=Stdio())  # creating it again meets "already exists"
        status = await Task(ctr_client, cid).status()
        assert status.state == "running"
        assert status.pid != old_pid
    finally:
        await delete_container(ctr_client, cid)
