"""Chaos on a highly available cluster: three control instances (a 3-member embedded etcd) and two workers,
each on a host of its own (a network namespace on a LAN bridge), while work goes on.

Faults, one at a time at a random moment of a round of work (tests/flow/chaoswork.py: a Deployment
scales and rolls, single containers come and go):

- ``agent``: kill -9 one worker's ``serve --role=worker`` alone (its containerd and containers stay),
  started again at once, as systemd would (should its start take longer than the node grace on a
  loaded machine, its containers are released and replaced, as after a cut: that is allowed);
- ``containerd``: kill -9 one worker's containerd (the shims, and so the containers, outlive it),
  started again after a moment, as systemd would;
- ``api instance``: kill -9 one control instance of the three (its etcd member goes with it), started
  again on its data dir;
- ``leader``: the same for the instance that runs the scheduler and controllers (``/metrics`` says
  ``corral_leader_is_leader 1``);
- ``etcd member``: kill -9 one instance's embedded etcd alone (one member of three; its instance's
  supervisor starts it again);
- ``agent restarts cut off``: as ``network cut`` below, but the agent is killed first and started
  again once the uplink is down: an agent that cannot register must fence all the same (the fence
  is armed from its start), not keep the containers of its previous run going while they are
  replaced elsewhere;
- ``network cut``: the uplink (its namespace's ``eth0``) of a worker that runs tasks down. Its agent
  must fence (kill every task it runs) within ``--fence-after`` (4 s; measured from containerd), before the control
  plane releases its containers (node grace 5 s + 3 s), and its containers must be Running elsewhere
  — the Deployment's replicas replaced, single containers released from it with a ``Released`` Event
  (gone by design). Then the link comes up again; the healed worker must bring none of its fenced
  containers back (sampled every 0.1 s for 5 s after the heal, then by the invariants: nothing
  duplicated, no released single recreated).

After every fault the invariants are checked from the world, not from the API alone: every
acknowledged write kept; every container the API has Running with exactly one running containerd
task, on its own node's containerd and on no other, and no running task the API does not know; no
network namespace, IP lease, veth, cgroup or rootfs mount without an owner; and the control plane
whole again (every instance serving, three healthy etcd members).

The suite runs a short version: ``CHAOS_HA_FAULTS`` (default 7) faults, the first seven a random order
of the whole menu so each is injected once. The long run is one command:
``CHAOS_HA_FAULTS=200 pytest -m chaos tests/flow/test_chaos_ha.py -s`` (``CHAOS_SEED`` repeats a run).
A line per fault (with ``-s``) and, at the end, a table of the faults injected (with the time until every
invariant held again), the invariants checked and the fence times are printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import re
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from corral.model.errors import CorralError
from corral.model.resources import Container, Event
from corral.reconcile.naming import LABEL_NAME, LABEL_NODE, netns_prefix
from corral.runtime.client import Client
from corral.runtime.containers import list_containers
from corral.runtime.tasks import Task
from tests.fixtures.chaoscluster import NODE_GRACE, HaCluster, start_ha_cluster
from tests.fixtures.cluster import eventually
from tests.fixtures.controlplanes import ControlInstance
from tests.fixtures.hosts import Host
from tests.fixtures.registry import Registry
from tests.flow.chaoswork import Wanted, bridge_veths, fault_table, stray_cgroups, stray_mounts, table, work

pytestmark = [pytest.mark.containerd, pytest.mark.chaos, pytest.mark.slow]

MENU = ["agent", "containerd", "api instance", "leader", "etcd member", "network cut", "agent restarts cut off"]
FAULTS = int(os.environ.get("CHAOS_HA_FAULTS", str(len(MENU))))
SEED = int(os.environ.get("CHAOS_SEED", str(random.randrange(1 << 30))))
FENCE_SLACK = 2.0  # the fence's own check period (0.2 s), the kills, and a loaded machine's scheduling
RELEASE_MARGIN = 3.0  # controllers/nodes.py: a lost node's containers are released this long after the grace
LEADS = re.compile(r"^corral_leader_is_leader(\{[^}]*\})? 1(\.0)?$", re.MULTILINE)


@pytest_asyncio.fixture(scope="module")
async def ha(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> AsyncIterator[HaCluster]:
    async with start_ha_cluster(tmp_path_factory.mktemp("chaosha"), registry) as cluster:
        yield cluster


class World:
    """What the invariants read from the machines, and every containerd id this run has seen."""

    def __init__(self) -> None:
        self.ids_seen: set[str] = set()
        self.ids_on: dict[str, set[str]] = {}  # host name → the containerd ids its containerd holds now

    async def tasks(self, host: Host) -> dict[str, list[str]]:
        """corral/name → the containerd ids of that name whose task runs, on ``host``'s containerd."""
        out: dict[str, list[str]] = {}
        async with Client(host.worker.containerd.socket, timeout=5) as client:
            infos = await list_containers(client)
            self.ids_on[host.name] = {info.id for info in infos}
            self.ids_seen |= self.ids_on[host.name]
            for info in infos:
                assert info.labels.get(LABEL_NODE) == host.name, f"{info.id} on {host.name}'s containerd: {info.labels}"
                try:
                    state = (await Task(client, info.id).status()).state
                except Exception:
                    continue
                if state == "running":
                    out.setdefault(info.labels[LABEL_NAME], []).append(info.id)
        return out


