"""Liveness and readiness probes: the agent checks its running containers on their schedule.

A ``Prober`` belongs to the ``NodeReconciler``. For every running container (keyed by its
containerd id) that has probes, it runs one asyncio task per probe: wait ``initialDelaySeconds``,
then check every ``periodSeconds``, each check bounded by ``timeoutSeconds``:

- **exec** — ``runtime.exec.exec_process`` runs the command in the container; exit code 0 passes.
- **httpGet** — ``GET http://<container ip>:<port><path>`` from the agent (the host reaches the
  container's IP on the node's bridge); a status in 200-399 passes (redirects are not followed).
- **tcpSocket** — a TCP connection to ``<container ip>:<port>`` opens.

Single checks do not decide anything: ``ProbeResult`` turns them into a result with the
thresholds — ``failureThreshold`` consecutive failures flip it to failing, ``successThreshold``
consecutive successes back to passing. Results are observations of the world and live in memory
only: after an agent restart they start over, readiness as *unknown* (not ready until the first
pass), liveness as passing (until it fails).

When a result flips, the prober calls ``on_change(key)``; the key is requeued and ``sync`` reads
the prober's state (``ready``, ``liveness_failure``): readiness becomes ``status.ready`` and the
Ready condition, a liveness failure makes ``sync`` kill the task so the restart policy restarts it.

Probe sets are identified by an *instance* token (the task's start time, its IP and the probe
specs): a restarted task, a new network attachment or a changed spec replaces the old probes and
their results. ``stop(cid)`` ends a
container's probes (when its task is not running, in teardown and sweep) and ``aclose`` ends them
all; the prober tracks every task it starts and awaits their cancellation, so none is leaked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import aiohttp

from corral.model.errors import CorralError
from corral.model.resources import Container, Probe
from corral.runtime.client import Client
from corral.runtime.exec import ExecTimeout, exec_process

log = logging.getLogger(__name__)

Key = tuple[str, str]
Kind = Literal["liveness", "readiness"]


@dataclass
class ProbeResult:
    """The thresholded result of one probe: pure logic, fed one check at a time."""

    success_threshold: int
    failure_threshold: int
    passing: bool | None = None  # None: no result yet
    successes: int = 0
    failures: int = 0
    last_message: str = ""

    def record(self, ok: bool, message: str = "") -> bool:
        """Add one check; True if the result flipped (or got its first value)."""
        self.last_message = message
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.passing is not True and self.successes >= max(self.success_threshold, 1):
                self.passing = True
                return True
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.passing is not False and self.failures >= max(self.failure_threshold, 1):
                self.passing = False
                return True
        return False


@dataclass
class _Running:
    """The probes of one container instance: their results and the tasks that feed them."""

    key: Key
    instance: str
    results: dict[Kind, ProbeResult] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def instance_token(obj: Container, started_at: str, ip: str) -> str:
    """What identifies one probe set: the task's start, its IP and the probe specs (a change restarts them)."""
    spec = obj.spec
    return f"{started_at}|{ip}|{spec.liveness_probe!r}|{spec.readiness_probe!r}"


