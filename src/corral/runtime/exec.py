"""Run an extra process inside a running container (``Tasks.Exec``) and get its exit code.

This is what an exec probe does, and what ``kubectl exec`` would be without stdio. One call to
``exec_process`` is five containerd calls, in this order:

1. ``Containers.Get`` — the container's OCI spec; its ``process`` section (user, env, cwd,
   capabilities, rlimits, …) is copied with other ``args`` and ``terminal: false``, so the extra
   process runs with exactly the identity and limits of the container's own.
2. ``Tasks.Exec`` — registers the process under a fresh ``exec_id``, with empty stdin, stdout and
   stderr (the runc shim then gives it ``/dev/null``): a probe needs only the exit code.
3. ``Tasks.Wait(exec_id)`` is issued *before* ``Tasks.Start(exec_id)`` (as ``Task.start`` does for
   the init process), so a process that exits at once is never missed.
4. The wait is bounded by ``timeout``: on expiry the process is sent SIGKILL and ``ExecTimeout``
   (a ``Timeout``) is raised.
5. ``Tasks.DeleteProcess`` — always, in a ``finally``, even when the caller is cancelled: containerd
   keeps an exec's record (and the shim its state) until it is deleted.

Errors are corral's (``NotFound`` when the container or its task is gone, ``Conflict`` when the
task is not running), never grpclib's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import any_pb2

from corral.model.errors import CorralError, NotFound, Timeout
from corral.runtime._pb.containerd.services.containers.v1 import containers_pb2
from corral.runtime._pb.containerd.services.tasks.v1 import tasks_pb2
from corral.runtime.client import Client
from corral.runtime.tasks import WAIT_TIMEOUT_S

PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
CLEANUP_TIMEOUT_S = 5.0


class ExecTimeout(Timeout):
    """The exec'd process did not exit within its timeout (it has been killed)."""


async def process_spec(client: Client, container_id: str) -> dict[str, Any]:
    """The ``process`` section of the container's OCI spec (what an exec'd process inherits)."""
    reply = await client.call(client.containers.Get, containers_pb2.GetContainerRequest(id=container_id))
    try:
        spec = json.loads(reply.container.spec.value or b"{}")
    except ValueError:
        spec = {}
    process = spec.get("process")
    if not isinstance(process, dict):
        raise NotFound(f"container {container_id!r} has no process in its OCI spec")
    return process


def exec_spec(base: Mapping[str, Any], args: Sequence[str]) -> dict[str, Any]:
    """``base`` (a container's process spec) running ``args``, without a terminal."""
    if not args:
        raise ValueError("exec needs a command")
    spec = {k: v for k, v in base.items() if k != "consoleSize"}
    spec["args"] = list(args)
    spec["terminal"] = False
    return spec


async def exec_process(
    client: Client,
    container_id: str,
    args: Sequence[str],
    *,
    timeout: float,
    process: Mapping[str, Any] | None = None,
) -> int:
    """Run ``args`` in the running container ``container_id``; its exit code (128+N if killed by N).

    ``process`` is the container's process spec if the caller already has it (saves a
    ``Containers.Get``). Raises ``ExecTimeout`` after ``timeout`` seconds (the process is killed).
    """
    base = process if process is not None else await process_spec(client, container_id)
    exec_id = f"exec-{secrets.token_hex(6)}"
    spec = exec_spec(base, args)
    await client.call(
        client.tasks.Exec,
        tasks_pb2.ExecProcessRequest(
            container_id=container_id, exec_id=exec_id, terminal=False,
            spec=any_pb2.Any(type_url=PROCESS_TYPE_URL, value=json.dumps(spec, separators=(",", ":")).encode()),
        ),
    )
    waiter: asyncio.Task[int] | None = None
    try:
        waiter = asyncio.create_task(_wait(client, container_id, exec_id), name=f"exec wait {exec_id}")
        await asyncio.sleep(0)  # let the Wait request go out before the Start
        await client.call(client.tasks.Start, tasks_pb2.StartRequest(container_id=container_id, exec_id=exec_id))
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            await _kill(client, container_id, exec_id)
            raise ExecTimeout(f"{list(args)!r} in {container_id} did not exit within {timeout:g}s") from None
    finally:
        await _cleanup(client, container_id, exec_id, waiter)


async def _wait(client: Client, container_id: str, exec_id: str) -> int:
    reply = await client.call(
        client.tasks.Wait, tasks_pb2.WaitRequest(container_id=container_id, exec_id=exec_id),
        timeout=WAIT_TIMEOUT_S, retry=False,
    )
    return int(reply.exit_status)


async def _kill(client: Client, container_id: str, exec_id: str) -> None:
    with contextlib.suppress(CorralError):
        await client.call(
            client.tasks.Kill,
            tasks_pb2.KillRequest(container_id=container_id, exec_id=exec_id, signal=int(signal.SIGKILL)),
        )


async def _cleanup(client: Client, container_id: str, exec_id: str, waiter: asyncio.Task[int] | None) -> None:
    """Kill the process if it still runs, let it exit, delete it — bounded, and run to the end even
    when the caller is being cancelled (the cancellation is re-raised afterwards by the caller's
    ``await``)."""

    async def run() -> None:
        if waiter is not None and not waiter.done():
            await _kill(client, container_id, exec_id)
            with contextlib.suppress(CorralError, TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(waiter, CLEANUP_TIMEOUT_S)
        with contextlib.suppress(CorralError):
            await client.call(
                client.tasks.DeleteProcess,
                tasks_pb2.DeleteProcessRequest(container_id=container_id, exec_id=exec_id),
                timeout=CLEANUP_TIMEOUT_S,
            )

    cleanup = asyncio.ensure_future(run())
    try:
        await asyncio.shield(cleanup)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await cleanup  # finish the cleanup, then let the cancellation go on
        raise
    finally:
        if waiter is not None and not waiter.done():
            waiter.cancel()
            with contextlib.suppress(BaseException):
                await waiter


__all__ = ["ExecTimeout", "exec_process", "exec_spec", "process_spec"]
