"""A task half made when containerd died is removed and made again: one that "already exists" when the
agent starts one, and one found created but never started (a start of it may hang for good); a create
that meets containerd still cleaning up an earlier one is tried again shortly, and a bundle directory
its failed clean-up left behind is removed."""

from __future__ import annotations

import os
import secrets
import shutil
import time

import pytest

from corral.model.errors import TemporaryError
from corral.model.resources import Container, ContainerSpec, ObjectMeta
from corral.reconcile.state import ensure_state, start_task
from corral.runtime.bundles import MIN_AGE, RETRY_SECONDS, BundleHeld
from corral.runtime.client import Client
from corral.runtime.containers import create_container, delete_container
from corral.runtime.embedded import EmbeddedContainerd
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


async def test_a_task_found_created_but_never_started_is_made_again_and_runs(
    ctr_client: Client, busybox_image: Image
) -> None:
    cid = f"created-{secrets.token_hex(3)}"
    spec = build_spec(container_id=cid, image_config=busybox_image.config, command=["sleep", "600"])
    obj = Container(metadata=ObjectMeta(name=cid, uid=secrets.token_hex(8), generation=1),
                    spec=ContainerSpec(image="busybox", restart_policy="Always"))
    try:
        await create_container(ctr_client, id=cid, image=busybox_image, spec=spec)
        leftover = await create_task(ctr_client, cid)  # created, never started: a crash between create and start
        old_pid = (await leftover.status()).pid
        outcome = await ensure_state(ctr_client, obj, cid, stdio=Stdio(), oom_killed=False, ip="")
        assert outcome.started and outcome.status.phase == "Running"
        status = await Task(ctr_client, cid).status()
        assert status.state == "running"
        assert status.pid != old_pid
    finally:
        await delete_container(ctr_client, cid)


async def test_a_create_while_containerd_still_holds_the_tasks_directory_is_retried_a_second_later(
    containerd: EmbeddedContainerd, ctr_client: Client, busybox_image: Image
) -> None:
    """An agent killed mid-create leaves containerd cleaning up that create for a while: its directory
    for the task is still there and a new create fails "failed to start shim: mkdir …: file exists".
    That is weather, tried again every second (not after a growing backoff), and the task runs once
    containerd lets go."""
    cid = f"held-{secrets.token_hex(3)}"
    spec = build_spec(container_id=cid, image_config=busybox_image.config, command=["sleep", "600"])
    held = containerd.base_dir / "state" / "io.containerd.runtime.v2.task" / ctr_client.namespace / cid
    try:
        await create_container(ctr_client, id=cid, image=busybox_image, spec=spec)
        held.mkdir(parents=True)  # what the earlier, unfinished create holds
        try:
            with pytest.raises(BundleHeld) as caught:  # young: maybe a create under way, left alone
                await start_task(ctr_client, cid, stdio=Stdio())
        finally:
            held.rmdir()  # containerd let go
        assert isinstance(caught.value, TemporaryError) and caught.value.delay == RETRY_SECONDS
        assert caught.value.path == held and str(held) in caught.value.message
        await start_task(ctr_client, cid, stdio=Stdio())
        assert (await Task(ctr_client, cid).status()).state == "running"
    finally:
        await delete_container(ctr_client, cid)


async def test_a_bundle_directory_containerd_left_behind_for_good_is_removed_and_the_task_made(
    containerd: EmbeddedContainerd, ctr_client: Client, busybox_image: Image
) -> None:
    """containerd 1.6's clean-up of a create whose shim died early fails and leaves the task's bundle
    directory (no ``runtime`` file, an empty rootfs, a ``work`` link) — for good: every later create
    says "file exists". Once it is older than a create takes and nothing works in it, it is removed."""
    cid = f"left-{secrets.token_hex(3)}"
    spec = build_spec(container_id=cid, image_config=busybox_image.config, command=["sleep", "600"])
    state = containerd.base_dir / "state" / "io.containerd.runtime.v2.task" / ctr_client.namespace
    work = containerd.base_dir / "root" / "io.containerd.runtime.v2.task" / ctr_client.namespace / cid
    left = state / cid
    try:
        await create_container(ctr_client, id=cid, image=busybox_image, spec=spec)
        (left / "rootfs").mkdir(parents=True)  # what containerd 1.6 left in the failed runs
        (left / "address").write_text("unix:///run/containerd/s/gone\n")
        (left / "config.json").write_text("{}")
        work.mkdir(parents=True)
        (left / "work").symlink_to(work)
        old = time.time() - 2 * MIN_AGE
        os.utime(left, (old, old))
        await start_task(ctr_client, cid, stdio=Stdio())
        assert (await Task(ctr_client, cid).status()).state == "running"
    finally:
        await delete_container(ctr_client, cid)
        shutil.rmtree(left, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
