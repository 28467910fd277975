"""Volume binding against a real etcd: spec.node first, else the oldest placed container's node; bound once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
import pytest_asyncio

from corral.controllers.base import Informers
from corral.controllers.volumes import VolumeBinder
from corral.model.resources import Container, ContainerSpec, Event, ObjectMeta, Volume, VolumeSource, VolumeSpec
from corral.store.embedded import EmbeddedEtcd
from corral.store.etcd import EtcdStore
from corral.store.objects import Objects
from tests.fixtures.cluster import eventually


@dataclass
class Binder:
    objects: Objects


@pytest_asyncio.fixture(scope="module")
async def binder(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Binder]:
    etcd = EmbeddedEtcd(data_dir=Path(tmp_path_factory.mktemp("binder")) / "etcd")
    await etcd.start()
    store = EtcdStore([etcd.endpoint])
    informers = Informers(store)
    objects = Objects(store)
    controller = VolumeBinder(informers, objects)
    synced = asyncio.Event()
    tasks = [asyncio.create_task(informers.run(synced)), asyncio.create_task(controller.run(synced))]
    try:
        yield Binder(objects)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await store.close()
        await etcd.stop()


def mounting(name: str, volume: str, node: str = "") -> Container:
    return Container(metadata=ObjectMeta(name=name, namespace="default"),
                     spec=ContainerSpec(image="busybox", node=node, volumes=[VolumeSource(name="d", volume=volume)]))


async def bound_to(b: Binder, name: str, node: str) -> None:
    async def check() -> None:
        v = await b.objects.get(Volume, name, namespace="default")
        assert (v.status.phase, v.status.node) == ("Bound", node), v.status

    await eventually(check, timeout=10, what=f"{name} binds to {node}")


async def test_a_pinned_volume_binds_to_its_spec_node_at_once_and_says_so(binder: Binder) -> None:
    await binder.objects.create(Volume(metadata=ObjectMeta(name="pinned", namespace="default"), spec=VolumeSpec(node="n3")))
    await bound_to(binder, "pinned", "n3")

    async def told() -> None:
        page = await binder.objects.store.list("/corral/events/default/")
        events = [msgspec.json.decode(kv.value, type=Event) for kv in page.items]
        assert [e.spec.message for e in events if e.spec.involved_object.name == "pinned"] == [
            "bound to node n3 (its spec.node); its data lives there"]

    await eventually(told, timeout=10, what="a Bound Event")


async def test_a_volume_waits_for_a_placed_container_and_then_keeps_its_node(binder: Binder) -> None:
    await binder.objects.create(Volume(metadata=ObjectMeta(name="lazy", namespace="default")))
    await binder.objects.create(mounting("pending", "lazy"))  # not placed: no binding yet
    await asyncio.sleep(0.5)
    assert (await binder.objects.get(Volume, "lazy", namespace="default")).status.phase == "Pending"
    await binder.objects.create(mounting("placed", "lazy", node="n1"))
    await bound_to(binder, "lazy", "n1")
    await binder.objects.create(mounting("later", "lazy", node="n2"))  # a binding is for good
    await asyncio.sleep(0.5)
    await bound_to(binder, "lazy", "n1")


async def test_a_volume_nobody_created_is_made_and_bound_to_its_first_container_node(binder: Binder) -> None:
    await binder.objects.create(mounting("implicit", "made-for-it", node="n2"))
    await bound_to(binder, "made-for-it", "n2")
