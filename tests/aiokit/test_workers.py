"""The one work loop (aiokit/workers.py): what each error type does to its key."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import pytest

from corral.aiokit.queueing import WorkQueue
from corral.aiokit.workers import Outcome, run_workers
from corral.model.errors import Conflict, Invalid, NotFound, PermanentError, TemporaryError, Unavailable


class Recorder:
    """A handler that fails as told, once per planned error, and records when each key was handled."""

    def __init__(self, plan: dict[str, list[Exception]] | None = None) -> None:
        self.plan = plan or {}
        self.calls: list[tuple[str, float]] = []
        self.outcomes: list[Outcome] = []
        self.changed = asyncio.Event()
        self.gate: asyncio.Event | None = None

    async def handle(self, key: str) -> float | None:
        self.calls.append((key, time.monotonic()))
        self.changed.set()
        if self.gate is not None:
            await self.gate.wait()
        errors = self.plan.get(key)
        if errors:
            raise errors.pop(0)
        return None

    def observe(self, outcome: Outcome, _seconds: float) -> None:
        self.outcomes.append(outcome)

    def times(self, key: str) -> list[float]:
        return [t for k, t in self.calls if k == key]

    async def until(self, predicate: object, timeout: float = 5.0) -> None:
        async def wait() -> None:
            while not predicate():  # type: ignore[operator]
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(wait(), timeout)


@pytest.fixture
async def queue() -> AsyncIterator[WorkQueue[str]]:
    q: WorkQueue[str] = WorkQueue(base_delay=0.05, max_delay=1.0)
    yield q
    q.close()


async def running(queue: WorkQueue[str], rec: Recorder, workers: int = 2) -> asyncio.Task[None]:
    return asyncio.create_task(run_workers(queue, rec.handle, name="test", workers=workers, observe=rec.observe))


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_temporary_error_is_retried_after_the_delay_it_names(queue: WorkQueue[str]) -> None:
    rec = Recorder({"a": [TemporaryError("not yet", delay=0.4)]})
    task = await running(queue, rec)
    queue.add("a")
    await rec.until(lambda: len(rec.times("a")) == 2)
    first, second = rec.times("a")
    assert second - first >= 0.38  # the error's delay, not the queue's 0.05 s backoff
    assert rec.outcomes[:2] == [Outcome.RETRY, Outcome.OK]
    await stop(task)


async def test_a_temporary_error_without_a_delay_backs_off_doubling(queue: WorkQueue[str]) -> None:
    rec = Recorder({"a": [Unavailable("down"), Unavailable("down"), Unavailable("down")]})
    task = await running(queue, rec)
    queue.add("a")
    await rec.until(lambda: len(rec.times("a")) == 4)
    t = rec.times("a")
    gaps = [b - a for a, b in itertools.pairwise(t)]
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095 and gaps[2] >= 0.195  # 0.05, 0.1, 0.2
    assert queue.failures("a") == 0  # the success reset it
    await stop(task)


async def test_a_conflict_is_retried_at_once(queue: WorkQueue[str]) -> None:
    queue.base_delay = 5.0  # a backoff would show
    rec = Recorder({"a": [Conflict("someone wrote first")]})
    task = await running(queue, rec)
    queue.add("a")
    await rec.until(lambda: len(rec.times("a")) == 2, timeout=2.0)
    await stop(task)


async def test_a_permanent_error_is_not_retried_until_the_key_is_added_again(queue: WorkQueue[str]) -> None:
    rec = Recorder({"a": [Invalid("spec.image is empty")], "b": [PermanentError("no")]})
    task = await running(queue, rec)
    queue.add("a")
    queue.add("b")
    await rec.until(lambda: len(rec.outcomes) == 2)
    assert rec.outcomes == [Outcome.PERMANENT, Outcome.PERMANENT]
    await asyncio.sleep(0.5)  # ten times the backoff: nothing came back by itself
    assert len(rec.times("a")) == 1 and len(rec.times("b")) == 1
    assert queue.failures("a") == 0
    queue.add("a")  # its object changed
    await rec.until(lambda: len(rec.times("a")) == 2)
    assert rec.outcomes[-1] is Outcome.OK
    await stop(task)


async def test_another_error_is_retried_with_backoff_and_counted_as_an_error(queue: WorkQueue[str]) -> None:
    rec = Recorder({"a": [RuntimeError("a bug"), NotFound("gone")]})
    task = await running(queue, rec)
    queue.add("a")
    await rec.until(lambda: len(rec.times("a")) == 3)
    assert rec.outcomes[:3] == [Outcome.ERROR, Outcome.RETRY, Outcome.OK]
    await stop(task)


async def test_a_key_added_many_times_while_it_waits_is_handled_once(queue: WorkQueue[str]) -> None:
    rec = Recorder()
    for _ in range(5):
        queue.add("a")
    queue.add("b")
    task = await running(queue, rec)
    await rec.until(lambda: len(rec.calls) == 2)
    await asyncio.sleep(0.2)
    assert sorted(k for k, _ in rec.calls) == ["a", "b"]
    await stop(task)


async def test_a_key_is_never_handled_by_two_workers_at_once_and_a_change_meanwhile_is_not_lost(
        queue: WorkQueue[str]) -> None:
    rec = Recorder()
    rec.gate = asyncio.Event()
    task = await running(queue, rec, workers=4)
    queue.add("a")
    await rec.until(lambda: len(rec.calls) == 1)
    queue.add("a")  # changed while being handled
    queue.add("a")
    await asyncio.sleep(0.2)
    assert len(rec.calls) == 1  # the other three workers did not take it
    rec.gate.set()
    await rec.until(lambda: len(rec.calls) == 2)
    await asyncio.sleep(0.2)
    assert len(rec.calls) == 2  # once more for both adds, not twice
    await stop(task)


async def test_workers_are_named_tasks(queue: WorkQueue[str]) -> None:
    rec = Recorder()
    task = await running(queue, rec, workers=3)
    await asyncio.sleep(0.05)
    names = {t.get_name() for t in asyncio.all_tasks()}
    assert {"test-worker-0", "test-worker-1", "test-worker-2"} <= names
    await stop(task)
