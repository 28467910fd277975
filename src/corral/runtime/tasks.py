"""containerd tasks: the running process of a container — create, start, signal, wait, delete, inspect.

``Task`` is a thin handle (client + container id) in the style of containerd's Go client; all state
lives in containerd, so a handle made after a restart of corral (or of containerd — the runc shim
keeps the container running and containerd reconnects to it) works the same as the first one.

- ``create_task`` mounts the container's rootfs from its snapshot (``Snapshots.Mounts``) and routes
  stdout/stderr to the given ``Stdio`` paths (the container's FIFOs, ``runtime/logpipes.py``).
- ``Task.start`` issues ``Tasks.Wait`` *before* ``Tasks.Start`` and returns an ``Exit`` handle that
  resolves to the ``ExitStatus``. containerd keeps a task's exit status until the task is deleted,
  so an exit is never lost as long as ``delete`` comes after the wait — which is the order here.
- ``Task.wait`` survives a containerd restart: a dropped connection is retried with backoff until
  containerd answers again (bounded by ``reconnect_timeout``), then the wait is re-issued.
- ``Task.metrics`` decodes the few cgroup v1 figures corral reports (memory usage/limit, RSS, CPU
  time, pids, OOM kills) straight from the protobuf wire bytes of
  ``io.containerd.cgroups.v1.Metrics``, so the whole cgroups schema need not be compiled.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal as signals
from collections.abc import Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2

from corral.aiokit.backoff import Backoff
from corral.model.errors import Conflict, CorralError, NotFound, Timeout, Unavailable
from corral.runtime import bundles
from corral.runtime._pb.containerd.services.containers.v1 import containers_pb2
from corral.runtime._pb.containerd.services.snapshots.v1 import snapshots_pb2
from corral.runtime._pb.containerd.services.tasks.v1 import tasks_pb2
from corral.runtime._pb.containerd.types.task import task_pb2
from corral.runtime.client import Client

WAIT_TIMEOUT_S = 99_999_999.0  # the largest gRPC timeout (8 digits of seconds): "no deadline"
CGROUPS_V1_METRICS = "io.containerd.cgroups.v1.Metrics"
_STATES = {
    task_pb2.UNKNOWN: "unknown",
    task_pb2.CREATED: "created",
    task_pb2.RUNNING: "running",
    task_pb2.STOPPED: "stopped",
    task_pb2.PAUSED: "paused",
    task_pb2.PAUSING: "pausing",
}


def _time(ts: timestamp_pb2.Timestamp) -> datetime | None:
    if not ts.seconds and not ts.nanos:
        return None
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, UTC)


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How a task ended: its exit code (128+N when killed by signal N) and when."""

    code: int
    exited_at: datetime | None

    @property
    def signal(self) -> int | None:
        """The signal that ended the process, if its code says it was one (e.g. 143 → SIGTERM)."""
        return self.code - 128 if 128 < self.code <= 128 + 64 else None


@dataclass(frozen=True, slots=True)
class TaskStatus:
    container_id: str
    pid: int
    state: str  # created | running | stopped | paused | pausing | unknown
    exit_status: int
    exited_at: datetime | None


@dataclass(frozen=True, slots=True)
class TaskMetrics:
    """cgroup v1 figures of one task; 0 where containerd reported nothing."""

    memory_usage_bytes: int
    memory_limit_bytes: int
    memory_rss_bytes: int
    cpu_usage_ns: int
    pids: int
    oom_kills: int


class Exit:
    """The pending exit of a started task. ``await exit`` (or ``await exit.wait()``) gives the
    ``ExitStatus``; ``cancel()`` stops waiting (the task keeps running)."""

    def __init__(self, waiter: asyncio.Task[ExitStatus]) -> None:
        self._waiter = waiter

    def done(self) -> bool:
        return self._waiter.done()

    async def wait(self, timeout: float | None = None) -> ExitStatus:
        try:
            return await asyncio.wait_for(asyncio.shield(self._waiter), timeout)
        except TimeoutError:
            raise Timeout(f"task {self._waiter.get_name()} did not exit within {timeout}s") from None

    def __await__(self) -> Generator[Any, None, ExitStatus]:
        return self.wait().__await__()

    async def cancel(self) -> None:
        self._waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._waiter


