"""The long-running roles run on uvloop when it is installed, and on asyncio's loop when told not to."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from corral.aiokit import loops


async def loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_a_role_runs_on_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CORRAL_UVLOOP", raising=False)
    assert issubclass(loops.run(loop_type()), uvloop.Loop)


def test_corral_uvloop_0_keeps_asyncios_own_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_UVLOOP", "0")
    assert not issubclass(loops.run(loop_type()), uvloop.Loop)
