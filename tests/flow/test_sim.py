"""Hollow nodes against a real control plane: they register, get scheduled onto, and converge.

The module runs its own control plane on its own etcd (so its 50 hollow nodes never attract other
tests' containers), and the simulator in the test's event loop, through the real HTTP API.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import msgspec
import pytest
import pytest_asyncio

from corral.api.client import ApiClient
from corral.model.lifecycle import HEARTBEAT_PREFIX
from corral.model.resources import (
    Container,
    ContainerSpec,
    Namespace,
    Node,
    ObjectMeta,
    ResourceList,
    ResourceRequirements,
)
from corral.roles.control import ControlPlane
from corral.roles.sim import SIMULATED_LABEL, SimConfig, Simulator
from corral.tls.contexts import client_context
from tests.fixtures.cluster import eventually
from tests.fixtures.control import control_on_own_etcd

NODES = 50
CONTAINERS = 500


@pytest_asyncio.fixture(scope="module")
async def plane(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ControlPlane]:
    async with control_on_own_etcd(tmp_path_factory.mktemp("sim")) as p:
        yield p


@contextlib.asynccontextmanager
async def running_sim(plane: ControlPlane, cfg: SimConfig) -> AsyncIterator[Simulator]:
    sim = Simulator(cfg)
    task = asyncio.create_task(sim.run(), name="sim-under-test")
    try:
        waiter = asyncio.create_task(sim.ready.wait())
        done, _ = await asyncio.wait({task, waiter}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task in done:
            task.result()
        assert sim.ready.is_set(), "the hollow nodes did not all register within 60s"
        yield sim
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sim.delete_nodes(plane.admin_token)
        await sim.close()


@pytest_asyncio.fixture(scope="module")
async def sim(plane: ControlPlane) -> AsyncIterator[Simulator]:
    cfg = SimConfig(servers=[plane.url], token=plane.join_token, nodes=NODES, start_delay=0.05,
                    heartbeat_seconds=2.0, cpu="4", memory="8Gi", max_containers=30, seed=1)
    async with running_sim(plane, cfg) as s:
        yield s


@pytest_asyncio.fixture(scope="module")
async def admin(plane: ControlPlane) -> AsyncIterator[ApiClient]:
    async with ApiClient(plane.url, plane.admin_token, ssl_context=client_context(plane.ca_pem)) as client:
        yield client


def small(name: str, namespace: str, **spec: object) -> Container:
    return Container(metadata=ObjectMeta(name=name, namespace=namespace),
                     spec=ContainerSpec(image="127.0.0.1:5000/busybox:1",
                                        resources=ResourceRequirements(requests=ResourceList(cpu="50m", memory="64Mi")),
                                        **spec))  # type: ignore[arg-type]


async def create_many(admin: ApiClient, namespace: str, count: int, **spec: object) -> None:
    await admin.create(Namespace(metadata=ObjectMeta(name=namespace)))
    gate = asyncio.Semaphore(32)

    async def one(i: int) -> None:
        async with gate:
            await admin.create(small(f"c-{i:04}", namespace, **spec))

    await asyncio.gather(*(one(i) for i in range(count)))


async def test_hollow_nodes_register_ready_and_say_they_are_simulated(
        sim: Simulator, admin: ApiClient, plane: ControlPlane) -> None:
    nodes, _ = await admin.list(Node, namespace=None, label_selector=f"{SIMULATED_LABEL}=true")
    assert len(nodes) == NODES
    for node in nodes:
        assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
        assert node.status.node_info.runtime == "simulated"
        assert node.status.allocatable.containers == 30
    names = [n.metadata.name for n in nodes]

    async def beats() -> dict[str, str]:
        out = {}
        for name in names:  # each beat is one small key, as the real agent's (HEARTBEAT_PREFIX)
            kv = await plane.store.get(HEARTBEAT_PREFIX + name)
            out[name] = kv.value.decode() if kv is not None else ""
        return out

    before = await beats()

    async def heartbeats_advance() -> None:
        later = await beats()
        assert all(later[name] > before[name] for name in names)

    await eventually(heartbeats_advance, timeout=10, what="every hollow node heartbeats again")


async def test_a_small_simulation_of_50_nodes_and_500_containers_converges_to_running(
        sim: Simulator, admin: ApiClient) -> None:
    await create_many(admin, "sim-converge", CONTAINERS)

    async def all_running() -> list[Container]:
        items, _ = await admin.list(Container, namespace="sim-converge")
        not_yet = [c for c in items if c.status.phase != "Running"]
        assert len(items) == CONTAINERS and not not_yet, f"{len(not_yet)} not Running yet"
        return items

    items = await eventually(all_running, timeout=90, what=f"{CONTAINERS} containers Running on hollow nodes")
    assert {c.spec.node for c in items} <= set(sim.nodes)
    assert len({c.spec.node for c in items}) > NODES // 2, "the scheduler spreads over the hollow nodes"
    assert all(c.status.ip and c.status.started_at and c.status.container_id.startswith("sim-") for c in items)
    assert len({c.status.ip for c in items}) == CONTAINERS

    for c in items:  # the hollow nodes release deleted containers, so they go
        await admin.delete(Container, c.metadata.name, namespace="sim-converge")

    async def all_gone() -> None:
        left, _ = await admin.list(Container, namespace="sim-converge")
        assert not left, f"{len(left)} containers still there"

    await eventually(all_gone, timeout=60, what="every deleted container released and gone")


async def test_paging_returns_every_object_exactly_once_while_statuses_change(
        sim: Simulator, admin: ApiClient) -> None:
    await create_many(admin, "sim-paging", 300)
    names: list[str] = []
    params = {"limit": "37"}
    pages = 0
    while True:
        body = msgspec.json.decode(await admin.request("GET", "/namespaces/sim-paging/containers", params=params))
        names += [item["metadata"]["name"] for item in body["items"]]
        pages += 1
        token = body["metadata"].get("continue")
        if not token:
            break
        params["continue"] = token
        await asyncio.sleep(0.02)  # let the hollow nodes write statuses between pages
    assert pages == 9
    assert sorted(names) == [f"c-{i:04}" for i in range(300)]


async def test_injected_crashes_fail_containers_that_never_restart(plane: ControlPlane, admin: ApiClient) -> None:
    cfg = SimConfig(servers=[plane.url], token=plane.admin_token, ca_pem=plane.ca_pem, nodes=2, name_prefix="crashy",
                    labels={"sim-group": "crashy"}, start_delay=0.01, crash_after=0.2, fail_rate=1.0, seed=2)
    async with running_sim(plane, cfg):
        await admin.create(Namespace(metadata=ObjectMeta(name="sim-crash")))
        await admin.create(small("doomed", "sim-crash", restart_policy="Never", node_selector={"sim-group": "crashy"}))
        await admin.create(small("phoenix", "sim-crash", node_selector={"sim-group": "crashy"}))

        async def crashed() -> None:
            doomed = await admin.get(Container, "doomed", namespace="sim-crash")
            phoenix = await admin.get(Container, "phoenix", namespace="sim-crash")
            assert doomed.status.phase == "Failed" and doomed.status.exit_code == 1
            assert phoenix.status.phase == "Running" and phoenix.status.restart_count == 1

        await eventually(crashed, timeout=20, what="the injected crashes are reported")
        for name in ("doomed", "phoenix"):
            await admin.delete(Container, name, namespace="sim-crash")