@dataclass(frozen=True, slots=True)
class Task:
    """A handle on the task of container ``container_id``."""

    client: Client
    container_id: str

    async def start(self) -> Exit:
        """Start the process; the returned ``Exit`` was already waiting before the start."""
        waiter = asyncio.create_task(self.wait(), name=f"wait {self.container_id}")
        await asyncio.sleep(0)  # let the Wait request go out first
        try:
            await self.client.call(self.client.tasks.Start, tasks_pb2.StartRequest(container_id=self.container_id))
        except BaseException:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await waiter
            raise
        return Exit(waiter)

    async def wait(self, *, reconnect_timeout: float | None = 120.0) -> ExitStatus:
        """Block until the process exits. A containerd restart meanwhile is ridden out (retried with
        backoff up to ``reconnect_timeout`` seconds of unreachability; ``None`` = forever)."""
        loop = asyncio.get_running_loop()
        backoff, down_since = Backoff(initial=0.05, maximum=2.0), None
        while True:
            try:
                reply = await self.client.call(
                    self.client.tasks.Wait,
                    tasks_pb2.WaitRequest(container_id=self.container_id),
                    timeout=WAIT_TIMEOUT_S,
                    retry=False,
                )
                return ExitStatus(code=int(reply.exit_status), exited_at=_time(reply.exited_at))
            except Unavailable:
                now = loop.time()
                down_since = down_since if down_since is not None else now
                if reconnect_timeout is not None and now - down_since > reconnect_timeout:
                    raise
                await asyncio.sleep(backoff.next())

    async def kill(self, signal: int = signals.SIGTERM, *, all: bool = False) -> None:
        """Send ``signal`` to the process (``all``: to every process in the container)."""
        await self.client.call(
            self.client.tasks.Kill,
            tasks_pb2.KillRequest(container_id=self.container_id, signal=int(signal), all=all),
        )

    async def delete(self) -> ExitStatus:
        """Delete a stopped (or never started) task; ``Conflict`` while it runs."""
        reply = await self.client.call(
            self.client.tasks.Delete, tasks_pb2.DeleteTaskRequest(container_id=self.container_id)
        )
        return ExitStatus(code=int(reply.exit_status), exited_at=_time(reply.exited_at))

    async def status(self) -> TaskStatus:
        reply = await self.client.call(self.client.tasks.Get, tasks_pb2.GetRequest(container_id=self.container_id))
        p = reply.process
        return TaskStatus(
            container_id=p.container_id or self.container_id,
            pid=int(p.pid),
            state=_STATES.get(p.status, "unknown"),
            exit_status=int(p.exit_status),
            exited_at=_time(p.exited_at),
        )

    async def pids(self) -> list[int]:
        reply = await self.client.call(
            self.client.tasks.ListPids, tasks_pb2.ListPidsRequest(container_id=self.container_id)
        )
        return [int(p.pid) for p in reply.processes]

    async def metrics(self) -> TaskMetrics:
        reply = await self.client.call(
            self.client.tasks.Metrics, tasks_pb2.MetricsRequest(filters=[f'id=="{self.container_id}"'])
        )
        for metric in reply.metrics:
            if metric.data.type_url.endswith(CGROUPS_V1_METRICS):
                return decode_cgroups_v1(metric.data.value)
        raise NotFound(f"containerd has no cgroup v1 metrics for task {self.container_id!r}")

    async def remove(self, *, kill_timeout: float = 10.0) -> ExitStatus | None:
        """Kill (SIGKILL, every process) if it still runs, wait, delete. None if there was no task."""
        try:
            state = (await self.status()).state
        except NotFound:
            return None
        if state != "stopped":
            with contextlib.suppress(NotFound, Conflict):
                await self.kill(signals.SIGKILL, all=True)
            try:
                await asyncio.wait_for(self.wait(), kill_timeout)
            except NotFound:
                pass
            except TimeoutError:
                raise Timeout(f"task {self.container_id} did not exit {kill_timeout}s after SIGKILL") from None
        try:
            return await self.delete()
        except NotFound:
            return None


