"""Crash safety: the agent or containerd dies at any moment; the next pass finishes or undoes the work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from corral.model.resources import Container, ContainerSpec, Event, ObjectMeta
from corral.reconcile.naming import netns_prefix
from corral.runtime.client import Client
from corral.runtime.containers import list_containers
from corral.runtime.tasks import Task
from tests.fixtures.cluster import Cluster, eventually, start_cluster
from tests.fixtures.registry import Registry


@pytest_asyncio.fixture(scope="module")
async def crashy(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> AsyncIterator[Cluster]:
    async with start_cluster(tmp_path_factory.mktemp("crashy"), registry, workers=1) as c:
        yield c


def sleeper(name: str, image: str) -> Container:
    return Container(metadata=ObjectMeta(name=name, labels={"test": "crash"}),
                     spec=ContainerSpec(image=image, command=["sleep", "600"], termination_grace_period_seconds=1))


async def running_tasks(socket: str) -> dict[str, list[str]]:
    """corral/name → the containerd ids of that name whose task is running."""
    out: dict[str, list[str]] = {}
    async with Client(socket) as client:
        for info in await list_containers(client, {"corral/node": "node-1"}):
            try:
                state = (await Task(client, info.id).status()).state
            except Exception:
                continue
            if state == "running":
                out.setdefault(info.labels["corral/name"], []).append(info.id)
    return out


async def test_killing_the_agent_while_it_creates_20_containers_leaves_exactly_20_running(crashy: Cluster) -> None:
    names = [f"crash-{i:02d}" for i in range(20)]
    await asyncio.gather(*(crashy.api.create(sleeper(n, crashy.image)) for n in names))
    worker = crashy.worker
    await asyncio.sleep(1.0)  # somewhere in the middle of creating them
    await worker.kill()
    await worker.start()

    async def all_running() -> None:
        items, _ = await crashy.api.list(Container, label_selector="test=crash")
        assert len(items) == 20
        assert all(c.status.phase == "Running" and c.status.ip for c in items), [
            (c.metadata.name, c.status.phase) for c in items if c.status.phase != "Running"]

    try:
        await eventually(all_running, timeout=90, what="all 20 Running after the agent was killed")
    except AssertionError as e:  # what the node said about those that did not get there
        items, _ = await crashy.api.list(Container, label_selector="test=crash")
        stuck = [c.metadata.name for c in items if c.status.phase != "Running"]
        raise AssertionError(f"{e}\n{worker.lines_about(stuck)}") from None
    tasks = await running_tasks(worker.containerd.socket)
    assert sorted(tasks) == names
    assert all(len(ids) == 1 for ids in tasks.values()), tasks  # none duplicated
    ips = [c.status.ip for c in (await crashy.api.list(Container, label_selector="test=crash"))[0]]
    assert len(set(ips)) == 20

    await asyncio.gather(*(crashy.api.delete(Container, n, grace_period=1) for n in names))

    async def nothing_left() -> None:
        items, _ = await crashy.api.list(Container, label_selector="test=crash")
        assert items == []
        assert await running_tasks(worker.containerd.socket) == {}
        netns = [p.name for p in Path("/var/run/netns").iterdir() if p.name.startswith("corral-")] \
            if Path("/var/run/netns").exists() else []
        records = list((worker.agent_dir / "network").glob("*.json")) if (worker.agent_dir / "network").exists() else []
        assert records == [], records
        mine = {c.metadata.uid for c in (await crashy.api.list(Container, namespace=None))[0]}
        prefix = netns_prefix(worker.agent_dir)
        assert not [n for n in netns if n.startswith(prefix) and n.removeprefix(prefix) not in mine]

    await eventually(nothing_left, timeout=60, what="nothing left after deleting them")


async def test_leftovers_with_no_desired_container_are_removed_with_an_event(crashy: Cluster) -> None:
    await crashy.api.create(sleeper("doomed", crashy.image))
    obj = await crashy.wait_for("doomed", lambda c: c.status.phase == "Running", timeout=60)
    worker = crashy.worker
    await worker.kill()
    # while the agent is down, the container is removed from the API behind its back
    obj.metadata.finalizers = []
    await crashy.api.update(obj)
    await crashy.api.delete(Container, "doomed")
    await worker.start()

    async def removed() -> None:
        assert "doomed" not in await running_tasks(worker.containerd.socket)
        events, _ = await crashy.api.list(Event, field_selector="reason=RemovedOrphan")
        assert any(e.spec.involved_object.uid == obj.metadata.uid for e in events)

    await eventually(removed, timeout=60, what="the orphan is removed and reported")


async def test_a_container_keeps_running_across_a_containerd_restart_and_is_adopted(crashy: Cluster) -> None:
    await crashy.api.create(sleeper("survivor", crashy.image))
    before = await crashy.wait_for("survivor", lambda c: c.status.phase == "Running", timeout=60)
    worker = crashy.worker
    await worker.containerd.kill()
    await worker.containerd.start()
    await asyncio.sleep(2.0)
    tasks = await running_tasks(worker.containerd.socket)
    assert tasks.get("survivor") == [before.status.container_id]
    after = await crashy.api.get(Container, "survivor")
    assert after.status.restart_count == 0 and after.status.started_at == before.status.started_at
    # and the agent still works against the restarted containerd
    await crashy.api.create(sleeper("newcomer", crashy.image))
    await crashy.wait_for("newcomer", lambda c: c.status.phase == "Running", timeout=60)
    for n in ("survivor", "newcomer"):
        await crashy.api.delete(Container, n, grace_period=1)