class Prober:
    def __init__(self, client: Client, *, on_change: Callable[[Key], None]) -> None:
        self.client = client
        self.on_change = on_change
        self._running: dict[str, _Running] = {}  # containerd id -> its probes
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    # --- what sync reads ------------------------------------------------------------------------

    def ready(self, cid: str) -> bool:
        """The readiness result: False while unknown or failing (and when the container has no probes
        running, which ``sync`` only asks about for a container with a readiness probe)."""
        run = self._running.get(cid)
        result = run.results.get("readiness") if run is not None else None
        return bool(result is not None and result.passing)

    def liveness_failure(self, cid: str) -> str | None:
        """The failure message if the liveness probe of this container is failing, else None."""
        run = self._running.get(cid)
        result = run.results.get("liveness") if run is not None else None
        if result is not None and result.passing is False:
            return f"liveness probe failed {result.failures} times: {result.last_message}"
        return None

    # --- starting and stopping ------------------------------------------------------------------

    async def ensure(self, obj: Container, cid: str, *, ip: str, started_at: str) -> None:
        """The probes of ``obj`` run against its running task ``cid``; idempotent per instance."""
        liveness, readiness = obj.spec.liveness_probe, obj.spec.readiness_probe
        if self._closed or (liveness is None and readiness is None):
            await self.stop(cid)
            return
        token = instance_token(obj, started_at, ip)
        current = self._running.get(cid)
        if current is not None and current.instance == token:
            return
        await self.stop(cid)
        run = _Running(key=(obj.metadata.namespace, obj.metadata.name), instance=token)
        probes: list[tuple[Kind, Probe | None]] = [("liveness", liveness), ("readiness", readiness)]
        for kind, probe in probes:
            if probe is None:
                continue
            result = ProbeResult(probe.success_threshold, probe.failure_threshold,
                                 passing=True if kind == "liveness" else None)
            run.results[kind] = result
            run.tasks.append(asyncio.create_task(self._loop(run, cid, kind, probe, result, ip=ip),
                                                 name=f"probe {kind} {cid}"))
        self._running[cid] = run

    async def stop(self, cid: str) -> None:
        """End the probes of ``cid`` (and forget their results)."""
        run = self._running.pop(cid, None)
        if run is not None:
            await _cancel(run.tasks)

    async def retain(self, cids: set[str]) -> None:
        """End the probes of every container not in ``cids``."""
        for cid in [c for c in self._running if c not in cids]:
            await self.stop(cid)

    async def aclose(self) -> None:
        self._closed = True
        runs, self._running = list(self._running.values()), {}
        await _cancel([t for run in runs for t in run.tasks])
        if self._session is not None:
            await self._session.close()
            self._session = None

    def running(self) -> dict[str, int]:
        """containerd id -> number of live probe tasks (for tests and debugging)."""
        return {cid: sum(not t.done() for t in run.tasks) for cid, run in self._running.items()}

    # --- the checks -----------------------------------------------------------------------------

    async def _loop(self, run: _Running, cid: str, kind: Kind, probe: Probe, result: ProbeResult, *, ip: str) -> None:
        loop = asyncio.get_running_loop()
        period = max(probe.period_seconds, 1)
        await asyncio.sleep(max(probe.initial_delay_seconds, 0))
        while True:
            started = loop.time()
            try:
                ok, message = await self.check(probe, cid=cid, ip=ip)
            except Exception as e:  # a probe never dies of a check: it is a failed check
                log.exception("%s probe of %s", kind, cid)
                ok, message = False, f"{type(e).__name__}: {e}"
            if result.record(ok, message):
                log.info("%s probe of %s/%s (%s): %s%s", kind, *run.key, cid,
                         "passing" if result.passing else "failing", f" ({message})" if message else "")
                if self._running.get(cid) is run:
                    self.on_change(run.key)
            await asyncio.sleep(max(period - (loop.time() - started), 0.0))

    async def check(self, probe: Probe, *, cid: str, ip: str) -> tuple[bool, str]:
        """One check of ``probe``: (passed, what was seen)."""
        timeout = float(max(probe.timeout_seconds, 1))
        if probe.exec is not None:
            try:
                code = await exec_process(self.client, cid, probe.exec.command, timeout=timeout)
            except ExecTimeout:
                return False, f"command timed out after {timeout:g}s"
            except CorralError as e:
                return False, f"exec failed: {e}"
            return code == 0, f"command exited with code {code}"
        if probe.http_get is not None:
            url = f"http://{ip}:{probe.http_get.port}{probe.http_get.path or '/'}"
            if self._session is None:
                self._session = aiohttp.ClientSession(trust_env=False)
            try:
                async with self._session.get(url, allow_redirects=False,
                                             timeout=aiohttp.ClientTimeout(total=timeout)) as reply:
                    return 200 <= reply.status < 400, f"GET {url}: HTTP {reply.status}"
            except TimeoutError:
                return False, f"GET {url}: timed out after {timeout:g}s"
            except aiohttp.ClientError as e:
                return False, f"GET {url}: {e}"
        if probe.tcp_socket is not None:
            port = probe.tcp_socket.port
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout)
            except TimeoutError:
                return False, f"connect {ip}:{port}: timed out after {timeout:g}s"
            except OSError as e:
                return False, f"connect {ip}:{port}: {e.strerror or e}"
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True, f"connected to {ip}:{port}"
        return False, "probe has no action"


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel and await ``tasks`` (their own errors are theirs; the caller's cancellation still propagates)."""
    for t in tasks:
        t.cancel()
    if tasks:
        await asyncio.wait(tasks)


__all__ = ["ProbeResult", "Prober", "instance_token"]
