"""What the agent reports about a container comes from the world, so an agent restart does not change it;
and what it reports again and again is one Event with a count."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from corral.model.errors import Conflict
from corral.model.resources import Container, ContainerSpec, Event, ObjectMeta, ResourceList, ResourceRequirements
from corral.reconcile.naming import LABEL_OOM_KILLED, LABEL_UID
from corral.runtime.client import Client
from corral.runtime.containers import list_containers
from corral.runtime.tasks import Task
from tests.fixtures.cluster import Cluster, eventually, start_cluster
from tests.fixtures.registry import Registry

# tail keeps its whole newline-free input in memory: it grows past the limit and is OOM-killed
HOG = ["sh", "-c", "head -c 200000000 /dev/zero | tail"]


@pytest_asyncio.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> AsyncIterator[Cluster]:
    # a long node grace: an agent down for a while here is restarting, not lost
    async with start_cluster(tmp_path_factory.mktemp("restart-state"), registry, workers=1,
                             control={"node_grace": 120.0}) as c:
        yield c


def container(name: str, image: str, command: list[str], *, memory: str = "", restart: str = "Never") -> Container:
    return Container(metadata=ObjectMeta(name=name),
                     spec=ContainerSpec(image=image, command=command, restart_policy=restart,  # type: ignore[arg-type]
                                        termination_grace_period_seconds=1,
                                        resources=ResourceRequirements(limits=ResourceList(memory=memory))))


async def poke(cluster: Cluster, name: str) -> None:
    """Change the container (a label), so the agent syncs it once more."""
    for _ in range(20):
        obj = await cluster.api.get(Container, name)
        obj.metadata.labels = {**obj.metadata.labels, "poked": "yes"}
        try:
            await cluster.api.update(obj)
            return
        except Conflict:  # the agent wrote its status meanwhile
            continue
    raise AssertionError(f"could not label {name}")


async def test_an_oom_killed_containers_reason_survives_an_agent_restart(cluster: Cluster) -> None:
    await cluster.api.create(container("hog", cluster.image, HOG, memory="16Mi"))
    before = await cluster.wait_for("hog", lambda c: c.status.phase == "Failed", timeout=90)
    assert (before.status.reason, before.status.exit_code) == ("OOMKilled", 137), before.status
    async with Client(cluster.worker.containerd.socket) as client:  # where the fact is kept: containerd's record
        [record] = await list_containers(client, {LABEL_UID: before.metadata.uid})
        assert record.labels.get(LABEL_OOM_KILLED) == "true"

    await cluster.worker.stop()
    await cluster.worker.start()
    # the restarted agent has synced every container it found once a container created after it came up runs
    await cluster.api.create(container("canary", cluster.image, ["sleep", "600"]))
    await cluster.wait_for("canary", lambda c: c.status.phase == "Running", timeout=90)
    # and a change of the hog makes it sync that one again, for certain
    await poke(cluster, "hog")
    after = await cluster.wait_for("hog", lambda c: c.metadata.labels.get("poked") == "yes", timeout=30)
    for _ in range(20):  # a status write of the agent would follow the label change within a second or two
        after = await cluster.api.get(Container, "hog")
        assert (after.status.reason, after.status.exit_code) == ("OOMKilled", 137), after.status
        assert after.status.finished_at == before.status.finished_at
        await asyncio.sleep(0.1)


async def test_an_oom_kill_while_the_agent_is_down_is_still_reported_as_oomkilled(cluster: Cluster) -> None:
    # the OOM comes while no agent listens to containerd's events: the cgroup's count says it
    await cluster.api.create(container("late-hog", cluster.image, ["sh", "-c", "sleep 6; " + HOG[2]], memory="16Mi"))
    running = await cluster.wait_for("late-hog", lambda c: c.status.phase == "Running", timeout=90)
    await cluster.worker.stop()
    try:
        async with Client(cluster.worker.containerd.socket) as client:
            task = Task(client, running.status.container_id)
            await asyncio.wait_for(task.wait(), 60)
            [record] = await list_containers(client, {LABEL_UID: running.metadata.uid})
            assert not record.labels.get(LABEL_OOM_KILLED)  # nobody heard the event
    finally:
        await cluster.worker.start()
    after = await cluster.wait_for("late-hog", lambda c: c.status.phase == "Failed", timeout=90)
    assert (after.status.reason, after.status.exit_code) == ("OOMKilled", 137), after.status


async def test_a_new_run_after_an_oom_kill_no_longer_says_oomkilled_once_it_runs(cluster: Cluster) -> None:
    # OOM-killed, restarted by its policy: the label goes before the next start
    await cluster.api.create(container("once-hog", cluster.image,
                                       ["sh", "-c", "test -e /tmp/again && exec sleep 600; touch /tmp/again; "
                                                    "head -c 200000000 /dev/zero | tail"],
                                       memory="16Mi", restart="OnFailure"))
    ran = await cluster.wait_for("once-hog", lambda c: c.status.restart_count >= 1 and c.status.phase == "Running"
                                 and not c.status.reason, timeout=90)
    async with Client(cluster.worker.containerd.socket) as client:
        [record] = await list_containers(client, {LABEL_UID: ran.metadata.uid})
        assert not record.labels.get(LABEL_OOM_KILLED)
    # the pass that restarted it said why the last run ended; the next pass reads the world again
    await poke(cluster, "once-hog")
    await cluster.wait_for("once-hog", lambda c: c.status.phase == "Running" and "OOMKilled" not in c.status.message
                           and c.status.restart_count == ran.status.restart_count, timeout=30)


async def test_an_agents_repeated_warning_is_one_event_with_a_count(cluster: Cluster) -> None:
    missing = f"{cluster.registry.host}/no-such-image:1"
    await cluster.api.create(container("unpullable", missing, ["true"]))

    async def counted() -> None:
        events, _ = await cluster.api.list(Event, namespace="default", field_selector="reason=ImagePullFailed")
        mine = [e for e in events if e.spec.involved_object.name == "unpullable"]
        assert len(mine) == 1 and mine[0].spec.count >= 2, [(e.metadata.name, e.spec.count) for e in mine]
        assert mine[0].spec.last_timestamp > mine[0].spec.first_timestamp
        assert mine[0].spec.source.node == cluster.worker.name

    await eventually(counted, timeout=90, what="one ImagePullFailed Event counting the agent's retries")


async def test_a_failed_pull_backs_off_and_is_not_tried_again_before_its_time(cluster: Cluster) -> None:
    missing = f"{cluster.registry.host}/no-such-image:2"
    await cluster.api.create(container("backing-off", missing, ["true"]))

    async def failed_pulls() -> int:
        events, _ = await cluster.api.list(Event, namespace="default", field_selector="reason=ImagePullFailed")
        return sum(e.spec.count for e in events if e.spec.involved_object.name == "backing-off")

    try:
        await cluster.wait_for("backing-off", lambda c: c.status.reason.startswith("ImagePull"), timeout=60)
        await poke(cluster, "backing-off")  # a pass within the 10 s back-off: said, not pulled
        c = await cluster.wait_for("backing-off", lambda c: c.status.reason == "ImagePullBackOff", timeout=8)
        assert c.status.phase == "Pending"
        assert c.status.message.startswith(f"back-off pulling {missing} after 1 failed pull: pulling {missing}: ")
        assert await failed_pulls() == 1

        async def pulled_again() -> None:  # once the 10 s are over
            assert await failed_pulls() == 2

        await eventually(pulled_again, timeout=30, what="the second pull, after the back-off")
    finally:
        await cluster.api.delete(Container, "backing-off", grace_period=0)