async def api_containers(cluster: HaCluster) -> list[Container]:
    async with cluster.client() as api:
        items, _ = await api.list(Container)
    return items


async def note_released(cluster: HaCluster, wanted: Wanted, items: list[Container]) -> None:
    """Singles missing from the API because the node lifecycle controller released them from a lost node
    (with a ``Released`` Event): the cut one, or one whose killed agent took longer than the grace to return."""
    missing = wanted.singles - {c.metadata.name for c in items}
    if not missing:
        return
    async with cluster.client() as api:
        events, _ = await api.list(Event)
    released = {e.spec.involved_object.name for e in events if e.spec.reason == "Released"}
    wanted.released |= missing & released
    wanted.singles -= missing & released


async def invariants(cluster: HaCluster, wanted: Wanted, world: World, tally: Counter[str], *,
                     cut: Host | None = None) -> None:
    """Every invariant holds (each counted in ``tally`` only when all of them did). While ``cut`` is
    cut off, its containers must have been replaced elsewhere and nothing may run on it."""
    checked: Counter[str] = Counter()
    items = await api_containers(cluster)
    await note_released(cluster, wanted, items)
    wanted.check(items)
    checked["acknowledged writes kept"] += 1
    for host in cluster.hosts:
        mine = {c.metadata.name: c for c in items if c.spec.node == host.name}
        tasks = await world.tasks(host)
        if host is cut:
            assert not mine, f"still bound to the cut {host.name}: {sorted(mine)}"
            assert not tasks, f"running on the fenced {host.name}: {sorted(tasks)}"
            continue
        assert set(tasks) == set(mine), f"{host.name}: tasks {sorted(set(tasks) ^ set(mine))} differ from the API"
        assert all(len(ids) == 1 for ids in tasks.values()), {n: ids for n, ids in tasks.items() if len(ids) > 1}
        uids = {c.metadata.uid for c in mine.values()}
        prefix = netns_prefix(host.worker.agent_dir)
        owners = [p.name.removeprefix(prefix) for p in Path("/var/run/netns").iterdir() if p.name.startswith(prefix)]
        assert set(owners) <= uids, f"{host.name}: netns without an owner: {set(owners) - uids}"
        leases = [p for p in (host.worker.agent_dir / "ipam").rglob("*") if p.is_file() and p.name[0].isdigit()]
        holders = {p.read_text().split()[0] for p in leases if p.read_text().strip()}
        assert holders <= uids, f"{host.name}: IP leases without an owner: {holders - uids}"
        veths = await bridge_veths("corral0", enter=host.enter())
        assert veths == len(mine), f"{host.name}: {veths} veths on the bridge for {len(mine)} containers"
        running = {i for ids in tasks.values() for i in ids}
        stray = stray_mounts(state_dir=host.worker.containerd.base_dir / "state", agent_dir=host.worker.agent_dir,
                             running=running, uids=uids)
        assert not stray, f"{host.name}: mounts without an owner: {stray}"
    # the fenced host's tasks are stopped, not deleted (their cgroups stay until its sweep): not judged while cut
    ours = world.ids_seen - (world.ids_on.get(cut.name, set()) if cut is not None else set())
    live = {i for host in cluster.hosts if host is not cut for i in await _running_ids(world, host)}
    cgroups = stray_cgroups(ours, live)
    assert not cgroups, f"cgroups without a running task: {sorted(cgroups)}"
    checked["one running task per container, on its node, none orphaned"] += 1
    checked["no netns, IP lease, veth, cgroup or mount without an owner"] += 1
    assert all(c.running for c in cluster.controls), "a control instance is not running"
    members = await cluster.controls[0].members()
    assert len(members) == len(cluster.controls) and all(m["healthy"] for m in members), members
    checked["control plane whole: every instance serving, every etcd member healthy"] += 1
    if cut is not None:
        checked["partitioned worker's containers replaced elsewhere"] += 1
    tally.update(checked)


