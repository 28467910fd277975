"""Named volumes keep their data on a real 2-worker cluster: bound to one node, placed there, protected.

A container writes a file into a named volume; the Volume binds to its node; containers made
again later (three at once, where the spread policy alone would use both nodes) all land on that
node and read the file. With that node cordoned a new one stays Pending with the volume's reason,
which ``corral why-not`` shows; a container pinned by hand to the other node is refused by that
node's agent (no empty directory is made there). Deleting the Volume is refused while a container
mounts it and allowed after. Sizes: an emptyDir over its sizeLimit, and a container writing a named
volume past its spec.size, are evicted with an Event; the named volume reports its usage.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from corral.cli.nodes import set_unschedulable
from corral.model import errors
from corral.model.resources import (
    Container,
    ContainerSpec,
    ContainerTemplate,
    Deployment,
    DeploymentSpec,
    EmptyDirSource,
    Event,
    LabelSelector,
    ObjectMeta,
    TemplateMeta,
    Volume,
    VolumeMount,
    VolumeSource,
    VolumeSpec,
)
from tests.fixtures.cluster import Cluster, eventually, start_cluster
from tests.fixtures.registry import Registry


@pytest_asyncio.fixture(scope="module")
async def cluster2(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> AsyncIterator[Cluster]:
    async with start_cluster(tmp_path_factory.mktemp("volumes"), registry, workers=2) as c:
        yield c


def mounting(cluster: Cluster, name: str, volume: str, command: str, *, node: str = "") -> Container:
    return Container(metadata=ObjectMeta(name=name),
                     spec=ContainerSpec(image=cluster.image, command=["sh", "-c", command], restart_policy="Never",
                                        termination_grace_period_seconds=1, node=node,
                                        volumes=[VolumeSource(name="d", volume=volume)],
                                        volume_mounts=[VolumeMount(name="d", mount_path="/data")]))


async def delete_and_wait(cluster: Cluster, name: str) -> None:
    with contextlib.suppress(errors.NotFound):
        await cluster.api.delete(Container, name, grace_period=0)

    async def gone() -> None:
        with contextlib.suppress(errors.NotFound):
            await cluster.api.get(Container, name)
            raise AssertionError(f"{name} still there")

    await eventually(gone, timeout=30, what=f"{name} is deleted")


async def corral(cluster: Cluster, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "corral.cli.main", *args, "--server", cluster.plane.url,
        "--token", cluster.plane.admin_token, env={**os.environ, "CORRAL_CA": str(cluster.plane.ca_file)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_a_named_volume_binds_to_its_first_node_and_its_containers_follow_it_there(cluster2: Cluster) -> None:
    api = cluster2.api
    await api.create(Volume(metadata=ObjectMeta(name="data")))
    await api.create(mounting(cluster2, "writer", "data", "echo kept > /data/file"))
    writer = await cluster2.wait_for("writer", lambda c: c.status.phase in ("Succeeded", "Failed"), timeout=90)
    assert writer.status.phase == "Succeeded", writer.status
    home = writer.spec.node

    async def bound() -> Volume:
        v = await api.get(Volume, "data")
        assert v.status.phase == "Bound" and v.status.node == home, v.status
        return v

    await eventually(bound, timeout=30, what="the volume binds to the writer's node")
    await delete_and_wait(cluster2, "writer")

    readers = [f"reader-{i}" for i in range(3)]  # spread alone would put some on the other node
    for name in readers:
        await api.create(mounting(cluster2, name, "data", "cat /data/file"))
    for name in readers:
        done = await cluster2.wait_for(name, lambda c: c.status.phase in ("Succeeded", "Failed"), timeout=90)
        assert done.spec.node == home and done.status.phase == "Succeeded", (done.spec.node, done.status)
        body = await api.request("GET", f"/namespaces/default/containers/{name}/logs")
        assert body.decode().strip() == "kept"
    for name in readers:
        await delete_and_wait(cluster2, name)

    other = next(w for w in cluster2.workers if w.name != home)
    await api.create(mounting(cluster2, "pinned", "data", "cat /data/file", node=other.name))
    pinned = await cluster2.wait_for("pinned", lambda c: c.status.reason == "VolumeNotBound", timeout=60)
    assert pinned.status.phase == "Pending" and f"bound to node {home}" in pinned.status.message
    assert not (other.agent_dir / "volumes" / "named" / "default" / "data").exists()  # no empty volume made
    await delete_and_wait(cluster2, "pinned")


async def test_with_its_volume_node_cordoned_a_container_stays_pending_with_the_reason(cluster2: Cluster) -> None:
    api = cluster2.api
    await api.create(Volume(metadata=ObjectMeta(name="cordoned")))
    await api.create(mounting(cluster2, "first", "cordoned", "echo hi > /data/file"))
    first = await cluster2.wait_for("first", lambda c: c.status.phase == "Succeeded", timeout=90)
    home = first.spec.node
    await eventually(lambda: _bound_to(cluster2, "cordoned", home), timeout=30, what="the volume binds")
    await delete_and_wait(cluster2, "first")
    await set_unschedulable(api, home, True)
    try:
        await api.create(mounting(cluster2, "waiting", "cordoned", "cat /data/file && sleep 3600"))
        reason = f"volume default/cordoned is bound to node {home}"
        waiting = await cluster2.wait_for("waiting", lambda c: c.status.reason == "Unschedulable", timeout=60)
        assert waiting.status.phase == "Pending" and not waiting.spec.node
        assert reason in waiting.status.message, waiting.status.message
        code, out = await corral(cluster2, "why-not", "waiting")
        assert code == 0 and reason in out and "unschedulable (cordoned)" in out, out
    finally:
        await set_unschedulable(api, home, False)
    running = await cluster2.wait_for("waiting", lambda c: c.status.phase == "Running", timeout=90)
    assert running.spec.node == home

    volume = await api.get(Volume, "cordoned")
    volume.spec.node = next(w.name for w in cluster2.workers if w.name != home)
    with pytest.raises(errors.Invalid) as moved:
        await api.update(volume)  # a binding does not move
    assert f"bound to node {home}" in str(moved.value)
    with pytest.raises(errors.Conflict) as refused:
        await api.delete(Volume, "cordoned")
    assert "in use by container waiting" in str(refused.value)
    code, out = await corral(cluster2, "delete", "volume", "cordoned")
    assert code != 0 and 'volume "cordoned" is in use by container waiting' in out, out
    await api.get(Volume, "cordoned")  # still there
    await delete_and_wait(cluster2, "waiting")
    await api.delete(Volume, "cordoned")
    volume_dir = next(w for w in cluster2.workers if w.name == home).agent_dir / "volumes" / "named" / "default" / "cordoned"

    async def gone() -> None:
        assert not volume_dir.exists()

    await eventually(gone, timeout=30, what="the volume's directory goes with the Volume")


async def _bound_to(cluster: Cluster, name: str, node: str) -> None:
    v = await cluster.api.get(Volume, name)
    assert v.status.phase == "Bound" and v.status.node == node, v.status


async def _events_about(cluster: Cluster, name: str) -> list[Event]:
    events, _ = await cluster.api.list(Event)
    return [e for e in events if e.spec.involved_object.name == name]


async def test_an_emptydir_over_its_size_limit_is_evicted_with_an_event(cluster2: Cluster) -> None:
    filler = Container(metadata=ObjectMeta(name="filler"), spec=ContainerSpec(
        image=cluster2.image, command=["sh", "-c", "dd if=/dev/zero of=/scratch/blob bs=1M count=12 && sleep 3600"],
        termination_grace_period_seconds=1,
        volumes=[VolumeSource(name="scratch", empty_dir=EmptyDirSource(size_limit="10Mi"))],
        volume_mounts=[VolumeMount(name="scratch", mount_path="/scratch")]))
    await cluster2.api.create(filler)
    evicted = await cluster2.wait_for("filler", lambda c: c.status.reason == "Evicted", timeout=90)
    assert evicted.status.phase == "Failed"
    assert evicted.status.message == "emptyDir scratch uses 12Mi, over its sizeLimit 10Mi", evicted.status.message

    async def event() -> None:
        assert any(e.spec.reason == "Evicted" and e.spec.message == evicted.status.message
                   for e in await _events_about(cluster2, "filler"))

    await eventually(event, timeout=30, what="an Evicted Event")
    node_dir = next(w for w in cluster2.workers if w.name == evicted.spec.node).agent_dir

    async def stopped() -> None:  # its task is gone and so is its emptyDir
        assert not (node_dir / "volumes" / "emptydir" / evicted.metadata.uid).exists()
        c = await cluster2.api.get(Container, "filler")
        assert c.status.phase == "Failed" and c.status.reason == "Evicted"

    await eventually(stopped, timeout=30, what="the evicted container is stopped and its emptyDir removed")
    await delete_and_wait(cluster2, "filler")


async def test_a_named_volume_reports_its_usage_and_evicts_over_its_size(cluster2: Cluster) -> None:
    api = cluster2.api
    await api.create(Volume(metadata=ObjectMeta(name="small"), spec=VolumeSpec(size="8Mi")))
    await api.create(mounting(cluster2, "grower", "small",
                              "dd if=/dev/zero of=/data/a bs=1M count=4 && sleep 6 && "
                              "dd if=/dev/zero of=/data/b bs=1M count=6 && sleep 3600"))

    async def reported() -> None:
        v = await api.get(Volume, "small")
        assert v.status.phase == "Bound" and v.status.used.startswith("4"), v.status

    await eventually(reported, timeout=60, what="the volume's usage is reported")
    evicted = await cluster2.wait_for("grower", lambda c: c.status.reason == "Evicted", timeout=90)
    assert evicted.status.message == "volume small uses 10Mi, over its size 8Mi", evicted.status.message
    await delete_and_wait(cluster2, "grower")
    await api.delete(Volume, "small")


async def test_replicas_sharing_a_volume_nobody_created_all_run_on_the_node_it_binds_to(cluster2: Cluster) -> None:
    api = cluster2.api
    template = mounting(cluster2, "unused", "shared", "echo $HOSTNAME >> /data/who && sleep 3600")
    template.spec.restart_policy = "Always"
    await api.create(Deployment(metadata=ObjectMeta(name="sharers"), spec=DeploymentSpec(
        replicas=3, selector=LabelSelector(match_labels={"app": "sharers"}),
        template=ContainerTemplate(metadata=TemplateMeta(labels={"app": "sharers"}), spec=template.spec))))

    async def together() -> str:
        items, _ = await api.list(Container)
        mine = [c for c in items if c.metadata.labels.get("app") == "sharers" and not c.metadata.deletion_timestamp]
        assert len(mine) == 3 and all(c.status.phase == "Running" for c in mine), [(c.spec.node, c.status) for c in mine]
        nodes = {c.spec.node for c in mine}
        assert len(nodes) == 1, nodes
        return nodes.pop()

    node = await eventually(together, timeout=120, what="three replicas running on one node")
    volume = await api.get(Volume, "shared")
    assert volume.status.node == node
    await api.delete(Deployment, "sharers")

    async def gone() -> None:
        items, _ = await api.list(Container)
        assert not [c for c in items if c.metadata.labels.get("app") == "sharers"]

    await eventually(gone, timeout=60, what="the replicas are gone")
    await api.delete(Volume, "shared")
