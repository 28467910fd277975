"""Chaos: SIGKILL at random moments (etcd, containerd, the leader, or all of ``serve --all``) while a Deployment
scales and rolls and single containers come and go; after each fault the world must match what was acknowledged.

Invariants, checked from the world and not from the API alone after every fault:
- every acknowledged write is there: the single containers created (and not deleted) exist, the
  deleted ones do not, the Deployment has the replicas it was last given;
- every container the API has is Running with exactly one running containerd task (by name), and
  no running task belongs to a container the API does not have (nothing duplicated, nothing orphaned);
- every network namespace, IP lease, veth on the bridge, cgroup and rootfs mount (or mount under the
  agent's dir) belongs to a container the API has.

The suite runs a short version (``CHAOS_FAULTS``, default 4). The long run is one command:
``CHAOS_FAULTS=200 pytest -m chaos tests/flow/test_chaos.py -s`` (``CHAOS_SEED`` repeats a run).
A table of the faults injected and the invariants checked is printed at the end.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from corral.model.resources import Container
from corral.reconcile.naming import netns_prefix
from corral.runtime.client import Client
from corral.runtime.containers import list_containers
from tests.fixtures.cluster import eventually
from tests.fixtures.registry import Registry
from tests.fixtures.serving import ServeAll, running_serve_all
from tests.flow.chaoswork import Wanted, bridge_veths, fault_table, stray_cgroups, stray_mounts, table, work
from tests.flow.test_restarts import running_tasks

pytestmark = [pytest.mark.containerd, pytest.mark.chaos]

FAULTS = int(os.environ.get("CHAOS_FAULTS", "4"))
SEED = int(os.environ.get("CHAOS_SEED", str(random.randrange(1 << 30))))


@pytest_asyncio.fixture(scope="module")
async def chaotic(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> AsyncIterator[ServeAll]:
    async with running_serve_all(tmp_path_factory.mktemp("chaos"), registry) as serve:
        yield serve


async def invariants(serve: ServeAll, wanted: Wanted, tally: Counter[str], seen: set[str]) -> None:
    """Every invariant holds (each counted in ``tally`` only when all of them did)."""
    checked: Counter[str] = Counter()
    async with serve.client() as api:
        items, _ = await api.list(Container)
    by_name = {c.metadata.name: c for c in items}
    wanted.check(items)
    checked["acknowledged writes kept"] += 1
    tasks = await running_tasks(serve.containerd_socket)
    assert set(tasks) == set(by_name), f"tasks {sorted(set(tasks) ^ set(by_name))} differ from the API"
    assert all(len(ids) == 1 for ids in tasks.values()), {n: ids for n, ids in tasks.items() if len(ids) > 1}
    checked["one running task per container, none orphaned"] += 1
    uids = {c.metadata.uid for c in items}
    prefix = netns_prefix(serve.base / "agent")
    netns_dir = Path("/var/run/netns")
    owners = [p.name.removeprefix(prefix) for p in netns_dir.iterdir() if p.name.startswith(prefix)] \
        if netns_dir.exists() else []
    assert set(owners) <= uids, f"netns without an owner: {set(owners) - uids}"
    leases = [p for p in (serve.base / "agent" / "ipam").rglob("*") if p.is_file() and p.name[0].isdigit()]
    holders = {p.read_text().split()[0] for p in leases if p.read_text().strip()}
    assert holders <= uids, f"IP leases without an owner: {holders - uids}"
    assert await bridge_veths(serve.bridge) == len(items), "veths on the bridge differ from the containers"
    async with Client(serve.containerd_socket) as client:
        seen.update(info.id for info in await list_containers(client))
    running = {i for ids in tasks.values() for i in ids}
    stray = stray_mounts(state_dir=serve.base / "containerd" / "state", agent_dir=serve.base / "agent",
                         running=running, uids=uids)
    assert not stray, f"mounts without an owner: {stray}"
    assert not (cgroups := stray_cgroups(seen, running)), f"cgroups without a running task: {sorted(cgroups)}"
    checked["no netns, IP lease, veth, cgroup or mount without an owner"] += 1
    tally.update(checked)


async def inject(serve: ServeAll, fault: str) -> None:
    if fault == "serve --all":
        await serve.kill()
        await serve.start()
        await serve.wait_ready(timeout=90)
    elif fault == "leader":
        async def leader() -> int:  # it may be between a kill and its restart
            return serve.leader_pid()

        os.kill(await eventually(leader, timeout=30, what="a leader process"), signal.SIGKILL)
    else:
        os.kill(serve.pid_of(fault), signal.SIGKILL)


@pytest.mark.timeout(max(300, FAULTS * 30))
async def test_random_kills_while_work_goes_on_keep_every_invariant(chaotic: ServeAll) -> None:
    rng = random.Random(SEED)
    print(f"\nchaos: {FAULTS} faults, CHAOS_SEED={SEED}")
    wanted = Wanted()
    async with chaotic.client() as api:
        await api.create(wanted.deployment(chaotic.registry.ref))
    faults: Counter[str] = Counter()
    checked: Counter[str] = Counter()
    seen: set[str] = set()  # every containerd id met: whose cgroups are ours
    recoveries: dict[str, list[float]] = {}  # fault → seconds from it until every invariant held again
    for step in range(FAULTS):
        fault = rng.choice(["etcd", "containerd", "leader", "serve --all"])
        changes = asyncio.create_task(work(chaotic.client, chaotic.registry.ref, wanted, rng, step))
        await asyncio.sleep(rng.uniform(0.0, 1.5))  # somewhere in the middle of the changes
        t0 = time.monotonic()
        await inject(chaotic, fault)
        faults[fault] += 1
        await changes
        await eventually(lambda: invariants(chaotic, wanted, checked, seen), timeout=180,
                         what=f"invariants after fault {step + 1} ({fault}), seed {SEED}\n{chaotic.tail()}")
        recoveries.setdefault(fault, []).append(time.monotonic() - t0)
        print(f"{step + 1:>4} {fault:<12} every invariant held {recoveries[fault][-1]:.1f}s after it", flush=True)
    print(fault_table(recoveries))
    print(table("invariant checked (all held)", checked))
    assert sum(faults.values()) == FAULTS
