"""Child processes that never outlive their parent, never linger across a restart, and come back when they die.

``corral serve`` starts an etcd, a containerd and a leader process of its own. Three rules keep
them from turning a crash into an outage:

- **They die with their parent.** ``ChildProcess`` runs every child through util-linux's
  ``setpriv --pdeathsig TERM --`` (which sets ``PR_SET_PDEATHSIG`` and execs the program in its
  place): when the process that started it dies, even by SIGKILL, the kernel sends the child
  SIGTERM. Not ``prctl`` through ctypes in a ``preexec_fn``: a ``preexec_fn`` makes Python fork
  (not vfork) and run the fork handlers of every library loaded (grpc's among them) in the child,
  which crashed containerd's start in a test process. The signal follows the *thread* that forked,
  so children are started from the event loop's thread, never from a worker thread.
- **A leftover is found and removed before a new one starts.** Each child writes a pid file; the
  next start reads it and ends that process if — and only if — ``/proc/PID/cmdline`` shows it is
  the same program on the same data (``marker``, e.g. its data dir): a recycled pid is left alone.
  The same check runs over ``/proc`` for a leftover whose pid file is gone. So no old etcd or
  containerd keeps the data dirs locked when ``serve`` starts again.
- **A child that dies is restarted.** ``Supervisor.run`` waits for the child to exit and starts it
  again after a back-off (``aiokit/backoff.py``), logging each restart and counting it in
  ``RESTARTS`` (by child name), until the owner's ``stop`` event is set.

``terminate(process)`` is the one way to stop a child: SIGTERM, then SIGKILL after a grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from corral.aiokit.backoff import Backoff

log = logging.getLogger(__name__)

RESTARTS: Counter[str] = Counter()  # child key → restarts by a Supervisor in this process (corral_child_restarts)


def die_with_parent(sig: str = "TERM") -> list[str]:
    """The argv prefix that makes a child get SIG``sig`` when this process (its forking thread) dies;
    [] where util-linux's setpriv is missing (then only the leftover check below protects)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", sig, "--"] if setpriv else []


async def terminate(proc: asyncio.subprocess.Process, *, grace: float = 10.0) -> int:
    """SIGTERM, then SIGKILL if it is still there after ``grace`` seconds; its exit code."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), grace)
        except TimeoutError:
            log.warning("pid %s did not stop within %.0fs of SIGTERM; killing it", proc.pid, grace)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    return await proc.wait()


# --- leftovers from an earlier run ------------------------------------------------------------


def cmdline(pid: int) -> list[str]:
    """The process's argv from /proc; [] when it is gone (or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def is_ours(pid: int, *, program: str, marker: str) -> bool:
    """Whether ``pid`` runs ``program`` (its argv[0]'s basename) with ``marker`` as one of its arguments."""
    argv = cmdline(pid)
    return bool(argv) and os.path.basename(argv[0]) == program and marker in argv[1:]


def find_leftovers(*, pid_file: Path | None, program: str, marker: str) -> list[int]:
    """Processes of ``program`` on ``marker`` (the pid file's, and any other in /proc), not this one."""
    found: list[int] = []
    if pid_file is not None:
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().strip())
            if is_ours(pid, program=program, marker=marker):
                found.append(pid)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (pid := int(entry.name)) not in found and pid != os.getpid() \
                and is_ours(pid, program=program, marker=marker):
            found.append(pid)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def end_leftovers(*, pid_file: Path | None, program: str, marker: str, grace: float = 10.0) -> list[int]:
    """End (SIGTERM, SIGKILL after ``grace``) every leftover ``find_leftovers`` finds; their pids. Blocking."""
    pids = find_leftovers(pid_file=pid_file, program=program, marker=marker)
    for pid in pids:
        log.warning("a %s from an earlier run is still there (pid %d, %s): ending it", program, pid, marker)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    while any(_alive(p) for p in pids):
        time.sleep(0.02)
    return pids


# --- one child --------------------------------------------------------------------------------


