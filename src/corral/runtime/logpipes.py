"""The agent's half of container logs: each container's two FIFOs, and the node's one log collector.

A container's stdout and stderr are FIFOs the agent makes before its task is created —
``<data>/logpipes/<uid>.stdout`` and ``<uid>.stderr`` — and hands containerd as the task's
stdout/stderr paths (plain paths, no URI scheme: the runc shim opens a FIFO it is given, a write
end to copy into and a read end it holds so that writes never meet EPIPE). They stay through every
restart of the task and go with the container (``remove``). The node's log collector
(``runtime/logcollector.py``) reads them all into ``<data>/logs/<uid>/container.log``.

- ``ReadEnds`` holds a read end of each FIFO for the agent, from before the task is created until
  the container is removed, so that output waiting in a pipe outlives a task that ends while the
  collector is away.
- ``LogCollector`` is the collector process, for a ``Supervisor`` (``aiokit/processes.py``):
  ``start`` adopts the collector already running on this data dir — one that outlived its agent —
  or starts one, in a session of its own and without a parent-death signal, so that an agent that
  stops or dies (even by SIGKILL) leaves it collecting; ``wait`` returns when it exits (through a
  pidfd when it is not our child). The collector belongs to the node: ``stop`` ends it (SIGTERM,
  then SIGKILL) only when no container is left (no FIFO); what it had not written when it stopped
  waits in the pipes for the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import stat
import sys
from pathlib import Path

from corral.aiokit.processes import cmdline, terminate
from corral.runtime.logcollector import PID_NAME, PIPES_DIR, STREAMS
from corral.runtime.logrecords import DEFAULT_MAX_BYTES, DEFAULT_MAX_FILES

log = logging.getLogger(__name__)
COLLECTOR_MODULE = "corral.runtime.logcollector"


def pipes_dir(data_dir: Path) -> Path:
    return data_dir / PIPES_DIR


def fifo_paths(data_dir: Path, uid: str) -> tuple[Path, Path]:
    """The container's stdout and stderr FIFOs."""
    return pipes_dir(data_dir) / f"{uid}.stdout", pipes_dir(data_dir) / f"{uid}.stderr"


def ensure(data_dir: Path, uid: str) -> tuple[Path, Path]:
    """Make the container's FIFOs unless they are there (blocking; microseconds); their paths."""
    paths = fifo_paths(data_dir, uid)
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    for path in paths:
        try:
            if stat.S_ISFIFO(path.lstat().st_mode):
                continue
            path.unlink()  # not a FIFO: containerd would append to it as a plain file
        except FileNotFoundError:
            pass
        os.mkfifo(path, 0o600)
    return paths


def remove(data_dir: Path, uid: str) -> None:
    """Remove the container's FIFOs (blocking); the collector writes what they held and lets them go."""
    for path in fifo_paths(data_dir, uid):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def list_uids(data_dir: Path) -> set[str]:
    """The uids that have FIFOs here (blocking)."""
    try:
        names = os.listdir(pipes_dir(data_dir))
    except FileNotFoundError:
        return set()
    return {uid for uid, _, kind in (n.rpartition(".") for n in names) if kind in STREAMS and uid and uid[0] != "."}


