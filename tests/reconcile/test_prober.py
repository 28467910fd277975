"""The prober without a cluster: thresholds as pure logic; checks and task ownership against the real
containerd (exec) and a server on loopback (HTTP, TCP)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest_asyncio
from aiohttp import web

from corral.model.resources import (
    Container,
    ContainerSpec,
    ExecAction,
    HTTPGetAction,
    ObjectMeta,
    Probe,
    TCPSocketAction,
)
from corral.reconcile.probes import Prober, ProbeResult
from corral.runtime.client import Client
from corral.runtime.containers import create_container, delete_container
from corral.runtime.images import Image
from corral.runtime.spec import build_spec
from corral.runtime.tasks import create_task
from corral.store.embedded import free_port


def test_a_result_flips_only_after_its_threshold_of_consecutive_checks() -> None:
    result = ProbeResult(success_threshold=2, failure_threshold=3)
    assert result.passing is None
    assert not result.record(True) and result.passing is None
    assert result.record(True) and result.passing is True
    assert [result.record(False) for _ in range(2)] == [False, False]
    assert not result.record(True)  # a success resets the failure run
    assert [result.record(False) for _ in range(3)] == [False, False, True] and result.passing is False
    assert not result.record(False)  # no flip while it stays failing


def test_liveness_starts_passing_and_readiness_unknown() -> None:
    liveness = ProbeResult(success_threshold=1, failure_threshold=1, passing=True)
    assert not liveness.record(True)
    assert liveness.record(False) and liveness.passing is False


@pytest_asyncio.fixture
async def sleeper(ctr_client: Client, busybox_image: Image) -> AsyncIterator[str]:
    cid = f"prb-{secrets.token_hex(3)}"
    spec = build_spec(container_id=cid, image_config=busybox_image.config, command=["sleep", "600"])
    try:
        await create_container(ctr_client, id=cid, image=busybox_image, spec=spec)
        task = await create_task(ctr_client, cid)
        await (await task.start()).cancel()
        yield cid
    finally:
        await delete_container(ctr_client, cid)


@pytest_asyncio.fixture
async def loopback_server() -> AsyncIterator[int]:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/healthz", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


async def test_each_kind_of_check_passes_and_fails_on_what_it_sees(
    ctr_client: Client, sleeper: str, loopback_server: int
) -> None:
    prober = Prober(ctr_client, on_change=lambda key: None)
    try:
        async def check(**action: object) -> bool:
            ok, _ = await prober.check(Probe(**action), cid=sleeper, ip="127.0.0.1")  # type: ignore[arg-type]
            return ok

        assert await check(exec=ExecAction(command=["true"]))
        assert not await check(exec=ExecAction(command=["false"]))
        assert not await check(exec=ExecAction(command=["sleep", "5"]), timeout_seconds=1)
        assert await check(http_get=HTTPGetAction(port=loopback_server, path="/healthz"))
        assert not await check(http_get=HTTPGetAction(port=loopback_server, path="/missing"))  # 404
        assert await check(tcp_socket=TCPSocketAction(port=loopback_server))
        assert not await check(tcp_socket=TCPSocketAction(port=free_port()))
    finally:
        await prober.aclose()


async def test_a_flip_calls_back_with_the_key_and_closing_leaves_no_task(ctr_client: Client, sleeper: str) -> None:
    flips: list[tuple[str, str]] = []
    both = asyncio.Event()

    def flipped(key: tuple[str, str]) -> None:
        flips.append(key)
        if len(flips) >= 2:
            both.set()

    prober = Prober(ctr_client, on_change=flipped)
    def fast(*command: str) -> Probe:
        return Probe(exec=ExecAction(command=list(command)), period_seconds=1, failure_threshold=1)

    obj = Container(metadata=ObjectMeta(name="p", namespace="default"),
                    spec=ContainerSpec(readiness_probe=fast("true"), liveness_probe=fast("false")))
    before = set(asyncio.all_tasks())
    try:
        await prober.ensure(obj, sleeper, ip="", started_at="t1")
        await prober.ensure(obj, sleeper, ip="", started_at="t1")  # idempotent per instance
        assert prober.running() == {sleeper: 2}
        await asyncio.wait_for(both.wait(), 10)  # readiness passed, liveness failed
        assert flips == [("default", "p")] * 2 and prober.ready(sleeper)
        assert "exited with code 1" in (prober.liveness_failure(sleeper) or "")

        await prober.ensure(obj, sleeper, ip="", started_at="t2")  # a restarted task: results start over
        assert not prober.ready(sleeper) and prober.liveness_failure(sleeper) is None
        await prober.stop(sleeper)
        assert prober.running() == {}
        await prober.ensure(obj, sleeper, ip="", started_at="t3")
    finally:
        await prober.aclose()
    assert prober.running() == {}
    assert {t for t in asyncio.all_tasks() if t.get_name().startswith("probe ")} - before == set()
