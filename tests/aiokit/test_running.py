"""run_until_stopped (aiokit/running.py): stop cancels the work, which may clean up; stuck work is named."""

from __future__ import annotations

import asyncio
import logging

import pytest

from corral.aiokit.running import run_until_stopped


async def test_stop_cancels_the_work_and_lets_its_cleanup_await() -> None:
    stop, cleaned = asyncio.Event(), asyncio.Event()

    async def work() -> str:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.05)  # asynchronous cleanup runs under cancellation
            cleaned.set()
        return "never"

    asyncio.get_running_loop().call_later(0.05, stop.set)
    assert await run_until_stopped(work(), stop=stop, name="test-work") is None
    assert cleaned.is_set()


async def test_work_that_ends_gives_its_result_and_work_that_fails_raises() -> None:
    async def done() -> int:
        return 7

    async def fails() -> None:
        raise RuntimeError("broken")

    assert await run_until_stopped(done(), stop=asyncio.Event(), name="ok") == 7
    with pytest.raises(RuntimeError, match="broken"):
        await run_until_stopped(fails(), stop=asyncio.Event(), name="bad")


async def test_work_stuck_past_the_drain_deadline_is_logged_by_name_and_left(caplog: pytest.LogCaptureFixture) -> None:
    stop, release = asyncio.Event(), asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.shield(release.wait())  # a cleanup that hangs

    async def helper() -> None:
        await release.wait()

    helper_task = asyncio.create_task(helper(), name="the-stuck-helper")
    stop.set()
    with caplog.at_level(logging.ERROR, logger="corral.aiokit.running"):
        assert await asyncio.wait_for(run_until_stopped(stubborn(), stop=stop, name="stubborn", drain=0.2), 5) is None
    assert "stubborn did not finish within" in caplog.text and "the-stuck-helper" in caplog.text
    release.set()
    await helper_task
    await asyncio.sleep(0)  # the stubborn task finishes its cleanup now
