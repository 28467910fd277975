"""Node lifecycle end to end: a partitioned worker fences itself; a lost node's replicas move; drain.

One module-scoped cluster of two real workers with a short grace (3 s; workers fence after 2 s).
node-2 reaches the API only through a TCP proxy that this test runs on 127.0.0.1, so cutting the
proxy partitions node-2 from the control plane while both keep running — nothing but the test's
own processes is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from corral.cli.nodes import drain_node, set_unschedulable
from corral.model import errors
from corral.model.resources import (
    Container,
    ContainerSpec,
    ContainerTemplate,
    Deployment,
    DeploymentSpec,
    LabelSelector,
    Node,
    ObjectMeta,
    TemplateMeta,
)
from corral.runtime import tasks
from corral.runtime.client import Client
from corral.runtime.containers import list_containers
from corral.store.embedded import free_port
from tests.fixtures.cluster import Cluster, Worker, eventually, start_cluster
from tests.fixtures.registry import Registry

GRACE = 3.0
SLEEPER = ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 1; done']


class Proxy:
    """A TCP relay 127.0.0.1:port → target that can be cut (listener and connections closed) and healed."""

    def __init__(self, target: str) -> None:
        host_port = target.split("://", 1)[1]
        self.host, port = host_port.rsplit(":", 1)
        self.target_port = int(port)
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"  # TLS passes through the relay

    async def heal(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True)

    async def cut(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for w in list(self.writers):
            w.transport.abort()
        self.writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers.difference_update((writer, up_writer))


@pytest_asyncio.fixture(scope="module")
async def proxied(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> AsyncIterator[tuple[Cluster, Proxy]]:
    proxies: list[Proxy] = []

    async def server_for(name: str, url: str) -> str:
        if name != "node-2":
            return url
        proxy = Proxy(url)
        await proxy.heal()
        proxies.append(proxy)
        return proxy.url

    try:
        async with start_cluster(tmp_path_factory.mktemp("nodes"), registry, workers=2,
                                 control={"node_grace": GRACE}, worker_args=["--node-grace", str(GRACE)],
                                 server_for=server_for) as c:
            yield c, proxies[0]
    finally:
        for p in proxies:
            await p.cut()


async def running_tasks(worker: Worker, labels: dict[str, str]) -> list[str]:
    """containerd ids of the worker's containers matching ``labels`` whose task runs."""
    out = []
    async with Client(worker.containerd.socket) as client:
        for info in await list_containers(client, labels):
            with contextlib.suppress(errors.NotFound):
                if (await tasks.Task(client, info.id).status()).state == "running":
                    out.append(info.id)
    return out


async def gone(cluster: Cluster, name: str) -> bool:
    try:
        await cluster.api.get(Container, name)
    except errors.NotFound:
        return True
    return False


def ready(n: Node) -> str:
    return next((c.status for c in n.status.conditions if c.type == "Ready"), "")


async def test_a_partitioned_worker_fences_itself_before_its_container_is_released_and_runs_nothing_after_healing(
    proxied: tuple[Cluster, Proxy],
) -> None:
    cluster, proxy = proxied
    node2 = cluster.workers[1]
    await cluster.api.create(Container(metadata=ObjectMeta(name="solo"),
                                       spec=ContainerSpec(image=cluster.image, command=SLEEPER, node="node-2",
                                                          termination_grace_period_seconds=1)))
    obj = await cluster.wait_for("solo", lambda c: c.status.phase == "Running", timeout=60)
    uid = obj.metadata.uid
    assert await running_tasks(node2, {"corral/uid": uid})

    await proxy.cut()
    fenced = countdown = node_message = ""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:  # watch both sides: the API must never have let go while node-2 still runs it
        runs = bool(await running_tasks(node2, {"corral/uid": uid}))
        if not runs and not fenced:
            fenced = f"{loop.time():.1f}"
        try:
            c = await cluster.api.get(Container, "solo")
            if c.status.phase == "Unknown":
                countdown = c.status.message
        except errors.NotFound:
            assert not runs, "the container was released while the partitioned node still ran it"
            break
        node = await cluster.api.get(Node, "node-2")
        if ready(node) == "Unknown":
            node_message = next(c.message for c in node.status.conditions if c.type == "Ready")
        assert loop.time() < deadline, f"solo was not released within 20s (fenced: {fenced!r}, status {c.status})"
        await asyncio.sleep(0.1)
    assert fenced, "node-2 never stopped its task"
    assert countdown.startswith("node node-2 lost; released in"), countdown
    assert "no heartbeat from node-2" in node_message, node_message

    await proxy.heal()
    await cluster.wait_node_ready(node2)

    async def swept() -> None:
        async with Client(node2.containerd.socket) as client:
            assert await list_containers(client, {"corral/uid": uid}) == []

    await eventually(swept, timeout=30, what="node-2 removes the released container after healing")
    assert await running_tasks(node2, {"corral/uid": uid}) == []


async def test_a_lost_workers_replicas_run_on_another_worker_and_drain_moves_them_back(
    proxied: tuple[Cluster, Proxy],
) -> None:
    cluster, _ = proxied
    node2 = cluster.workers[1]
    labels = {"app": "lost"}
    await cluster.api.create(Deployment(
        metadata=ObjectMeta(name="lost"),
        spec=DeploymentSpec(replicas=2, selector=LabelSelector(match_labels=labels),
                            template=ContainerTemplate(metadata=TemplateMeta(labels=labels),
                                                       spec=ContainerSpec(image=cluster.image, command=SLEEPER,
                                                                          termination_grace_period_seconds=1))),
    ))

    async def replicas_on(nodes: set[str]) -> list[Container]:
        items, _ = await cluster.api.list(Container, label_selector="app=lost")
        live = [c for c in items if not c.metadata.deletion_timestamp]
        assert len(live) == 2 and all(c.status.phase == "Running" and c.spec.node in nodes for c in live), \
            [(c.metadata.name, c.spec.node, c.status.phase) for c in items]
        return live

    before = await eventually(lambda: replicas_on({"node-1", "node-2"}), timeout=60, what="two replicas run")
    on_2 = {c.metadata.name for c in before if c.spec.node == "node-2"}

    await node2.stop()  # the node is lost
    after = await eventually(lambda: replicas_on({"node-1"}), timeout=30,
                             what="the lost node's replicas run on node-1")
    assert not on_2 & {c.metadata.name for c in after}, "the lost replicas were replaced, not kept"

    await node2.start()  # it comes back: Ready again, and what was released is removed there
    await cluster.wait_node_ready(node2)
    await eventually(lambda: only_what_is_bound(cluster, node2), timeout=30,
                     what="node-2 runs only what the API binds to it")

    await drain_node(cluster.api, "node-1", force=False, grace=1, timeout=60, echo=False)
    assert (await cluster.api.get(Node, "node-1")).spec.unschedulable
    await eventually(lambda: replicas_on({"node-2"}), timeout=30, what="drain moved the replicas to node-2")
    await set_unschedulable(cluster.api, "node-1", False)
    await cluster.api.delete(Deployment, "lost")


async def only_what_is_bound(cluster: Cluster, worker: Worker) -> None:
    bound, _ = await cluster.api.list(Container, namespace=None, field_selector=f"spec.node={worker.name}")
    uids = {c.metadata.uid for c in bound}
    async with Client(worker.containerd.socket) as client:
        here = {info.labels.get("corral/uid", "") for info in await list_containers(client, {})}
    assert here <= uids, f"{worker.name} still has {here - uids}"
