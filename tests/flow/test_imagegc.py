"""Image garbage collection and disk pressure on a real node (containerd, the agent, the scheduler).

The worker runs with thresholds any real disk passes (GC from 1 % full down to 0 %, pressure from 1 %),
so the test does not need to fill a disk: GC must remove every unused image, with an Event each, and
never one a container uses; the node must report DiskPressure and keep new containers away (unless
they tolerate it).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from corral.model import errors
from corral.model.resources import Container, ContainerSpec, Event, Node, ObjectMeta, Toleration
from corral.roles.agenthygiene import DISK_PRESSURE, DISK_PRESSURE_TAINT
from corral.runtime import images
from corral.runtime.client import Client
from tests.fixtures.cluster import Cluster, eventually, start_cluster
from tests.fixtures.registry import Registry

UNUSED = "corral.test/unused:1"


@pytest_asyncio.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> AsyncIterator[Cluster]:
    async with start_cluster(tmp_path_factory.mktemp("imagegc"), registry, workers=1,
                             worker_args=["--image-gc-high", "1", "--image-gc-low", "0", "--image-gc-min-age", "1s",
                                          "--disk-pressure", "1"]) as c:
        yield c


def tolerant(name: str, image: str) -> Container:
    return Container(metadata=ObjectMeta(name=name), spec=ContainerSpec(
        image=image, command=["sleep", "600"],
        tolerations=[Toleration(key=DISK_PRESSURE_TAINT, operator="Exists", effect="NoSchedule")]))


async def test_image_gc_removes_an_unused_image_with_an_event_and_never_one_in_use(cluster: Cluster) -> None:
    await cluster.api.create(tolerant("user", cluster.image))
    await cluster.wait_for("user", lambda c: c.status.phase == "Running", timeout=90)
    async with Client(cluster.worker.containerd.socket) as client:
        used = await images.get_image(client, cluster.image)
        await images.create_image(client, UNUSED, digest=used.target_digest, media_type=used.target_media_type,
                                  size=used.target_size)

        async def collected() -> None:
            assert UNUSED not in await images.image_names(client)

        await eventually(collected, timeout=60, what="the unused image is collected")
        assert cluster.image in await images.image_names(client)  # in use: kept, pass after pass

    async def event() -> Event:
        items, _ = await cluster.api.list(Event)
        found = [e for e in items if e.spec.reason == "ImageGCRemoved" and UNUSED in e.spec.message]
        assert found
        return found[0]

    ev = await eventually(event, timeout=30, what="an ImageGCRemoved event")
    assert ev.spec.involved_object.kind == "Node" and ev.spec.involved_object.name == "node-1"
    assert (await cluster.api.get(Container, "user")).status.phase == "Running"
    with contextlib.suppress(errors.NotFound):
        await cluster.api.delete(Container, "user", grace_period=0)


async def test_a_full_disk_is_a_node_condition_that_keeps_new_containers_away(cluster: Cluster) -> None:
    async def pressured() -> Node:
        node = await cluster.api.get(Node, "node-1")
        cond = next((c for c in node.status.conditions if c.type == DISK_PRESSURE), None)
        assert cond is not None and cond.status == "True", node.status.conditions
        assert any(t.key == DISK_PRESSURE_TAINT and t.effect == "NoSchedule" for t in node.spec.taints)
        return node

    node = await eventually(pressured, timeout=60, what="DiskPressure on node-1")
    assert next(c for c in node.status.conditions if c.type == "Ready").status == "True"
    await cluster.api.create(Container(metadata=ObjectMeta(name="plain"),
                                       spec=ContainerSpec(image=cluster.image, command=["sleep", "600"])))
    pending = await cluster.wait_for("plain", lambda c: c.status.reason == "Unschedulable", timeout=30)
    assert "untolerated taint" in pending.status.message and pending.spec.node == ""
    await cluster.api.create(tolerant("tolerant", cluster.image))
    await cluster.wait_for("tolerant", lambda c: c.status.phase == "Running", timeout=90)
    for name in ("plain", "tolerant"):
        with contextlib.suppress(errors.NotFound):
            await cluster.api.delete(Container, name, grace_period=0)
