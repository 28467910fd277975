import asyncio

from corral.aiokit.queueing import WorkQueue


async def test_a_key_added_many_times_while_waiting_is_worked_once() -> None:
    q: WorkQueue[str] = WorkQueue()
    for _ in range(5):
        q.add("a")
    q.add("b")
    assert [await q.get(), await q.get()] == ["a", "b"]
    assert len(q) == 0


async def test_a_key_added_while_being_worked_comes_back_after_done() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    key = await q.get()
    q.add("a")
    assert len(q) == 0  # not handed to a second worker
    q.done(key)
    assert await asyncio.wait_for(q.get(), 1) == "a"


async def test_retries_back_off_exponentially_and_forget_resets() -> None:
    q: WorkQueue[str] = WorkQueue(base_delay=0.01, max_delay=0.04)
    assert [q.retry("a") for _ in range(4)] == [0.01, 0.02, 0.04, 0.04]
    q.forget("a")
    assert q.retry("a") == 0.01
    assert await asyncio.wait_for(q.get(), 1) == "a"
    q.close()
