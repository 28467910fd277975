"""Containers and their tasks against the real containerd + runc: create, run, log, list, delete, undo."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from corral.model.errors import AlreadyExists, NotFound
from corral.runtime import logpipes
from corral.runtime.client import Client
from corral.runtime.containers import create_container, delete_container, get_container, list_containers
from corral.runtime.images import Image
from corral.runtime.logs import read_tail
from corral.runtime.spec import build_spec
from corral.runtime.tasks import Stdio, Task, create_task
from corral.runtime.unpack import snapshot_exists


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


async def test_echo_runs_and_its_output_lands_in_the_log_file(
    ctr_client: Client, busybox_image: Image, tmp_path: Path
) -> None:
    cid = new_id("echo")
    spec = build_spec(
        container_id=cid, image_config=busybox_image.config, command=["sh", "-c", "echo hello; echo oops >&2"]
    )
    log = tmp_path / "logs" / cid / "container.log"
    log.parent.mkdir(parents=True)
    fifos = logpipes.ensure(tmp_path, cid)
    reads = logpipes.ReadEnds()
    reads.hold(cid, fifos)
    collector = logpipes.LogCollector(tmp_path)
    await collector.start()
    try:
        await create_container(ctr_client, id=cid, image=busybox_image, spec=spec, labels={"corral/uid": cid})
        task = await create_task(ctr_client, cid, stdio=Stdio(str(fifos[0]), str(fifos[1])))
        status = await (await task.start()).wait(timeout=20)
        assert status.code == 0
        assert status.exited_at is not None
    finally:
        await delete_container(ctr_client, cid)  # closes the task's IO: the collector writes the rest
        reads.release_all()
        await asyncio.to_thread(logpipes.remove, tmp_path, cid)
        await asyncio.sleep(0.3)  # the collector's next look at the directory drains and closes them
        await collector.stop()
    lines = await asyncio.to_thread(read_tail, log, 10)
    assert {(line.stream, line.text) for line in lines} == {("stdout", "hello"), ("stderr", "oops")}


async def test_containers_are_listed_by_label_and_carry_their_spec(ctr_client: Client, busybox_image: Image) -> None:
    ids = [new_id("lst"), new_id("lst")]
    try:
        for i, cid in enumerate(ids):
            spec = build_spec(container_id=cid, image_config=busybox_image.config, hostname=f"h{i}")
            await create_container(
                ctr_client, id=cid, image=busybox_image, spec=spec, labels={"corral/uid": cid, "corral/app": "lst"}
            )
        assert {c.id for c in await list_containers(ctr_client, {"corral/app": "lst"})} == set(ids)
        (only,) = await list_containers(ctr_client, {"corral/uid": ids[1]})
        assert only.runtime == "io.containerd.runc.v2"
        assert only.snapshotter == "overlayfs"
        assert only.spec["hostname"] == "h1"
        assert only.image == busybox_image.name
    finally:
        for cid in ids:
            await delete_container(ctr_client, cid)
    assert await list_containers(ctr_client, {"corral/app": "lst"}) == []


async def test_a_failed_create_removes_the_snapshot_it_prepared(ctr_client: Client, busybox_image: Image) -> None:
    cid = new_id("dup")
    spec = build_spec(container_id=cid, image_config=busybox_image.config)
    try:
        await create_container(ctr_client, id=cid, image=busybox_image, spec=spec)
        with pytest.raises(AlreadyExists):
            await create_container(ctr_client, id=cid, image=busybox_image, spec=spec, snapshot_key=f"{cid}-second")
        assert not await snapshot_exists(ctr_client, f"{cid}-second")
        assert await snapshot_exists(ctr_client, cid)  # the first container's is untouched
    finally:
        await delete_container(ctr_client, cid)


async def test_delete_removes_a_running_task_the_record_and_the_snapshot_and_is_idempotent(
    ctr_client: Client, busybox_image: Image
) -> None:
    cid = new_id("del")
    spec = build_spec(container_id=cid, image_config=busybox_image.config, command=["sleep", "600"])
    try:
        await create_container(ctr_client, id=cid, image=busybox_image, spec=spec)
        task = await create_task(ctr_client, cid)
        exit_ = await task.start()
        assert (await task.status()).state == "running"
    finally:
        await delete_container(ctr_client, cid, kill_timeout=10)
    assert (await exit_.wait(timeout=5)).signal == 9
    with pytest.raises(NotFound):
        await get_container(ctr_client, cid)
    with pytest.raises(NotFound):
        await Task(ctr_client, cid).status()
    assert not await snapshot_exists(ctr_client, cid)
    await delete_container(ctr_client, cid)  # nothing left: still fine
