"""Tasks against the real containerd + runc: signals and exit codes, memory limits, inspection."""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from corral.runtime.client import Client
from corral.runtime.containers import create_container, delete_container
from corral.runtime.events import TaskExit, TaskOOM, subscribe
from corral.runtime.images import Image
from corral.runtime.spec import build_spec
from corral.runtime.tasks import Task, create_task, decode_cgroups_v1


@asynccontextmanager
async def container(
    client: Client, image: Image, command: list[str], *, memory: int | None = None
) -> AsyncIterator[Task]:
    """A created (not started) task; the container is deleted afterwards whatever happens."""
    cid = f"tsk-{secrets.token_hex(3)}"
    spec = build_spec(container_id=cid, image_config=image.config, command=command, memory_limit_bytes=memory)
    try:
        await create_container(client, id=cid, image=image, spec=spec)
        yield await create_task(client, cid)
    finally:
        await delete_container(client, cid)


async def test_a_process_that_handles_sigterm_exits_143_and_pid_1_ignoring_it_needs_sigkill(
    ctr_client: Client, busybox_image: Image
) -> None:
    script = 'trap "exit 143" TERM; sleep 600 & wait'
    async with container(ctr_client, busybox_image, ["sh", "-c", script]) as task:
        exit_ = await task.start()
        await asyncio.sleep(0.2)  # let the shell install its trap
        await task.kill(signal.SIGTERM)
        status = await exit_.wait(timeout=10)
        assert (status.code, status.signal) == (143, signal.SIGTERM)
    async with container(ctr_client, busybox_image, ["sleep", "600"]) as task:
        exit_ = await task.start()
        await task.kill(signal.SIGTERM)  # PID 1 without a handler: the kernel drops it
        await asyncio.sleep(0.3)
        assert not exit_.done()
        await task.kill(signal.SIGKILL)
        assert (await exit_.wait(timeout=10)).code == 137


async def test_a_process_past_its_memory_limit_is_oom_killed_and_reported(
    ctr_client: Client, busybox_image: Image
) -> None:
    seen: list[object] = []
    # tail keeps the whole newline-free input in memory: it grows past 16Mi
    hog = ["sh", "-c", "head -c 100000000 /dev/zero | tail"]
    async with subscribe(ctr_client) as events, container(ctr_client, busybox_image, hog, memory=16 << 20) as task:
        status = await (await task.start()).wait(timeout=30)
        async with asyncio.timeout(10):
            async for event in events:
                seen.append(event)
                if isinstance(event, TaskExit) and event.container_id == task.container_id:
                    break
    assert status.code == 137
    assert any(isinstance(e, TaskOOM) and e.container_id == task.container_id for e in seen)


async def test_a_running_task_reports_its_state_pids_and_cgroup_metrics(
    ctr_client: Client, busybox_image: Image
) -> None:
    async with container(ctr_client, busybox_image, ["sleep", "600"], memory=32 << 20) as task:
        assert (await task.status()).state == "created"
        exit_ = await task.start()
        status = await task.status()
        assert status.state == "running"
        assert status.pid in await task.pids()
        metrics = await task.metrics()
        assert metrics.memory_limit_bytes == 32 << 20
        assert 0 < metrics.memory_usage_bytes < 32 << 20
        assert metrics.pids == 1
        await task.kill(signal.SIGKILL)
        await exit_.wait(timeout=10)
        assert (await task.status()).state == "stopped"


def test_cgroup_v1_metrics_are_read_from_the_wire_bytes() -> None:
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            b, n = n & 0x7F, n >> 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)

    def field(number: int, value: int | bytes) -> bytes:
        if isinstance(value, int):
            return varint(number << 3) + varint(value)
        return varint(number << 3 | 2) + varint(len(value)) + value

    usage = field(1, 64 << 20) + field(2, 5_000_000)
    memory = field(2, 4_000_000) + field(33, usage)
    data = field(2, field(1, 3)) + field(3, field(1, field(1, 123_456_789))) + field(4, memory) + field(9, field(3, 2))
    m = decode_cgroups_v1(data)
    assert (m.memory_limit_bytes, m.memory_usage_bytes, m.memory_rss_bytes) == (64 << 20, 5_000_000, 4_000_000)
    assert (m.cpu_usage_ns, m.pids, m.oom_kills) == (123_456_789, 3, 2)