async def _running_ids(world: World, host: Host) -> set[str]:
    return {i for ids in (await world.tasks(host)).values() for i in ids}


async def leader_instance(cluster: HaCluster) -> ControlInstance:
    """The control instance that runs the scheduler and the controllers (it may be changing hands)."""
    async def find() -> ControlInstance:
        for inst in cluster.live():
            async with inst.client(timeout=5) as api:
                metrics = (await api.request("GET", "/metrics")).decode()
            if LEADS.search(metrics):
                return inst
        raise AssertionError("no instance leads")

    return await eventually(find, timeout=30, what="an instance that leads")


async def busiest(cluster: HaCluster, world: World, rng: random.Random) -> Host:
    """The worker to cut off: one that runs tasks (so its fence has something to kill), the busier first."""
    async def running_somewhere() -> Host:
        counts = {host.name: len(await world.tasks(host)) for host in cluster.hosts}
        assert any(counts.values()), "no task runs yet"
        top = max(counts.values())
        return rng.choice([h for h in cluster.hosts if counts[h.name] == top])

    return await eventually(running_somewhere, timeout=60, what="a worker that runs tasks")


async def fenced_within(cluster: HaCluster, host: Host, world: World, *,
                        restart: bool = False) -> tuple[float, set[str]]:
    """Cut ``host`` off; seconds until no task runs on it (from its containerd), and the names that ran.
    ``restart``: its agent is killed first and started again once the uplink is down (counted from then)."""
    ran = set(await world.tasks(host))
    if restart:
        await host.worker.kill()
    await cluster.cut_uplink(host)
    t0 = time.monotonic()
    if restart:
        await host.worker.start()
    deadline = t0 + cluster.fence_after + 30
    while time.monotonic() < deadline:
        if not await world.tasks(host):
            return time.monotonic() - t0, ran
        await asyncio.sleep(0.1)
    raise AssertionError(f"{host.name} still runs tasks {time.monotonic() - t0:.1f}s after its uplink went down")


