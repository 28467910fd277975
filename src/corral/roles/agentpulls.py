"""Pull progress in a container's status (``status.pull``) while its node pulls the image.

The agent wraps one reconcile pass of a container in ``reporting_pulls``. The pass hands
``report.progress`` to the image pull (runtime.pull calls it with a ``PullProgress`` per blob);
that callback only updates a tally in memory (``PullTally``). The first progress starts a writer
task for the pass, which writes the tally as ``status.pull`` through the API when it changed: the
first time at once, then at most once every ``interval`` seconds, so a pull of any size costs a
handful of status writes, and a pass whose image is present (no progress at all) costs nothing — no
write, no task.

Each write is a compare-and-swap on the version the one before returned (the first on the version
the pass started from), so it never overwrites a change made meanwhile; a conflict ends the
reporting for that pass (the pass's own status write meets the same conflict and is retried as any
other). When the pass ends the writer is stopped after the write it may have in flight, and
``report.written`` is the last version written here: the agent writes the pass's status over that
version, without ``pull``, which clears it. A pass that fails (an error the agent retries) writes no
status of its own, so the report clears ``status.pull`` itself then: progress never stays behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import msgspec

from corral.api.client import ApiClient
from corral.model import errors
from corral.model.resources import MAX_PULL_LAYERS, Container, PullLayer, PullStatus
from corral.runtime.pull import PullProgress

log = logging.getLogger(__name__)

WRITE_INTERVAL = 0.5  # seconds between two progress writes of one container (at most 2 a second)


class PullTally:
    """The blobs of one pull as reported so far, in the order they were first seen."""

    def __init__(self) -> None:
        self.image = ""
        self._layers: dict[str, PullLayer] = {}
        self.changed = False

    def add(self, event: PullProgress) -> None:
        self.image = event.ref
        layer = self._layers.get(event.digest)
        if layer is None:
            if len(self._layers) >= MAX_PULL_LAYERS:
                return
            layer = self._layers[event.digest] = PullLayer(digest=event.digest)
        done, size = max(0, event.done), max(0, event.total)
        if (layer.done, layer.size) != (done, size):
            layer.done, layer.size = done, size
            self.changed = True

    def status(self) -> PullStatus:
        layers = [PullLayer(digest=x.digest, size=x.size, done=x.done) for x in self._layers.values()]
        return PullStatus(image=self.image, layers=layers, bytes_done=sum(x.done for x in layers),
                          bytes_total=sum(x.size for x in layers))


class PullReport:
    """One reconcile pass's reporting: ``progress`` for the pull; the writer task starts with the
    first progress (a pass that pulls nothing starts none)."""

    def __init__(self, api: ApiClient, obj: Container, *, interval: float = WRITE_INTERVAL,
                 on_written: Callable[[Container], None] = lambda _obj: None) -> None:
        self.api = api
        self.obj = obj
        self.interval = interval
        self.on_written = on_written
        self.tally = PullTally()
        self.written: Container | None = None  # the last version this report wrote
        self._wake = asyncio.Event()  # progress to write, or the end of the pass
        self._stopped = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    def progress(self, event: PullProgress) -> None:
        self.tally.add(event)
        if not self.tally.changed or self._stopped.is_set():
            return
        if self._writer is None:
            meta = self.obj.metadata
            self._writer = asyncio.get_running_loop().create_task(
                self._run(), name=f"pull progress {meta.namespace}/{meta.name}")
        self._wake.set()

    async def finish(self) -> None:
        """End the reporting after the write in flight, if any (so ``written`` is what the server has)."""
        self._stopped.set()
        self._wake.set()
        if self._writer is not None:
            await self._writer

    async def cancel(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    async def clear(self) -> None:
        """Remove ``status.pull`` if the status has one (best effort): a pass that failed after
        progress was written writes no status of its own, and its retries, the image present by
        then, would never write progress again."""
        base = self.written or self.obj
        if base.status.pull is None:
            return
        meta = self.obj.metadata
        try:
            written = await self.api.update_status(
                msgspec.structs.replace(base, status=msgspec.structs.replace(base.status, pull=None)))
        except Exception as e:
            log.info("pull progress of %s/%s not cleared: %s", meta.namespace, meta.name, e)
            return
        self.written = written
        self.on_written(written)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._stopped.is_set():
                return
            self.tally.changed = False
            if not await self._write():
                return
            with contextlib.suppress(TimeoutError):  # the rate limit; the end of the pass cuts it short
                async with asyncio.timeout(self.interval):
                    await self._stopped.wait()

    async def _write(self) -> bool:
        base = self.written or self.obj
        meta = self.obj.metadata
        status = msgspec.structs.replace(base.status, pull=self.tally.status())
        try:
            written = await self.api.update_status(msgspec.structs.replace(base, status=status))
        except errors.Conflict:
            log.debug("pull progress of %s/%s: the container changed; no more progress this pass",
                      meta.namespace, meta.name)
            return False
        except errors.CorralError as e:  # progress is a courtesy: the pull goes on without it
            log.info("pull progress of %s/%s not written: %s", meta.namespace, meta.name, e)
            return False
        except Exception:
            log.exception("pull progress of %s/%s failed", meta.namespace, meta.name)
            return False
        self.written = written
        self.on_written(written)
        return True


@contextlib.asynccontextmanager
async def reporting_pulls(api: ApiClient, obj: Container, *, interval: float = WRITE_INTERVAL,
                          on_written: Callable[[Container], None] = lambda _obj: None) -> AsyncIterator[PullReport]:
    """A ``PullReport`` for one pass over ``obj``, its writer (if a pull started one) ended with the block."""
    report = PullReport(api, obj, interval=interval, on_written=on_written)
    try:
        yield report
    except Exception:  # the pass failed (and is retried): no stale progress is left in the status
        await report.cancel()
        await report.clear()
        raise
    except BaseException:
        await report.cancel()
        raise
    await report.finish()
