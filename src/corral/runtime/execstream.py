"""An exec'd process with its stdio streamed: what ``corral exec`` runs on the agent.

``exec.py`` runs a probe's process with no stdio; here the process's stdin, stdout and stderr are
FIFOs the agent creates in a private directory and hands to containerd's ``Tasks.Exec`` (the runc
shim opens them and copies between them and the process, or the process's pty when ``tty``):

- Each FIFO is opened by the agent *before* ``Tasks.Exec``, ``O_RDWR | O_NONBLOCK`` (an open that
  never blocks, and keeps the FIFO alive while the shim opens its end). For stdout/stderr a second,
  read-only descriptor is what the agent reads; once ``Tasks.Start`` has returned (the shim has
  opened its write ends by then) the read-write one is closed, so the shim closing its end after
  the process exits is seen as end-of-file: all output is read before the exit status is sent.
- stdin is written through the read-write descriptor. The shim keeps a writer of its own on the
  stdin FIFO, so the process's end-of-file is our close *and* ``Tasks.CloseIO(stdin)``.
- With ``tty`` the process spec says ``terminal: true``, stdout carries the terminal (there is
  no stderr), and ``resize`` is ``Tasks.ResizePty``.
- ``wait`` issues ``Tasks.Wait(exec_id)`` before ``Tasks.Start`` (an exit is never missed);
  ``close`` kills the process if it still runs, deletes it, and removes the FIFOs — always, even
  under cancellation (``exec._cleanup``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from google.protobuf import any_pb2

from corral.runtime import exec as rexec
from corral.runtime._pb.containerd.services.tasks.v1 import tasks_pb2
from corral.runtime.client import Client

READ_CHUNK = 256 * 1024


class Fifo:
    """One FIFO end the agent holds, read or written without blocking the event loop."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)

    async def _ready(self, add: str, remove: str) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        getattr(loop, add)(self.fd, wake)
        try:
            await ready
        finally:
            getattr(loop, remove)(self.fd)

    async def read(self) -> bytes:
        """The next bytes available; ``b""`` at end of file."""
        while True:
            try:
                return os.read(self.fd, READ_CHUNK)
            except BlockingIOError:
                await self._ready("add_reader", "remove_reader")

    async def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view):]
            except BlockingIOError:
                await self._ready("add_writer", "remove_writer")

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


class ExecStream:
    """A running exec'd process: ``stdout``/``stderr`` to read (None when not asked for),
    ``write_stdin``/``close_stdin``, ``resize``, ``wait`` for the exit code, ``close`` to end it."""

    def __init__(self, client: Client, container_id: str, exec_id: str, fifo_dir: Path, *,
                 stdin: Fifo | None, stdout: Fifo | None, stderr: Fifo | None,
                 waiter: asyncio.Task[int]) -> None:
        self.client = client
        self.container_id = container_id
        self.exec_id = exec_id
        self.fifo_dir = fifo_dir
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self._waiter = waiter
        self._closed = False

    async def write_stdin(self, data: bytes | memoryview) -> None:
        if self.stdin is not None and self.stdin.fd >= 0:
            await self.stdin.write(data)

    async def close_stdin(self) -> None:
        """End the process's input: our end closed, and the shim's own writer (``Tasks.CloseIO``)."""
        if self.stdin is None or self.stdin.fd < 0:
            return
        self.stdin.close()
        await self.client.call(
            self.client.tasks.CloseIO,
            tasks_pb2.CloseIORequest(container_id=self.container_id, exec_id=self.exec_id, stdin=True),
        )

    async def resize(self, width: int, height: int) -> None:
        await self.client.call(
            self.client.tasks.ResizePty,
            tasks_pb2.ResizePtyRequest(container_id=self.container_id, exec_id=self.exec_id,
                                       width=width, height=height),
        )

    async def wait(self) -> int:
        return await asyncio.shield(self._waiter)

    async def close(self) -> None:
        """Kill the process if it still runs, delete it, remove its FIFOs (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            await rexec._cleanup(self.client, self.container_id, self.exec_id, self._waiter)
        finally:
            for fifo in (self.stdin, self.stdout, self.stderr):
                if fifo is not None:
                    fifo.close()
            await asyncio.to_thread(shutil.rmtree, self.fifo_dir, True)


async def start_exec(
    client: Client,
    container_id: str,
    args: Sequence[str],
    *,
    tty: bool,
    stdin: bool,
    stdout: bool = True,
    stderr: bool = True,
    size: tuple[int, int] | None = None,
    fifo_root: Path | None = None,
) -> ExecStream:
    """Start ``args`` in the running container with the asked-for stdio; see the module docstring."""
    base = await rexec.process_spec(client, container_id)
    spec = rexec.exec_spec(base, args)
    if tty:
        spec["terminal"] = True
        if size is not None:
            spec["consoleSize"] = {"width": size[0], "height": size[1]}
        spec["env"] = [e for e in spec.get("env", []) if not e.startswith("TERM=")] + ["TERM=xterm"]
    exec_id = f"exec-{secrets.token_hex(6)}"
    fifo_dir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="corral-exec-", dir=fifo_root))
    holders: list[int] = []  # the read-write ends kept until the shim has opened its ends
    fifos: dict[str, Fifo | None] = {"stdin": None, "stdout": None, "stderr": None}
    paths = {"stdin": "", "stdout": "", "stderr": ""}
    waiter: asyncio.Task[int] | None = None
    try:
        for name, wanted in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr and not tty)):
            if not wanted:
                continue
            path = fifo_dir / name
            os.mkfifo(path, 0o600)
            paths[name] = str(path)
            rw = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            if name == "stdin":
                fifos[name] = Fifo(rw)
            else:
                holders.append(rw)
                fifos[name] = Fifo(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
        await client.call(
            client.tasks.Exec,
            tasks_pb2.ExecProcessRequest(
                container_id=container_id, exec_id=exec_id, terminal=tty,
                stdin=paths["stdin"], stdout=paths["stdout"], stderr=paths["stderr"],
                spec=any_pb2.Any(type_url=rexec.PROCESS_TYPE_URL,
                                 value=json.dumps(spec, separators=(",", ":")).encode()),
            ),
        )
        waiter = asyncio.create_task(rexec._wait(client, container_id, exec_id), name=f"exec wait {exec_id}")
        await asyncio.sleep(0)  # the Wait goes out before the Start
        await client.call(client.tasks.Start, tasks_pb2.StartRequest(container_id=container_id, exec_id=exec_id))
    except BaseException:
        for fd in holders:
            os.close(fd)
        for fifo in fifos.values():
            if fifo is not None:
                fifo.close()
        if waiter is not None:
            await rexec._cleanup(client, container_id, exec_id, waiter)
        else:
            with contextlib.suppress(Exception):
                await client.call(client.tasks.DeleteProcess,
                                  tasks_pb2.DeleteProcessRequest(container_id=container_id, exec_id=exec_id),
                                  timeout=rexec.CLEANUP_TIMEOUT_S)
        await asyncio.to_thread(shutil.rmtree, fifo_dir, True)
        raise
    for fd in holders:
        os.close(fd)
    return ExecStream(client, container_id, exec_id, fifo_dir, stdin=fifos["stdin"], stdout=fifos["stdout"],
                      stderr=fifos["stderr"], waiter=waiter)


__all__ = ["ExecStream", "Fifo", "start_exec"]
