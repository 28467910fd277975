"""Node IPAM against a real etcd: slices handed out once, released with their Node, a full CIDR said so."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from ipaddress import IPv4Network as Net
from pathlib import Path

import msgspec
import pytest
import pytest_asyncio

from corral.controllers.base import Informers
from corral.controllers.podcidrs import ALLOCATION_PREFIX, NodeIpam, blocks_of, free_blocks, full_message
from corral.model.cluster import CLUSTER_CONFIG_KEY, ClusterConfig
from corral.model.errors import NotFound
from corral.model.resources import Event, Node, NodeSpec, ObjectMeta
from corral.store.embedded import EmbeddedEtcd
from corral.store.etcd import EtcdStore
from corral.store.objects import Objects
from tests.fixtures.cluster import eventually


def test_a_podcidr_occupies_its_enclosing_slice_or_every_slice_inside_it() -> None:
    assert blocks_of(Net("10.42.3.128/25"), 24) == [Net("10.42.3.0/24")]
    assert blocks_of(Net("10.42.4.0/23"), 24) == [Net("10.42.4.0/24"), Net("10.42.5.0/24")]


def test_free_slices_skip_the_taken_ones_in_address_order() -> None:
    free = free_blocks(Net("10.42.0.0/22"), 24, {Net("10.42.0.0/24"), Net("10.42.2.0/24")})
    assert list(free) == [Net("10.42.1.0/24"), Net("10.42.3.0/24")]
    assert full_message(Net("10.42.0.0/16"), 24) == "0 free /24s in 10.42.0.0/16"


@dataclass
class Ipam:
    store: EtcdStore
    objects: Objects
    controller: NodeIpam

    async def pod_cidr(self, name: str) -> str:
        return (await self.objects.get(Node, name)).spec.pod_cidr

    async def records(self) -> dict[str, str]:
        page = await self.store.list(ALLOCATION_PREFIX)
        return {kv.key.removeprefix(ALLOCATION_PREFIX): msgspec.json.decode(kv.value)["node"] for kv in page.items}

    async def warnings(self, node: str) -> list[str]:
        page = await self.store.list("/corral/events/")
        events = [msgspec.json.decode(kv.value, type=Event) for kv in page.items]
        return [e.spec.message for e in events if e.spec.involved_object.name == node and e.spec.type == "Warning"]


@pytest_asyncio.fixture(scope="module")
async def ipam(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Ipam]:
    """The controller alone on an etcd of its own, with a cluster CIDR of two /24s."""
    etcd = EmbeddedEtcd(data_dir=Path(tmp_path_factory.mktemp("ipam")) / "etcd")
    await etcd.start()
    store = EtcdStore([etcd.endpoint])
    await store.create(CLUSTER_CONFIG_KEY, msgspec.json.encode(ClusterConfig(cluster_cidr="10.9.0.0/23")))
    informers = Informers(store)
    objects = Objects(store)
    controller = NodeIpam(informers, objects)
    synced = asyncio.Event()
    tasks = [asyncio.create_task(informers.run(synced)), asyncio.create_task(controller.run(synced))]
    try:
        yield Ipam(store, objects, controller)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await store.close()
        await etcd.stop()


async def test_nodes_get_different_slices_and_a_third_hears_the_cidr_is_full(ipam: Ipam) -> None:
    for name in ("a", "b", "c"):
        await ipam.objects.create(Node(metadata=ObjectMeta(name=name)))

    async def assigned() -> None:
        assert {await ipam.pod_cidr("a"), await ipam.pod_cidr("b")} == {"10.9.0.0/24", "10.9.1.0/24"}

    await eventually(assigned, timeout=10, what="a and b get slices")

    async def told() -> None:
        assert await ipam.warnings("c") == ["0 free /24s in 10.9.0.0/23"]

    await eventually(told, timeout=10, what="c hears the CIDR is full")
    assert await ipam.pod_cidr("c") == ""


async def test_a_deleted_node_frees_its_slice_for_a_waiting_one(ipam: Ipam) -> None:
    freed = await ipam.pod_cidr("a")
    await ipam.objects.delete(Node, "a")

    async def reused() -> None:
        assert await ipam.pod_cidr("c") == freed
        assert await ipam.records() == {freed.replace("/", "-"): "c",
                                        (await ipam.pod_cidr("b")).replace("/", "-"): "b"}

    await eventually(reused, timeout=20, what="c gets a's slice")


async def test_a_node_that_comes_with_a_taken_podcidr_keeps_it_and_is_warned(ipam: Ipam) -> None:
    taken = await ipam.pod_cidr("b")
    await ipam.objects.create(Node(metadata=ObjectMeta(name="d"), spec=NodeSpec(pod_cidr=taken)))

    async def warned() -> None:
        assert any("which is node b's" in w for w in await ipam.warnings("d"))

    await eventually(warned, timeout=10, what="d is warned")
    assert await ipam.pod_cidr("d") == taken
    assert (await ipam.records())[taken.replace("/", "-")] == "b"
    with contextlib.suppress(NotFound):
        await ipam.objects.delete(Node, "d")
