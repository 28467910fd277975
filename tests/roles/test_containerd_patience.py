"""A worker waits for a containerd whose socket exists (slow or restarting) instead of embedding a second one."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from corral.roles import runtime
from corral.runtime.embedded import EmbeddedContainerd

pytestmark = pytest.mark.containerd


async def test_no_socket_file_means_no_containerd_at_once(tmp_path: Path) -> None:
    t0 = time.monotonic()
    assert not await runtime._answers(str(tmp_path / "none.sock"))
    assert time.monotonic() - t0 < 5


async def test_a_containerd_that_answers_late_on_an_existing_socket_is_waited_for(tmp_path: Path) -> None:
    ctrd = EmbeddedContainerd(tmp_path / "ctrd")
    (tmp_path / "ctrd").mkdir()
    Path(ctrd.socket).touch()  # what a restarting containerd leaves: the path is there, nobody answers yet

    async def start_late() -> None:
        await asyncio.sleep(1.5)
        await ctrd.start()

    starting = asyncio.create_task(start_late())
    try:
        assert await runtime._answers(ctrd.socket)
        await starting
    finally:
        await ctrd.stop(cleanup=True)
