"""Node hygiene end to end: --max-containers, logs kept after delete (--keep-logs), logs --previous."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from corral.model import errors
from corral.model.resources import Container, ContainerSpec, ObjectMeta
from tests.fixtures.cluster import Cluster, eventually, start_cluster
from tests.fixtures.registry import Registry

KEEP_LOGS_S = 6


@pytest_asyncio.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> AsyncIterator[Cluster]:
    async with start_cluster(tmp_path_factory.mktemp("hygiene"), registry, workers=1,
                             worker_args=["--max-containers", "2", "--keep-logs", f"{KEEP_LOGS_S}s"]) as c:
        yield c


async def corral(cluster: Cluster, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "corral.cli.main", *args,
        env={**os.environ, "CORRAL_SERVER": cluster.plane.url, "CORRAL_TOKEN": cluster.plane.admin_token,
             "CORRAL_CA": str(cluster.plane.ca_file)},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def delete_and_wait(cluster: Cluster, name: str) -> None:
    with contextlib.suppress(errors.NotFound):
        await cluster.api.delete(Container, name, grace_period=0)

    async def gone() -> None:
        with contextlib.suppress(errors.NotFound):
            await cluster.api.get(Container, name)
            raise AssertionError("still there")

    await eventually(gone, timeout=30, what=f"{name} is deleted")


def sleeper(name: str, command: list[str] | None = None, **spec: object) -> Container:
    return Container(metadata=ObjectMeta(name=name),
                     spec=ContainerSpec(image="", command=command or ["sleep", "600"], **spec))  # type: ignore[arg-type]


async def test_a_node_takes_no_more_than_max_containers(cluster: Cluster) -> None:
    names = ["full-1", "full-2", "full-3"]
    try:
        for name in names:
            c = sleeper(name)
            c.spec.image = cluster.image
            await cluster.api.create(c)
        for name in names[:2]:
            await cluster.wait_for(name, lambda c: c.status.phase == "Running", timeout=60)
        pending = await cluster.wait_for("full-3", lambda c: c.status.reason == "Unschedulable", timeout=30)
        assert pending.spec.node == ""
        assert "too many containers" in pending.status.message
        _, out, _ = await corral(cluster, "why-not", "full-3")
        assert "too many containers" in out
        await delete_and_wait(cluster, "full-1")
        await cluster.wait_for("full-3", lambda c: c.status.phase == "Running", timeout=60)
    finally:
        for name in names:
            await delete_and_wait(cluster, name)


async def test_a_deleted_containers_log_is_readable_until_keep_logs_passes(cluster: Cluster) -> None:
    c = sleeper("chatty", ["sh", "-c", "echo first words; echo on stderr >&2; sleep 600"])
    c.spec.image = cluster.image
    await cluster.api.create(c)
    await cluster.wait_for("chatty", lambda c: c.status.phase == "Running", timeout=60)

    async def logged() -> None:
        code, out, err = await corral(cluster, "logs", "chatty")
        assert code == 0 and "first words\n" in out and "on stderr\n" in out, (out, err)

    await eventually(logged, timeout=30, what="the log has the lines")
    await delete_and_wait(cluster, "chatty")
    code, out, err = await corral(cluster, "logs", "chatty")
    assert code == 0, err
    assert "first words\n" in out and "on stderr\n" in out
    kept = cluster.worker.agent_dir / "logs-kept" / "default" / "chatty"
    assert len(list(kept.iterdir())) == 1  # kept on the node, under the container's name

    async def expired() -> None:
        code, _, err = await corral(cluster, "logs", "chatty")
        assert code == 1 and "no node keeps the log of a deleted container" in err, err
        assert not kept.exists()  # the expired log and its empty folders are gone

    await eventually(expired, timeout=KEEP_LOGS_S + 60, what="the kept log expires")


async def test_the_newest_deleted_container_of_a_name_is_the_one_shown(cluster: Cluster) -> None:
    for word in ("older", "newer"):
        c = sleeper("reused", ["sh", "-c", f"echo {word}; sleep 600"])
        c.spec.image = cluster.image
        await cluster.api.create(c)
        await cluster.wait_for("reused", lambda c: c.status.phase == "Running", timeout=60)

        async def logged(word: str = word) -> None:
            _, out, _ = await corral(cluster, "logs", "reused")
            assert out == f"{word}\n"

        await eventually(logged, timeout=30, what=f"reused logs {word}")
        await delete_and_wait(cluster, "reused")
    code, out, err = await corral(cluster, "logs", "reused")
    assert (code, out) == (0, "newer\n"), err


async def test_logs_previous_shows_the_run_before_a_restart(cluster: Cluster) -> None:
    c = sleeper("crashy", ["sh", "-c", "n=$(( $(cat /tmp/n 2>/dev/null || echo 0) + 1 )); echo $n > /tmp/n; "
                                       "echo run number $n; sleep 2; exit 1"])
    c.spec.image = cluster.image
    await cluster.api.create(c)
    try:
        code, _, err = await corral(cluster, "logs", "--previous", "crashy")
        assert code == 1 and "no previous run" in err
        await cluster.wait_for("crashy", lambda c: c.status.restart_count >= 1, timeout=90)

        async def two_runs() -> tuple[str, str]:
            _, current, _ = await corral(cluster, "logs", "crashy")
            code, previous, err = await corral(cluster, "logs", "-p", "crashy")
            assert code == 0, err
            assert current.count("run number") == 1 and previous.count("run number") == 1, (current, previous)
            assert int(previous.split()[-1]) + 1 == int(current.split()[-1])  # (a restart between the two reads retries)
            return current, previous

        await eventually(two_runs, timeout=60, what="a current and its previous run")
    finally:
        await delete_and_wait(cluster, "crashy")
