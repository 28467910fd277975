"""Named volumes keep their data on a real 2-worker cluster: bound to one node, placed there, protected.

A container writes a file into a named volume; the Volume binds to its node; containers made
again later (three at once, where the spread policy alone would use both nodes) all land on that
node and read the file. With that node cordoned a new one stays Pending with the volume's reason,
which ``corral why-not`` shows; a container pinned by hand to the other node is refused by that
node's agent (no empty directory is made there). Deleting the Volume is refused while a container
mounts it and allowed after.
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
    ObjectMeta,
    Volume,
    VolumeMount,
    VolumeSource,
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


async def why_not(cluster: Cluster, name: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "corral.cli.main", "why-not", name, "--server", cluster.plane.url,
        "--token", cluster.plane.admin_token, env={**os.environ, "CORRAL_CA": str(cluster.plane.ca_file)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode()
    return out.decode()


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
        out = await why_not(cluster2, "waiting")
        assert reason in out and "unschedulable (cordoned)" in out, out
    finally:
        await set_unschedulable(api, home, False)
    running = await cluster2.wait_for("waiting", lambda c: c.status.phase == "Running", timeout=90)
    assert running.spec.node == home

    with pytest.raises(errors.Conflict) as refused:
        await api.delete(Volume, "cordoned")
    assert "in use by container waiting" in str(refused.value)
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