@dataclass(frozen=True, slots=True)
class Stdio:
    """Where a task's output goes: paths the shim opens (a FIFO, or a file it appends to); "" is nowhere."""

    stdout: str = ""
    stderr: str = ""


async def create_task(
    client: Client,
    container_id: str,
    *,
    stdio: Stdio | None = None,
    snapshot_key: str | None = None,
    snapshotter: str | None = None,
) -> Task:
    """Create the task (the process, not yet started) with the container's snapshot as its rootfs.

    ``stdio`` receives stdout and stderr (by default they are discarded). Without
    ``snapshot_key`` the container record is read to find it.
    """
    if snapshot_key is None or snapshotter is None:
        reply = await client.call(client.containers.Get, containers_pb2.GetContainerRequest(id=container_id))
        snapshot_key = snapshot_key or reply.container.snapshot_key
        snapshotter = snapshotter or reply.container.snapshotter
    mounts = await client.call(
        client.snapshots.Mounts, snapshots_pb2.MountsRequest(snapshotter=snapshotter, key=snapshot_key)
    )
    try:
        await client.call(
            client.tasks.Create,
            tasks_pb2.CreateTaskRequest(
                container_id=container_id, rootfs=list(mounts.mounts), stdout=stdio.stdout if stdio else "",
                stderr=stdio.stderr if stdio else "",
            ),
        )
    except CorralError as e:  # containerd says "held" in words only (gRPC code Unknown)
        held = bundles.held_bundle(e.message, namespace=client.namespace, task_id=container_id)
        if held is None:
            raise
        raise bundles.BundleHeld(f"task {container_id}: containerd still holds its bundle directory {held} from an "
                                 "earlier create (cleaning it up, or left behind by a clean-up that failed)",
                                 path=held) from e
    return Task(client, container_id)


# -- cgroup v1 metrics, read from the wire format ------------------------------------------------
# Field numbers from containerd/cgroups stats/v1/metrics.proto: Metrics{pids=2, cpu=3, memory=4,
# memory_oom_control=9}; PidsStat{current=1}; CPUStat{usage=1}; CPUUsage{total=1};
# MemoryStat{rss=2, usage=33}; MemoryEntry{limit=1, usage=2}; MemoryOomControl{oom_kill=3}.


def _fields(data: bytes) -> dict[int, int | bytes]:
    """The last value of each field of one protobuf message (varints and length-delimited only)."""
    out: dict[int, int | bytes] = {}
    i, n = 0, len(data)
    while i < n:
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            out[number], i = _varint(data, i)
        elif wire == 2:
            size, i = _varint(data, i)
            out[number], i = data[i : i + size], i + size
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return out


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def _sub(fields: dict[int, int | bytes], number: int) -> dict[int, int | bytes]:
    value = fields.get(number)
    return _fields(value) if isinstance(value, bytes) else {}


def _int(fields: dict[int, int | bytes], number: int) -> int:
    value = fields.get(number)
    return value if isinstance(value, int) else 0


def decode_cgroups_v1(data: bytes) -> TaskMetrics:
    """The figures corral uses from an ``io.containerd.cgroups.v1.Metrics`` message."""
    top = _fields(data)
    memory = _sub(top, 4)
    usage = _sub(memory, 33)
    return TaskMetrics(
        memory_usage_bytes=_int(usage, 2),
        memory_limit_bytes=_int(usage, 1),
        memory_rss_bytes=_int(memory, 2),
        cpu_usage_ns=_int(_sub(_sub(top, 3), 1), 1),
        pids=_int(_sub(top, 2), 1),
        oom_kills=_int(_sub(top, 9), 3),
    )