class ReadEnds:
    """Read ends the agent holds on every container's FIFOs, and never reads.

    A pipe's buffered bytes live only while some process has it open. The shim holds its ends until
    the container's output ends; a task that ends while the collector is away (killed, restarting)
    would take its last output with it — unless another reader holds on. Held from before the task
    is created (the shim's first open of the write end waits for a reader: the collector may not
    have found a new FIFO yet) until the container is removed. A reader, not a writer: the
    collector still sees the hang-up when the task's output ends. A restarted agent opens them again
    as it syncs each container.
    """

    def __init__(self) -> None:
        self._fds: dict[str, list[int]] = {}

    def hold(self, uid: str, paths: tuple[Path, ...]) -> None:
        """Open read ends on ``paths`` for ``uid`` unless held already (blocking; microseconds)."""
        if uid in self._fds:
            return
        fds: list[int] = []
        try:
            for path in paths:
                fds.append(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        self._fds[uid] = fds

    def release(self, uid: str) -> None:
        for fd in self._fds.pop(uid, []):
            os.close(fd)

    def release_all(self) -> None:
        for uid in list(self._fds):
            self.release(uid)


# --- the collector process ----------------------------------------------------------------------


def collector_argv(data_dir: Path, *, max_bytes: int, max_files: int, python: str | None = None) -> list[str]:
    return [python or sys.executable, "-m", COLLECTOR_MODULE, "--data-dir", str(data_dir),
            "--max-bytes", str(max_bytes), "--max-files", str(max_files)]


def is_collector(pid: int, data_dir: Path) -> bool:
    """Whether ``pid`` is a log collector on ``data_dir`` (from its command line)."""
    argv = cmdline(pid)
    return COLLECTOR_MODULE in argv and "--data-dir" in argv and str(data_dir) in argv


def running_collector(data_dir: Path) -> int | None:
    """The pid of the collector on ``data_dir`` (the one that wrote the pid file, else any), if one runs."""
    with contextlib.suppress(OSError, ValueError):
        pid = int((pipes_dir(data_dir) / PID_NAME).read_text().strip())
        if is_collector(pid, data_dir):
            return pid
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and is_collector(int(entry.name), data_dir):
            return int(entry.name)
    return None


class LogCollector:
    """The node's log collector process: adopted or started, waited for, stopped."""

    def __init__(self, data_dir: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_files: int = DEFAULT_MAX_FILES) -> None:
        self.data_dir = data_dir.absolute()
        self.argv = collector_argv(self.data_dir, max_bytes=max_bytes, max_files=max_files)
        self.log_path = pipes_dir(self.data_dir) / "collector.log"
        self.pid: int | None = None
        self._proc: asyncio.subprocess.Process | None = None  # when it is our child

    async def start(self) -> None:
        if self.pid is not None and await self._alive():
            return
        found = await asyncio.to_thread(running_collector, self.data_dir)
        if found is not None:
            self.pid, self._proc = found, None
            log.info("log collector already running (pid %d): adopted", found)
            return
        await asyncio.to_thread(pipes_dir(self.data_dir).mkdir, parents=True, exist_ok=True)
        out = await asyncio.to_thread(open, self.log_path, "ab")
        try:
            # a session of its own and no parent-death signal: it outlives an agent that dies
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
        finally:
            out.close()
        self.pid = self._proc.pid
        log.info("started the log collector (pid %d)", self.pid)

    async def _alive(self) -> bool:
        if self._proc is not None:
            return self._proc.returncode is None
        return self.pid is not None and await asyncio.to_thread(is_collector, self.pid, self.data_dir)

    async def wait(self) -> int | None:
        """Its exit code once it exits (None for one adopted, whose code is its parent's to read)."""
        if self._proc is not None:
            return await self._proc.wait()
        if self.pid is not None:
            await wait_pid(self.pid)
        return None

    async def stop_if_idle(self) -> bool:
        """Stop it when no container is left on the node (no FIFO); else leave it collecting. Whether it stopped."""
        if await asyncio.to_thread(list_uids, self.data_dir):
            log.info("leaving the log collector (pid %s) running: containers still write to it", self.pid)
            return False
        await self.stop()
        return True

    async def stop(self, *, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``grace``: what it has not written stays in the pipes. One not
        started by this handle is found by its command line (a leftover, e.g. of a killed agent)."""
        pid, proc = self.pid, self._proc
        self.pid, self._proc = None, None
        if pid is None:
            pid = await asyncio.to_thread(running_collector, self.data_dir)
        if proc is not None:
            await terminate(proc, grace=grace)
            return
        if pid is None or not await asyncio.to_thread(is_collector, pid, self.data_dir):
            return  # an adopted one that is gone (its pid may be someone else's now)
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wait_pid(pid), wait)
                return


async def wait_pid(pid: int) -> None:
    """Until process ``pid`` (not necessarily our child) exits, through a pidfd."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not gone.done():
            gone.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await gone
    finally:
        loop.remove_reader(fd)
        os.close(fd)
