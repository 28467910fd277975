"""DaemonSets and placement rules on hollow nodes, against a real control plane and etcd.

The module runs its own control plane (its hollow nodes must not attract other tests' containers)
and three hollow nodes (``roles/sim.py``: real API traffic, simulated runtime) in zones a, b, c.
What runs is simulated; what is tested is where the scheduler and the controllers put things:
a DaemonSet on every node, following a node that joins and leaves and a template change; required
anti-affinity spreading replicas one per node and explaining, through ``corral why-not``, why the
fourth cannot run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable

import pytest
import pytest_asyncio

from corral.api.client import ApiClient
from corral.api.listwatch import api_informer
from corral.controllers.daemonsets import DAEMON_NODE_LABEL
from corral.controllers.rollout import TEMPLATE_HASH_LABEL
from corral.model.errors import Conflict, Invalid
from corral.model.resources import (
    Affinity,
    Container,
    ContainerAffinity,
    ContainerAffinityTerm,
    ContainerSpec,
    ContainerTemplate,
    DaemonSet,
    DaemonSetSpec,
    Deployment,
    DeploymentSpec,
    EnvVar,
    Event,
    LabelSelector,
    Namespace,
    Node,
    NodeAffinity,
    NodeSelectorRequirement,
    NodeSelectorTerm,
    ObjectMeta,
    PreferredSchedulingTerm,
    PriorityClass,
    PriorityClassSpec,
    ResourceList,
    ResourceRequirements,
    TemplateMeta,
    TopologySpreadConstraint,
)
from corral.roles.control import ControlPlane
from corral.roles.sim import SimConfig, Simulator
from corral.scheduler.framework import CONTAINER_ANTI_AFFINITY
from corral.tls.contexts import client_context
from tests.fixtures.cluster import eventually
from tests.fixtures.control import control_on_own_etcd

IMAGE = "127.0.0.1:5000/busybox:1"
GROUP = "placement"  # the hollow nodes' label sim-group=placement


@pytest_asyncio.fixture(scope="module")
async def plane(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ControlPlane]:
    async with control_on_own_etcd(tmp_path_factory.mktemp("placement")) as p:
        yield p


@contextlib.asynccontextmanager
async def hollow(plane: ControlPlane, prefix: str, count: int, zones: str, group: str = GROUP,
                 stop_delay: float = 0.0) -> AsyncIterator[Simulator]:
    """``count`` hollow nodes ``<prefix>-N``; node i gets zone ``zones[i]`` through its own simulator."""
    sims: list[tuple[Simulator, asyncio.Task[None]]] = []
    try:
        for i in range(count):
            cfg = SimConfig(servers=[plane.url], token=plane.join_token, nodes=1, name_prefix=f"{prefix}{i}",
                            start_delay=0.01, labels={"sim-group": group, "topology.corral.io/zone": zones[i]},
                            cpu="4", memory="8Gi", seed=i, stop_delay=stop_delay)
            sim = Simulator(cfg)
            task = asyncio.create_task(sim.run(), name=f"hollow-{prefix}{i}")
            sims.append((sim, task))
            await asyncio.wait_for(sim.ready.wait(), 30)
        yield sims[0][0]
    finally:
        for sim, task in sims:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await sim.delete_nodes(plane.admin_token)
            await sim.close()


@pytest_asyncio.fixture(scope="module")
async def admin(plane: ControlPlane) -> AsyncIterator[ApiClient]:
    async with ApiClient(plane.url, plane.admin_token, ssl_context=client_context(plane.ca_pem)) as client:
        yield client


@pytest_asyncio.fixture(scope="module")
async def three(plane: ControlPlane) -> AsyncIterator[None]:
    async with hollow(plane, "zn", 3, "abc"):
        yield


async def node_names(admin: ApiClient) -> set[str]:
    nodes, _ = await admin.list(Node, namespace=None, label_selector=f"sim-group={GROUP}")
    return {n.metadata.name for n in nodes}


def daemonset(name: str, version: str = "1") -> DaemonSet:
    return DaemonSet(metadata=ObjectMeta(name=name), spec=DaemonSetSpec(
        selector=LabelSelector(match_labels={"app": name}),
        template=ContainerTemplate(metadata=TemplateMeta(labels={"app": name}), spec=ContainerSpec(
            image=IMAGE, command=["sleep", "3600"], node_selector={"sim-group": GROUP},
            env=[EnvVar(name="VERSION", value=version)]))))


async def daemons(admin: ApiClient, namespace: str, app: str) -> list[Container]:
    items, _ = await admin.list(Container, namespace=namespace, label_selector=f"app={app}")
    return [c for c in items if not c.metadata.deletion_timestamp]


async def test_a_daemonset_runs_one_container_per_node_and_follows_nodes_joining_and_leaving(
        plane: ControlPlane, admin: ApiClient, three: None) -> None:
    ns = "ds"
    await admin.create(Namespace(metadata=ObjectMeta(name=ns)))
    ds = daemonset("logs")
    ds.metadata.namespace = ns
    await admin.create(ds)

    async def one_running_per_node(expected: set[str]) -> list[Container]:
        live = await daemons(admin, ns, "logs")
        assert sorted(c.spec.node for c in live) == sorted(expected), [(c.metadata.name, c.spec.node) for c in live]
        assert all(c.status.phase == "Running" for c in live), [c.status.phase for c in live]
        assert all(c.metadata.labels[DAEMON_NODE_LABEL] == c.spec.node for c in live)
        return live

    nodes = await node_names(admin)
    assert len(nodes) == 3
    live = await eventually(lambda: one_running_per_node(nodes), timeout=30, what="a daemon Running on each node")
    # placed by the scheduler (its Scheduled Events), through a required node affinity to that node
    events, _ = await admin.list(Event, namespace=ns)
    scheduled = {e.spec.involved_object.name for e in events if e.spec.reason == "Scheduled"}
    assert {c.metadata.name for c in live} <= scheduled
    for c in live:
        assert c.spec.affinity and c.spec.affinity.node_affinity
        assert c.spec.affinity.node_affinity.required[0].match_fields[0].values == [c.spec.node]

    async def counted(desired: int) -> None:
        ds = await admin.get(DaemonSet, "logs", namespace=ns)
        st = ds.status
        assert (st.desired_number_scheduled, st.current_number_scheduled, st.updated_number_scheduled) == \
            (desired, desired, desired), st

    await eventually(lambda: counted(3), timeout=20, what="the daemon set counts 3")

    async with hollow(plane, "late", 1, "a"):
        joined = await node_names(admin)
        assert len(joined) == 4
        await eventually(lambda: one_running_per_node(joined), timeout=30, what="a daemon on the node that joined")
    await eventually(lambda: one_running_per_node(nodes), timeout=30, what="the daemon of the node that left is gone")
    await eventually(lambda: counted(3), timeout=20, what="the daemon set counts 3 again")

    # a node that stops matching the selector loses its daemon, and gets it back when it matches again
    first = sorted(nodes)[0]

    async def relabel(group: str) -> None:
        for _ in range(5):
            n = await admin.get(Node, first)
            n.metadata.labels["sim-group"] = group
            try:
                await admin.update(n)
                return
            except Conflict:
                continue

    await relabel("elsewhere")
    try:
        await eventually(lambda: one_running_per_node(nodes - {first}), timeout=30,
                         what="no daemon on the node that stopped matching")
    finally:
        await relabel(GROUP)
    await eventually(lambda: one_running_per_node(nodes), timeout=30, what="the daemon is back on the node")

    # daemons tolerate a cordon: a daemon replaced on a cordoned node is placed there all the same
    async def cordon(flag: bool) -> None:
        for _ in range(5):
            n = await admin.get(Node, first)
            n.spec.unschedulable = flag
            try:
                await admin.update(n)
                return
            except Conflict:
                continue

    await cordon(True)
    try:
        (old,) = [c for c in await daemons(admin, ns, "logs") if c.spec.node == first]
        await admin.delete(Container, old.metadata.name, namespace=ns)

        async def replaced() -> None:
            live = await one_running_per_node(nodes)
            assert old.metadata.name not in {c.metadata.name for c in live}

        await eventually(replaced, timeout=30, what="a new daemon on the cordoned node")
    finally:
        await cordon(False)

    # a template change rolls through every node, never more than maxUnavailable (1) node without a daemon
    worst = 0
    watcher = api_informer(admin, Container, namespace=ns, label_selector="app=logs")

    def look(*_event: object) -> None:
        nonlocal worst
        serving = {c.spec.node for c in watcher.objects.values()
                   if c.status.phase == "Running" and not c.metadata.deletion_timestamp}
        worst = max(worst, len(nodes - serving))

    task = asyncio.create_task(watcher.run())
    try:
        await asyncio.wait_for(watcher.synced.wait(), 10)
        watcher.add_handler(look)
        ds = await admin.get(DaemonSet, "logs", namespace=ns)
        ds.spec.template.spec.env = [EnvVar(name="VERSION", value="2")]
        await admin.update(ds)

        async def rolled() -> None:
            live = await one_running_per_node(nodes)
            assert all(c.spec.env == [EnvVar(name="VERSION", value="2")] for c in live)
            assert len({c.metadata.labels[TEMPLATE_HASH_LABEL] for c in live}) == 1

        await eventually(rolled, timeout=60, what="every daemon replaced by the new template")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert worst == 1, f"{worst} nodes were without a running daemon at once (maxUnavailable 1)"
    await admin.delete(DaemonSet, "logs", namespace=ns)

    async def cascaded() -> None:
        assert not await daemons(admin, ns, "logs")

    await eventually(cascaded, timeout=30, what="the daemons go with their daemon set")


async def corral_cli(plane: ControlPlane, *args: str, timeout: float = 60) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "corral.cli.main", *args, "--server", plane.url, "--token", plane.admin_token,
        env={**os.environ, "CORRAL_CA": str(plane.ca_file)}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_anti_affinity_spreads_three_replicas_over_three_nodes_and_leaves_a_fourth_pending(
        plane: ControlPlane, admin: ApiClient, three: None) -> None:
    ns = "anti"
    await admin.create(Namespace(metadata=ObjectMeta(name=ns)))
    term = ContainerAffinityTerm(label_selector=LabelSelector(match_labels={"app": "web"}),
                                 topology_key="corral.io/hostname")
    d = Deployment(metadata=ObjectMeta(name="web", namespace=ns), spec=DeploymentSpec(
        replicas=4, selector=LabelSelector(match_labels={"app": "web"}),
        template=ContainerTemplate(metadata=TemplateMeta(labels={"app": "web"}), spec=ContainerSpec(
            image=IMAGE, command=["sleep", "3600"], node_selector={"sim-group": GROUP},
            affinity=Affinity(container_anti_affinity=ContainerAffinity(required=[term]))))))
    await admin.create(d)

    async def placed() -> Container:
        live = await daemons(admin, ns, "web")
        assert len(live) == 4
        running = [c for c in live if c.status.phase == "Running"]
        pending = [c for c in live if c.status.phase == "Pending"]
        assert len(running) == 3 and len(pending) == 1, [(c.metadata.name, c.status.phase) for c in live]
        assert {c.spec.node for c in running} == await node_names(admin)
        assert pending[0].status.reason == "Unschedulable" and CONTAINER_ANTI_AFFINITY in pending[0].status.message
        return pending[0]

    pending = await eventually(placed, timeout=30, what="3 replicas on 3 nodes and one Pending")
    code, out = await corral_cli(plane, "why-not", pending.metadata.name, "-n", ns)
    assert code == 0, out
    lines = [line for line in out.splitlines() if line.startswith("zn")]
    assert len(lines) == 3 and all(CONTAINER_ANTI_AFFINITY in line for line in lines), out
    await admin.delete(Deployment, "web", namespace=ns)


async def test_a_high_priority_container_preempts_exactly_one_lower_priority_container(
        plane: ControlPlane, admin: ApiClient) -> None:
    ns = "prio"
    await admin.create(Namespace(metadata=ObjectMeta(name=ns)))
    await admin.create(PriorityClass(metadata=ObjectMeta(name="batch"), spec=PriorityClassSpec(value=10)))
    await admin.create(PriorityClass(metadata=ObjectMeta(name="critical"), spec=PriorityClassSpec(value=1000)))
    with pytest.raises(Invalid) as e:
        await admin.create(Container(metadata=ObjectMeta(name="typo", namespace=ns), spec=ContainerSpec(
            image=IMAGE, priority_class_name="critcal")))
    assert "spec.priorityClassName" in str(e.value.details)

    def ctr(name: str, cpu: str, klass: str) -> Container:
        return Container(metadata=ObjectMeta(name=name, namespace=ns), spec=ContainerSpec(
            image=IMAGE, command=["sleep", "3600"], node_selector={"sim-group": "preempt"},
            priority_class_name=klass, resources=ResourceRequirements(requests=ResourceList(cpu=cpu))))

    async with hollow(plane, "pre", 1, "a", group="preempt"):
        for name in ("low-1", "low-2"):
            made = await admin.create(ctr(name, "1500m", "batch"))
            assert made.spec.priority == 10 and made.spec.preemption_policy == "PreemptLowerPriority"

        async def running(*names: str) -> None:
            for name in names:
                c = await admin.get(Container, name, namespace=ns)
                assert c.status.phase == "Running", (name, c.status.phase, c.status.message)

        await eventually(lambda: running("low-1", "low-2"), timeout=30, what="the low-priority containers run")
        await admin.create(ctr("vip", "2", "critical"))
        await eventually(lambda: running("vip"), timeout=60, what="the high-priority container runs")
        items, _ = await admin.list(Container, namespace=ns)
        left = sorted(c.metadata.name for c in items if not c.metadata.deletion_timestamp)
        assert len(left) == 2 and "vip" in left, left  # exactly one of the two low ones was evicted
        evicted = ({"low-1", "low-2"} - set(left)).pop()
        events, _ = await admin.list(Event, namespace=ns)
        preempted = [e for e in events if e.spec.reason == "Preempted"]
        assert [e.spec.involved_object.name for e in preempted] == [evicted]
        assert "preempted by prio/vip (priority 1000)" in preempted[0].spec.message
        assert any(e.spec.reason == "Preempting" and e.spec.involved_object.name == "vip" for e in events)
        for name in left:
            await admin.delete(Container, name, namespace=ns)


async def test_topology_spread_overrides_a_preference_for_one_zone(
        plane: ControlPlane, admin: ApiClient, three: None) -> None:
    ns = "spread"
    await admin.create(Namespace(metadata=ObjectMeta(name=ns)))
    zones = {n.metadata.labels["topology.corral.io/zone"]: n.metadata.name
             for n in (await admin.list(Node, namespace=None, label_selector=f"sim-group={GROUP}"))[0]}
    for i in range(2):  # two already in zone a
        await admin.create(Container(metadata=ObjectMeta(name=f"pinned-{i}", namespace=ns, labels={"app": "api"}),
                                     spec=ContainerSpec(image=IMAGE, command=["sleep", "3600"], node=zones["a"])))
    prefer_a = Affinity(node_affinity=NodeAffinity(preferred=[PreferredSchedulingTerm(
        weight=100, preference=NodeSelectorTerm(match_expressions=[NodeSelectorRequirement(
            key="topology.corral.io/zone", operator="In", values=["a"])]))]))
    d = Deployment(metadata=ObjectMeta(name="api", namespace=ns), spec=DeploymentSpec(
        replicas=4, selector=LabelSelector(match_labels={"app": "api"}),
        template=ContainerTemplate(metadata=TemplateMeta(labels={"app": "api"}), spec=ContainerSpec(
            image=IMAGE, command=["sleep", "3600"], node_selector={"sim-group": GROUP}, affinity=prefer_a,
            topology_spread_constraints=[TopologySpreadConstraint(
                max_skew=1, topology_key="topology.corral.io/zone",
                label_selector=LabelSelector(match_labels={"app": "api"}))]))))
    await admin.create(d)
    zone_of = {node: zone for zone, node in zones.items()}

    async def spread() -> None:
        live = [c for c in await daemons(admin, ns, "api") if c.status.phase == "Running"]
        assert len(live) == 6
        per_zone: dict[str, int] = {}
        for c in live:
            per_zone[zone_of[c.spec.node]] = per_zone.get(zone_of[c.spec.node], 0) + 1
        assert per_zone == {"a": 2, "b": 2, "c": 2}, per_zone

    await eventually(spread, timeout=30, what="the four replicas in zones b and c, two each")
    await admin.delete(Deployment, "api", namespace=ns)
    for i in range(2):
        await admin.delete(Container, f"pinned-{i}", namespace=ns)


async def test_the_room_a_preemption_makes_is_held_for_the_preemptor(plane: ControlPlane, admin: ApiClient) -> None:
    ns = "hold"
    await admin.create(Namespace(metadata=ObjectMeta(name=ns)))
    for name, value in (("hold-batch", 10), ("hold-critical", 1000)):
        await admin.create(PriorityClass(metadata=ObjectMeta(name=name), spec=PriorityClassSpec(value=value)))

    def ctr(name: str, cpu: str, klass: str) -> Container:
        return Container(metadata=ObjectMeta(name=name, namespace=ns), spec=ContainerSpec(
            image=IMAGE, command=["sleep", "3600"], node_selector={"sim-group": "hold"},
            priority_class_name=klass, resources=ResourceRequirements(requests=ResourceList(cpu=cpu))))

    async def phase(name: str) -> str:
        return (await admin.get(Container, name, namespace=ns)).status.phase

    async with hollow(plane, "hold", 1, "a", group="hold", stop_delay=3.0):  # victims take 3 s to stop
        for name in ("low-1", "low-2"):
            await admin.create(ctr(name, "1500m", "hold-batch"))

        async def lows_run() -> None:
            assert [await phase("low-1"), await phase("low-2")] == ["Running", "Running"]

        await eventually(lows_run, timeout=30, what="the low-priority containers run")
        await admin.create(ctr("vip", "2", "hold-critical"))

        async def preempting() -> None:
            items, _ = await admin.list(Container, namespace=ns)
            assert any(c.metadata.deletion_timestamp for c in items), "no victim yet"

        await eventually(preempting, timeout=30, what="a victim is being deleted")
        # 1 cpu is free right now (4 - 2 x 1.5), but it is held for vip: a lower-priority newcomer waits
        await admin.create(ctr("thief", "1", "hold-batch"))
        await eventually(lambda: _is(phase("vip"), "Running"), timeout=60, what="vip runs")
        thief = await admin.get(Container, "thief", namespace=ns)
        assert thief.status.phase == "Pending" and not thief.spec.node, thief.status
        items, _ = await admin.list(Container, namespace=ns)
        assert sorted(c.metadata.name for c in items if not c.metadata.deletion_timestamp) == \
            sorted(["vip", "thief", *({"low-1", "low-2"} - {e.spec.involved_object.name for e in
                                                              (await admin.list(Event, namespace=ns))[0]
                                                              if e.spec.reason == "Preempted"})])
        for c in items:
            await admin.delete(Container, c.metadata.name, namespace=ns)


async def _is(value: Awaitable[str], want: str) -> None:
    assert await value == want
