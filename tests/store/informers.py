"""What the informer tests share: run an informer for the length of a block, wait for a condition."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from corral.store.informer import Informer


@contextlib.asynccontextmanager
async def running(informer: Informer[Any, Any], *, timeout: float = 10.0) -> AsyncIterator[None]:
    """``informer.run()`` in a task, once it has synced; cancelled when the block ends."""
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.synced.wait(), timeout)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(check: Callable[[], bool], *, timeout: float = 10.0) -> None:
    """Wait until ``check()`` holds (a failed assertion after ``timeout`` seconds)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)