async def none_comes_back(host: Host, world: World, fenced: set[str], *, seconds: float = 5.0) -> None:
    """For ``seconds`` after the heal, sampled every 0.1 s: none of the containers fenced on ``host``
    (all released from it meanwhile) runs there again, not even for a moment."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(CorralError, OSError):  # its containerd is fine; a call may time out under load
            back = set(await world.tasks(host)) & fenced
            assert not back, f"fenced containers run again on the healed {host.name}: {sorted(back)}"
        await asyncio.sleep(0.1)


async def inject(cluster: HaCluster, fault: str, rng: random.Random) -> None:
    if fault == "agent":
        host = rng.choice(cluster.hosts)
        await host.worker.kill()
        await asyncio.sleep(rng.uniform(0.0, 1.0))
        await host.worker.start()
    elif fault == "containerd":
        ctrd = rng.choice(cluster.hosts).worker.containerd
        await ctrd.kill()
        await asyncio.sleep(rng.uniform(0.0, 1.0))
        await ctrd.start()
    elif fault in ("api instance", "leader"):
        inst = await leader_instance(cluster) if fault == "leader" else rng.choice(cluster.controls)
        await inst.kill()
        await asyncio.sleep(rng.uniform(0.0, 1.0))
        await cluster.restart_control(inst)
    elif fault == "etcd member":
        inst = rng.choice(cluster.controls)
        pid = inst.etcd_pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
    else:
        raise AssertionError(f"unknown fault {fault}")


def faults_to_inject(rng: random.Random) -> list[str]:
    """The whole menu once in a random order, then random picks."""
    first = rng.sample(MENU, len(MENU))
    return (first + [rng.choice(MENU) for _ in range(max(0, FAULTS - len(MENU)))])[:FAULTS]


@pytest.mark.timeout(max(600, FAULTS * 60))
async def test_random_faults_on_a_highly_available_cluster_keep_every_invariant(ha: HaCluster) -> None:
    rng = random.Random(SEED)
    print(f"\nchaos (HA: {len(ha.controls)} control instances, {len(ha.hosts)} workers): {FAULTS} faults, "
          f"CHAOS_SEED={SEED}")
    wanted, world = Wanted(), World()
    async with ha.client() as api:
        await api.create(wanted.deployment(ha.image))
    faults: Counter[str] = Counter()
    checked: Counter[str] = Counter()
    fences: list[float] = []
    restart_fences: list[float] = []  # from the start of an agent cut off as it restarts
    recoveries: dict[str, list[float]] = {}  # fault → seconds from it until every invariant held again
    started = time.monotonic()
    for step, fault in enumerate(faults_to_inject(rng)):
        changes = asyncio.create_task(work(ha.client, ha.image, wanted, rng, step))
        await asyncio.sleep(rng.uniform(0.0, 1.5))  # somewhere in the middle of the changes
        what = f"after fault {step + 1} ({fault}), seed {SEED}"
        t0 = time.monotonic()
        if fault in ("network cut", "agent restarts cut off"):
            host = await busiest(ha, world, rng)
            fenced, ran = await fenced_within(ha, host, world, restart=fault != "network cut")
            if fault == "network cut":
                fences.append(fenced)
                assert fenced <= ha.fence_after + FENCE_SLACK, \
                    f"{host.name} fenced {fenced:.1f}s after the cut (--fence-after {ha.fence_after}s)"
            else:  # the agent's own start (seconds on a loaded machine) comes before its fence can act
                restart_fences.append(fenced)
            await changes
            await eventually(functools.partial(invariants, ha, wanted, world, checked, cut=host), timeout=180,
                             what=f"replaced away from the cut {host.name} {what}")
            await ha.heal_uplink(host)
            await none_comes_back(host, world, ran)
            await ha.wait_ready(host)
            checked["partitioned worker fenced within --fence-after" if fault == "network cut"
                    else "agent restarted cut off fenced (armed from its start)"] += 1
            checked["none of its fenced containers back after the heal, even for a moment"] += 1
        else:
            await inject(ha, fault, rng)
            await changes
        faults[fault] += 1
        await eventually(lambda: invariants(ha, wanted, world, checked), timeout=180, what=f"invariants {what}")
        recoveries.setdefault(fault, []).append(time.monotonic() - t0)
        print(f"{step + 1:>4} {fault:<22} every invariant held {recoveries[fault][-1]:.1f}s after it", flush=True)
    took = time.monotonic() - started
    print(fault_table(recoveries))
    print(table("invariant checked (all held)", checked))
    if fences:
        print(f"fence after a cut: max {max(fences):.2f}s, mean {sum(fences) / len(fences):.2f}s over {len(fences)} "
              f"(--fence-after {ha.fence_after}s; release after {NODE_GRACE + RELEASE_MARGIN:g}s)")
    if restart_fences:
        print(f"fence of an agent started cut off (from its process start): max {max(restart_fences):.2f}s, "
              f"mean {sum(restart_fences) / len(restart_fences):.2f}s over {len(restart_fences)}")
    print(f"{FAULTS} faults in {took:.0f}s: {FAULTS * 3600 / took:.0f} faults per hour; "
          f"{len(wanted.released)} singles released from lost nodes (never back)")
    assert sum(faults.values()) == FAULTS
