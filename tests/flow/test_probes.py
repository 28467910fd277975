"""Probes run by the agent, end to end: readiness gates ``status.ready``; a failing liveness probe restarts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from corral.model import errors
from corral.model.resources import (
    Container,
    ContainerSpec,
    Event,
    ExecAction,
    HTTPGetAction,
    ObjectMeta,
    Probe,
    TCPSocketAction,
)
from corral.runtime.client import Client
from corral.runtime.exec import exec_process
from tests.fixtures.cluster import Cluster, eventually, start_cluster
from tests.fixtures.registry import Registry


@pytest_asyncio.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> AsyncIterator[Cluster]:
    async with start_cluster(tmp_path_factory.mktemp("probes"), registry, workers=1) as c:
        yield c


def fast(action: ExecAction | HTTPGetAction | TCPSocketAction, **thresholds: int) -> Probe:
    """A probe every second (the tests wait for a few periods, not for the defaults' tens of seconds)."""
    kind = {ExecAction: "exec", HTTPGetAction: "http_get", TCPSocketAction: "tcp_socket"}[type(action)]
    return Probe(**{kind: action}, period_seconds=1, timeout_seconds=1, **thresholds)  # type: ignore[arg-type]


async def delete(cluster: Cluster, name: str) -> None:
    with contextlib.suppress(errors.NotFound):
        await cluster.api.delete(Container, name, grace_period=0)

    async def gone() -> None:
        with contextlib.suppress(errors.NotFound):
            await cluster.api.get(Container, name)
            raise AssertionError("still there")

    await eventually(gone, timeout=30, what=f"{name} is deleted")


async def in_container(cluster: Cluster, obj: Container, *command: str) -> int:
    async with Client(cluster.worker.containerd.socket) as client:
        return await exec_process(client, obj.status.container_id, command, timeout=5)


def ready_condition(c: Container) -> str:
    return next((cond.status for cond in c.status.conditions if cond.type == "Ready"), "")


async def test_a_readiness_probe_keeps_a_running_container_unready_until_it_passes_and_again_when_it_fails(
    cluster: Cluster,
) -> None:
    c = Container(metadata=ObjectMeta(name="gated"),
                  spec=ContainerSpec(image=cluster.image, command=["sleep", "600"],
                                     readiness_probe=fast(ExecAction(command=["test", "-e", "/tmp/ready"]))))
    await cluster.api.create(c)
    try:
        obj = await cluster.wait_for("gated", lambda c: c.status.phase == "Running" and bool(c.status.container_id),
                                     timeout=60)
        await asyncio.sleep(3)  # three failed checks
        obj = await cluster.api.get(Container, "gated")
        assert obj.status.phase == "Running" and not obj.status.ready and ready_condition(obj) == "False"

        assert await in_container(cluster, obj, "touch", "/tmp/ready") == 0
        obj = await cluster.wait_for("gated", lambda c: c.status.ready, timeout=15)
        assert ready_condition(obj) == "True" and obj.status.restart_count == 0

        assert await in_container(cluster, obj, "rm", "/tmp/ready") == 0  # failureThreshold 3: unready again
        obj = await cluster.wait_for("gated", lambda c: not c.status.ready, timeout=15)
        assert obj.status.phase == "Running" and ready_condition(obj) == "False"
    finally:
        await delete(cluster, "gated")


async def test_http_and_tcp_probes_reach_the_container_ip_from_the_agent(cluster: Cluster) -> None:
    web = Container(metadata=ObjectMeta(name="probed-web"),
                    spec=ContainerSpec(image=cluster.image, command=["httpd", "-f", "-p", "8080", "-h", "/var/www"],
                                       readiness_probe=fast(HTTPGetAction(port=8080, path="/")),
                                       liveness_probe=fast(TCPSocketAction(port=8080))))
    missing = Container(metadata=ObjectMeta(name="probed-404"),
                        spec=ContainerSpec(image=cluster.image, command=["httpd", "-f", "-p", "8080", "-h", "/var/www"],
                                           readiness_probe=fast(HTTPGetAction(port=8080, path="/no-such-page"))))
    await cluster.api.create(web)
    await cluster.api.create(missing)
    try:
        obj = await cluster.wait_for("probed-web", lambda c: c.status.ready, timeout=60)
        assert ready_condition(obj) == "True"
        gone = await cluster.wait_for("probed-404", lambda c: c.status.phase == "Running", timeout=60)
        await asyncio.sleep(3)
        gone = await cluster.api.get(Container, "probed-404")
        assert not gone.status.ready, "an HTTP 404 is a failed readiness check"
        obj = await cluster.api.get(Container, "probed-web")
        assert obj.status.ready and obj.status.restart_count == 0, "a passing TCP liveness probe restarts nothing"
    finally:
        await delete(cluster, "probed-web")
        await delete(cluster, "probed-404")


async def test_a_failing_liveness_probe_restarts_the_container_and_says_why(cluster: Cluster) -> None:
    script = "touch /tmp/alive; sleep 2; rm /tmp/alive; sleep 600"
    c = Container(metadata=ObjectMeta(name="unlive"),
                  spec=ContainerSpec(image=cluster.image, command=["sh", "-c", script],
                                     liveness_probe=fast(ExecAction(command=["test", "-e", "/tmp/alive"]),
                                                         failure_threshold=2)))
    await cluster.api.create(c)
    try:
        obj = await cluster.wait_for("unlive", lambda c: c.status.restart_count >= 1, timeout=60)
        assert obj.status.exit_code == 137  # SIGKILLed by the agent: sleep 600 would not have ended

        async def events() -> list[Event]:
            items, _ = await cluster.api.list(Event)
            found = [e for e in items if e.spec.involved_object.name == "unlive"]
            reasons = {e.spec.reason for e in found}
            assert {"LivenessProbeFailed", "Restarted"} <= reasons, reasons
            return found

        found = await eventually(events, timeout=15, what="LivenessProbeFailed and Restarted events")
        failed = next(e for e in found if e.spec.reason == "LivenessProbeFailed")
        assert failed.spec.type == "Warning" and "exited with code 1" in failed.spec.message
        restarted = next(e for e in found if e.spec.reason == "Restarted")
        assert "LivenessProbeFailed" in restarted.spec.message
    finally:
        await delete(cluster, "unlive")


async def test_probes_end_with_their_container(cluster: Cluster) -> None:
    """Deleted containers leave no probe behind: the agent logs every flip of a flapping probe, and none
    after the delete."""
    flap = ["sh", "-c", "test $(( $(date +%s) % 2 )) -eq 0"]  # passes on even seconds only
    c = Container(metadata=ObjectMeta(name="short-lived"),
                  spec=ContainerSpec(image=cluster.image, command=["sleep", "600"],
                                     readiness_probe=fast(ExecAction(command=flap), failure_threshold=1)))
    await cluster.api.create(c)
    obj = await cluster.wait_for("short-lived", lambda c: c.status.phase == "Running", timeout=60)
    log: Path = cluster.worker.log
    await eventually(lambda: _contains(log, f"readiness probe of default/short-lived ({obj.status.container_id})"),
                     what="the probe ran")
    await delete(cluster, "short-lived")
    size = log.stat().st_size
    await asyncio.sleep(4)
    assert "probe of default/short-lived" not in log.read_text(errors="ignore")[size:]


async def _contains(path: Path, text: str) -> None:
    assert text in path.read_text(errors="ignore")
