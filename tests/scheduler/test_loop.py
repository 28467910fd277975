"""The scheduling loop against the real etcd: bindings by CAS, Unschedulable with reasons, retries.

Each test keeps its nodes and containers under a private key prefix so that tests sharing the
session's etcd never see each other's objects.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

import msgspec
import pytest
import pytest_asyncio

from corral.model.resources import Container, Event, Node
from corral.scheduler import loop
from corral.scheduler.loop import Scheduler
from corral.store.base import KeyValue
from corral.store.embedded import EmbeddedEtcd
from corral.store.etcd import EtcdStore
from corral.store.typed import decode, encode
from tests.scheduler.helpers import make_container, make_node


@pytest_asyncio.fixture
async def store(etcd: EmbeddedEtcd) -> AsyncIterator[EtcdStore]:
    s = EtcdStore([etcd.endpoint])
    try:
        yield s
    finally:
        await s.close()


class Cluster:
    """A private corner of etcd: nodes and containers under a unique prefix."""

    def __init__(self, store: EtcdStore) -> None:
        self.store = store
        self.root = f"/test-{uuid.uuid4().hex[:8]}"
        self.namespace = f"t{uuid.uuid4().hex[:8]}"

    def node_key(self, name: str) -> str:
        return f"{self.root}/nodes/{name}"

    def container_key(self, name: str) -> str:
        return f"{self.root}/containers/{self.namespace}/{name}"

    async def add_node(self, node: Node) -> None:
        await self.store.create(self.node_key(node.metadata.name), encode(node))

    async def add_container(self, c: Container) -> int:
        c.metadata.namespace = self.namespace
        return await self.store.create(self.container_key(c.metadata.name), encode(c))

    async def read(self, name: str) -> Container:
        kv = await self.store.get(self.container_key(name))
        assert kv is not None
        return decode(kv, Container)

    async def wait_for(self, name: str, ok: Callable[[Container], bool], *, timeout: float = 10.0) -> Container:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            c = await self.read(name)
            if ok(c) or asyncio.get_running_loop().time() > deadline:
                return c
            await asyncio.sleep(0.02)

    async def wait_for_events(self, count: int, *, timeout: float = 10.0) -> list[KeyValue]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            items = (await self.store.list(f"/corral/events/{self.namespace}/")).items
            if len(items) >= count or asyncio.get_running_loop().time() > deadline:
                return list(items)
            await asyncio.sleep(0.02)

    def scheduler(self, **kw: object) -> Scheduler:
        return Scheduler(self.store, nodes_prefix=f"{self.root}/nodes/",
                         containers_prefix=f"{self.root}/containers/", **kw)  # type: ignore[arg-type]


@asynccontextmanager
async def running(s: Scheduler) -> AsyncIterator[Scheduler]:
    task = asyncio.create_task(s.run(), name="test-scheduler")
    try:
        await asyncio.wait_for(s.synced.wait(), 10)
        yield s
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def test_pending_containers_are_bound_to_ready_nodes_by_compare_and_swap(store: EtcdStore) -> None:
    cl = Cluster(store)
    for name, ready in (("n1", True), ("n2", True), ("n3", False)):
        await cl.add_node(make_node(name, cpu="2", memory="4Gi", ready=ready))
    created = {f"c{i}": await cl.add_container(make_container(f"c{i}", cpu="500m", memory="256Mi")) for i in range(6)}
    async with running(cl.scheduler()) as s:
        bound = [await cl.wait_for(name, lambda c: c.status.phase == "Scheduled") for name in created]
        events = await cl.wait_for_events(6)  # written off the binding path, so maybe a moment later
    for c in bound:
        assert c.spec.node in ("n1", "n2") and c.status.node == c.spec.node
        assert int(c.metadata.resource_version) > created[c.metadata.name]
        assert [(x.type, x.status) for x in c.status.conditions] == [("Scheduled", "True")]
    assert sorted(c.spec.node for c in bound).count("n1") == 3  # spread: 3 and 3
    assert s.stats.bound == 6 and s.stats.conflicts == 0
    assert len(events) == 6 and s.stats.events == 6


async def test_scheduled_events_beyond_the_backlog_are_dropped_counted_and_logged_never_the_bindings(
    store: EtcdStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(loop, "MAX_EVENT_BACKLOG", 2)
    cl = Cluster(store)
    await cl.add_node(make_node("n1", cpu="8", memory="8Gi"))
    names = [f"c{i}" for i in range(6)]
    for name in names:
        await cl.add_container(make_container(name, cpu="100m", memory="64Mi"))
    async with running(cl.scheduler()) as s:
        for name in names:
            assert (await cl.wait_for(name, lambda c: c.status.phase == "Scheduled")).spec.node == "n1"
        await cl.wait_for_events(2)
    assert s.stats.bound == 6 and s.stats.events == 2 and s.stats.events_dropped == 4
    assert "dropping the rest (4 dropped so far)" in caplog.text


async def test_a_container_that_fits_nowhere_says_why_and_is_bound_once_a_bigger_node_joins(store: EtcdStore) -> None:
    cl = Cluster(store)
    await cl.add_node(make_node("small-1", memory="1Gi"))
    await cl.add_node(make_node("small-2", memory="1Gi"))
    await cl.add_node(make_node("lost", memory="64Gi", ready=False))
    await cl.add_container(make_container("big", memory="4Gi"))
    async with running(cl.scheduler(backoff=0.01)) as s:
        c = await cl.wait_for("big", lambda c: c.status.reason == "Unschedulable")
        assert c.status.phase == "Pending" and not c.spec.node
        assert c.status.message == "0/3 nodes available: 2 insufficient memory, 1 not ready"
        assert s.explain(c) == {"lost": "not ready", "small-1": "insufficient memory", "small-2": "insufficient memory"}
        [said] = [e for kv in await cl.wait_for_events(1) if (e := decode(kv, Event)).spec.reason == "FailedScheduling"]
        assert (said.spec.type, said.spec.message, said.spec.involved_object.name, said.spec.source.component) == (
            "Warning", "0/3 nodes available: 2 insufficient memory, 1 not ready", "big", "scheduler")
        await cl.add_node(make_node("big-1", memory="8Gi"))
        c = await cl.wait_for("big", lambda c: c.status.phase == "Scheduled")
    assert c.spec.node == "big-1"
    assert (c.status.reason, c.status.message) == ("", "")
    assert s.stats.status_writes == 1  # the unchanged message was not written again


async def test_a_lost_cas_rereads_the_container_and_binds_the_new_version(store: EtcdStore) -> None:
    cl = Cluster(store)
    s = cl.scheduler(emit_events=False)
    s.on_node(cl.node_key("n1"), make_node("n1"))
    rev = await cl.add_container(make_container("c", cpu="1"))
    stale = await cl.read("c")
    assert int(stale.metadata.resource_version) == rev
    edited = msgspec.structs.replace(stale, metadata=msgspec.structs.replace(stale.metadata, labels={"a": "b"}))
    await store.update(cl.container_key("c"), encode(edited), expected_revision=rev)
    s.on_container(cl.container_key("c"), stale)  # the scheduler has not seen the edit yet
    assert await s.run_once() == 1
    assert s.stats.conflicts == 1 and s.stats.bound == 0
    node = s.cache.node("n1")
    assert node is not None and node.cpu == 0  # the lost assumption was forgotten
    assert await s.run_once() == 1  # the re-read version was queued again
    c = await cl.read("c")
    assert (c.spec.node, c.metadata.labels, s.stats.bound) == ("n1", {"a": "b"}, 1)


async def test_a_pinned_container_is_left_alone_but_its_requests_count(store: EtcdStore) -> None:
    cl = Cluster(store)
    s = cl.scheduler(emit_events=False)
    s.on_node(cl.node_key("n1"), make_node("n1", cpu="1"))
    s.on_node(cl.node_key("n2"), make_node("n2", cpu="1"))
    await cl.add_container(make_container("pinned", cpu="1", node="n1"))
    await cl.add_container(make_container("free", cpu="1"))
    for name in ("pinned", "free"):
        s.on_container(cl.container_key(name), await cl.read(name))
    assert await s.run_once() == 1
    assert (await cl.read("free")).spec.node == "n2"
    assert (await cl.read("pinned")).status.phase == "Pending"
