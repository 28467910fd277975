"""Step 4: the task runs or is stopped as desired, and what happened becomes the status.

Everything is read back from containerd each pass: a task that runs is Running (adopted as it is);
a task that stopped is restarted by the restart policy — Always, or OnFailure after a non-zero
exit — after a backoff that doubles with each restart (1 s, 2 s, 4 s … up to 60 s; meanwhile the
reason is ``CrashLoopBackOff``), or else reported Succeeded/Failed with its exit code and kept, so
the status can always be derived again. ``restartCount`` lives in the API's status, the one place
that outlives both the agent and the task. An OOM kill is known from the containerd record's label
(written when containerd's OOM event came) or, for a stopped task, from its cgroup's OOM-kill count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from corral.aiokit.backoff import exponential
from corral.model.errors import AlreadyExists, Conflict, CorralError, NotFound, Unavailable
from corral.model.lifecycle import now_rfc3339, rfc3339
from corral.model.resources import Condition, Container, ContainerStatus
from corral.runtime import bundles, tasks
from corral.runtime import containers as ctrs
from corral.runtime.client import Client
from corral.runtime.unpack import SNAPSHOTTER

log = logging.getLogger(__name__)

BACKOFF_BASE = 1.0
BACKOFF_MAX = 60.0


def restart_backoff(restart_count: int) -> float:
    return exponential(restart_count, initial=BACKOFF_BASE, maximum=BACKOFF_MAX)


@dataclass
class Outcome:
    status: ContainerStatus
    requeue_after: float | None = None
    started: bool = False
    restarted: bool = False
    exited: bool = False


def _should_restart(obj: Container, exit_code: int) -> bool:
    policy = obj.spec.restart_policy
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def _conditions(status: ContainerStatus, ready: bool) -> list[Condition]:
    now = now_rfc3339()
    wanted: Literal["True", "False"] = "True" if ready else "False"
    out = [c for c in status.conditions if c.type != "Ready"]
    old = next((c for c in status.conditions if c.type == "Ready"), None)
    if old is not None and old.status == wanted:
        out.append(old)
    else:
        out.append(Condition(type="Ready", status=wanted, last_transition_time=now))
    return out


async def start_task(client: Client, cid: str, *, stdio: tasks.Stdio) -> None:
    """Create and start the task. A task that "already exists" though the agent found none to adopt
    was half made when containerd died (registered, never reported or started, its shim perhaps
    gone): it is removed and made afresh; if containerd still holds it, the whole containerd
    container goes and the next pass (reconcile/containers.py) makes it again. A create that finds
    containerd still cleaning up an earlier one of the same task is tried again a second later —
    every second, not after a growing backoff: it is over as soon as containerd lets go — unless
    that clean-up failed and left the task's bundle directory behind for good (containerd 1.6, an
    agent killed mid-create): then the directory is removed and the task created at once."""
    try:
        task = await _create_task(client, cid, stdio=stdio)
    except AlreadyExists:
        log.warning("task %s already exists but was not found running: half made when containerd died; "
                    "removing it", cid)
        await _remove_half_made_task(client, cid)
        try:
            task = await _create_task(client, cid, stdio=stdio)
        except AlreadyExists:
            log.warning("task %s is still there after its removal: removing container %s to make it again", cid, cid)
            await ctrs.delete_container(client, cid, kill_timeout=5.0)
            raise Unavailable(f"the half-made task {cid} was removed with its container; it is made again") from None
    except bundles.BundleHeld as e:
        if not await _removed_left_over_bundle(client, cid, e.path):
            raise  # (retried a second later)
        task = await _create_task(client, cid, stdio=stdio)
    exit_handle = await task.start()
    await exit_handle.cancel()  # exits are watched through containerd's event stream, not per task


async def _removed_left_over_bundle(client: Client, cid: str, path: Path) -> bool:
    """Whether the bundle directory ``path`` containerd held was left over by a clean-up of its that
    failed — no task of that id, no process in it, older than a create takes — and is now removed
    (runtime/bundles.py); False while it may still be in use."""
    try:
        await tasks.Task(client, cid).status()
        return False  # containerd has the task: its own, not a leftover
    except NotFound:
        pass
    if not await asyncio.to_thread(bundles.remove_stale, path):
        return False
    log.warning("task %s: removed %s, which containerd left behind when its clean-up of an earlier create "
                "failed (no task, no process in it); creating the task again", cid, path)
    return True


async def _create_task(client: Client, cid: str, *, stdio: tasks.Stdio) -> tasks.Task:
    # the snapshot key is the containerd id (reconcile/containers.py): no need to read the record
    return await tasks.create_task(client, cid, stdio=stdio, snapshot_key=cid, snapshotter=SNAPSHOTTER)


async def _remove_half_made_task(client: Client, cid: str) -> None:
    task = tasks.Task(client, cid)
    with contextlib.suppress(NotFound, Conflict):
        await task.kill(signal.SIGKILL, all=True)
    for _ in range(50):  # a killed process takes a moment to be reaped before the task can go
        try:
            await task.delete()
            return
        except NotFound:
            return
        except Conflict:
            await asyncio.sleep(0.1)


async def ensure_state(
    client: Client, obj: Container, cid: str, *, stdio: tasks.Stdio, oom_killed: bool, ip: str,
    probe_ready: bool | None = None, before_start: Callable[[], Awaitable[object]] | None = None,
) -> Outcome:
    """``probe_ready``: the readiness probe's result (``reconcile/probes.py``), None without one;
    ``before_start``: run before each new start of the process (the log's runs: ``logkeeping``)."""
    st = obj.status
    status = ContainerStatus(
        phase=st.phase, node=obj.spec.node, ip=ip, container_id=cid, image_digest=st.image_digest,
        started_at=st.started_at, finished_at=st.finished_at, exit_code=st.exit_code,
        restart_count=st.restart_count, ready=st.ready, reason="", message="",
        observed_generation=obj.metadata.generation, conditions=list(st.conditions),
    )
    if status.container_id != st.container_id:  # a new generation: a new process
        status.started_at, status.finished_at, status.exit_code = "", "", None
    task = tasks.Task(client, cid)
    try:
        info: tasks.TaskStatus | None = await task.status()
    except NotFound:
        info = None
    outcome = Outcome(status)
    if info is not None and info.state == "created":
        # a crash between create and start, or during the start: starting it again may hang for good
        # (runc start waits on an init that the crash left behind), and it never ran: make it afresh
        log.warning("task %s was created but never started (a crash between the two): removing it to make it "
                    "again", cid)
        await _remove_half_made_task(client, cid)
        info = None
    if info is None:
        if before_start is not None:
            await before_start()
        await start_task(client, cid, stdio=stdio)
        status.phase, status.started_at, status.finished_at, status.exit_code = "Running", now_rfc3339(), "", None
        outcome.started = True
    elif info.state in ("running", "paused", "pausing"):
        status.phase = "Running"
        status.started_at = status.started_at or now_rfc3339()
    else:  # stopped
        code = info.exit_status
        oom_killed = oom_killed or await _oom_killed_in_cgroup(task)
        status.exit_code = code
        status.finished_at = rfc3339(info.exited_at) if info.exited_at else now_rfc3339()
        outcome.exited = True
        if _should_restart(obj, code):
            wait = restart_backoff(status.restart_count)
            since = (datetime.now(UTC) - info.exited_at).total_seconds() if info.exited_at else wait
            if since < wait:
                status.phase = "Running"
                status.reason = "CrashLoopBackOff"
                status.message = f"back-off {wait:.0f}s restarting the container (exit code {code})"
                outcome.requeue_after = wait - since
            else:
                with contextlib.suppress(NotFound):
                    await task.delete()
                if before_start is not None:
                    await before_start()
                await start_task(client, cid, stdio=stdio)
                status.restart_count += 1
                status.phase, status.started_at = "Running", now_rfc3339()
                outcome.restarted = True
        else:
            status.phase = "Succeeded" if code == 0 else "Failed"
            status.reason = "OOMKilled" if oom_killed else ("Completed" if code == 0 else "Error")
            status.message = f"exited with code {code}"
    if oom_killed and status.reason in ("", "CrashLoopBackOff") and outcome.exited:
        status.message = f"OOMKilled: {status.message}" if status.message else "OOMKilled"
    # readiness probe (reconcile/probes.py): with one, ready needs its pass, and a new process has none yet
    probed = probe_ready is None or (probe_ready and not (outcome.started or outcome.restarted))
    status.ready = status.phase == "Running" and not status.reason and probed
    status.conditions = _conditions(status, status.ready)
    return outcome


async def _oom_killed_in_cgroup(task: tasks.Task) -> bool:
    """Whether the kernel's OOM killer ended a process of this (stopped, not yet deleted) task, as its
    cgroup counts it — the world's answer when the agent missed containerd's OOM event (it was down)."""
    try:
        return (await task.metrics()).oom_kills > 0
    except CorralError:  # no cgroup v1 metrics (or the task just went): the OOM event's label alone says it
        return False


async def stop(client: Client, cid: str, *, grace: float) -> tasks.ExitStatus | None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL every process; delete the task."""
    task = tasks.Task(client, cid)
    try:
        info = await task.status()
    except NotFound:
        return None
    if info.state != "stopped":
        with contextlib.suppress(NotFound, Conflict):
            await task.kill(signal.SIGTERM)
        try:
            await asyncio.wait_for(task.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(NotFound, Conflict):
                await task.kill(signal.SIGKILL, all=True)
            with contextlib.suppress(NotFound, TimeoutError):
                await asyncio.wait_for(task.wait(), 10)
    try:
        return await task.delete()
    except NotFound:
        return None