class ChildProcess:
    """A program run as a child: dies with us, leaves a pid file, ``start`` again after it exits.

    ``log_path`` gets its stdout and stderr (appended); without it they are ours. With
    ``pid_file`` and ``marker``, ``start`` first ends any leftover of an earlier run (see above).
    """

    def __init__(self, argv: Sequence[str], *, name: str, log_path: Path | None = None,
                 pid_file: Path | None = None, marker: str = "", new_session: bool = True,
                 env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.name = name
        self.log_path = log_path
        self.pid_file = pid_file
        self.marker = marker
        self.new_session = new_session
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc is not None else None

    async def start(self) -> None:
        if self.running:
            return
        if self.pid_file is not None and self.marker:
            await asyncio.to_thread(end_leftovers, pid_file=self.pid_file,
                                    program=os.path.basename(self.argv[0]), marker=self.marker)
        log_file = await asyncio.to_thread(open, self.log_path, "ab") if self.log_path is not None else None
        try:
            out = log_file if log_file is not None else None
            self.proc = await asyncio.create_subprocess_exec(
                *die_with_parent(), *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=self.new_session, env=self.env,
            )
        finally:
            if log_file is not None:
                log_file.close()  # the child has its own copy
        self.started_at = time.monotonic()
        if self.pid_file is not None:
            await asyncio.to_thread(self.pid_file.write_text, f"{self.proc.pid}\n")

    async def wait(self) -> int | None:
        """Its exit code once it exits; None at once when none was started."""
        proc = self.proc
        return await proc.wait() if proc is not None else None

    async def stop(self, *, grace: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            await terminate(proc, grace=grace)
            self._forget_pid()

    async def kill(self) -> None:
        """SIGKILL (tests of crash recovery)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            await proc.wait()

    def _forget_pid(self) -> None:
        if self.pid_file is not None:
            with contextlib.suppress(OSError):
                self.pid_file.unlink()


# --- keeping one running ----------------------------------------------------------------------


class Supervisable(Protocol):
    async def start(self) -> None: ...

    async def wait(self) -> int | None: ...


class Supervisor:
    """Restart ``child`` (already started) whenever it exits, with back-off, until ``stop`` is set.

    ``on_restart`` runs after each successful restart (to tell whoever uses the child)."""

    def __init__(self, name: str, child: Supervisable, *, stop: asyncio.Event, backoff: Backoff | None = None,
                 on_restart: Callable[[], None] | None = None, key: str = "") -> None:
        self.name = name
        self.key = key or name  # what RESTARTS counts it under (a metric's label value)
        self.child = child
        self.stop = stop
        self.backoff = backoff or Backoff()
        self.on_restart = on_restart
        self.restarts = 0

    async def _until_stop(self, delay: float | None, awaitable: asyncio.Future[int | None] | None = None) -> bool:
        """Wait for ``delay`` seconds (or ``awaitable``); True if ``stop`` was set meanwhile."""
        stopper = asyncio.ensure_future(self.stop.wait())
        waiters: set[asyncio.Future[object]] = {stopper}  # type: ignore[arg-type]
        if awaitable is not None:
            waiters.add(awaitable)  # type: ignore[arg-type]
        try:
            await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        return self.stop.is_set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            began = loop.time()
            exited = asyncio.ensure_future(self.child.wait())
            try:
                if await self._until_stop(None, exited):
                    return
            finally:
                if not exited.done():
                    exited.cancel()
            code = exited.result()
            self.backoff.ran_for(loop.time() - began)
            delay = self.backoff.next()
            self.restarts += 1
            RESTARTS[self.key] += 1
            log.warning("%s exited (code %s); restarting it in %.1fs (restart %d)", self.name, code, delay, self.restarts)
            if await self._until_stop(delay):
                return
            try:
                await self.child.start()
            except Exception as e:  # tried again after the next back-off
                log.error("%s did not start again: %s", self.name, e)
                continue
            log.info("%s is running again", self.name)
            if self.on_restart is not None:
                self.on_restart()
