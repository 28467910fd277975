"""Chaos: SIGKILL at random moments (etcd, containerd, the leader, or all of ``serve --all``) while a Deployment
scales and rolls and single containers come and go; after each fault the world must match what was acknowledged.

Invariants, checked from the world and not from the API alone after every fault:
- every acknowledged write is there: the single containers created (and not deleted) exist, the
  deleted ones do not, the Deployment has the replicas it was last given;
- every container the API has is Running with exactly one running containerd task (by name), and
  no running task belongs to a container the API does not have (nothing duplicated, nothing orphaned);
- every network namespace and IP lease of the agent belongs to a container the API has.

The suite runs a short version (``CHAOS_FAULTS``, default 4). The long run is one command:
``CHAOS_FAULTS=200 pytest -m chaos tests/flow/test_chaos.py -s`` (``CHAOS_SEED`` repeats a run).
A table of the faults injected and the invariants checked is printed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from corral.model.errors import AlreadyExists, CorralError, NotFound
from corral.model.resources import (
    Container,
    ContainerSpec,
    ContainerTemplate,
    Deployment,
    DeploymentSpec,
    LabelSelector,
    ObjectMeta,
    TemplateMeta,
)
from corral.reconcile.naming import netns_prefix
from tests.fixtures.cluster import eventually
from tests.fixtures.registry import Registry
from tests.fixtures.serving import ServeAll, running_serve_all
from tests.flow.test_restarts import running_tasks

pytestmark = [pytest.mark.containerd, pytest.mark.chaos]

FAULTS = int(os.environ.get("CHAOS_FAULTS", "4"))
SEED = int(os.environ.get("CHAOS_SEED", str(random.randrange(1 << 30))))


@pytest_asyncio.fixture(scope="module")
async def chaotic(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> AsyncIterator[ServeAll]:
    async with running_serve_all(tmp_path_factory.mktemp("chaos"), registry) as serve:
        yield serve


def template(image: str, generation: int) -> ContainerTemplate:
    return ContainerTemplate(metadata=TemplateMeta(labels={"app": "web"}),
                             spec=ContainerSpec(image=image, command=["sleep", f"{3600 + generation}"],
                                                termination_grace_period_seconds=0))


class Wanted:
    """What was acknowledged: the single containers that must exist, those that must not, the replicas."""

    def __init__(self) -> None:
        self.singles: set[str] = set()
        self.deleted: set[str] = set()
        self.replicas = 2
        self.generation = 0


async def retried(write: Callable[[], Awaitable[None]], *, timeout: float = 120) -> None:
    """Try a write until it is acknowledged (the API or its store may be down for a moment)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await write()
            return
        except (CorralError, OSError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def work(serve: ServeAll, wanted: Wanted, rng: random.Random, step: int) -> None:
    """One round of changes: a single created, maybe one deleted, the Deployment scaled or rolled."""
    name = f"single-{step:03d}"

    async def create() -> None:
        async with serve.client() as api:
            with contextlib.suppress(AlreadyExists):  # acknowledged before a cut connection: a retry meets it
                await api.create(Container(metadata=ObjectMeta(name=name, labels={"chaos": "single"}),
                                           spec=ContainerSpec(image=serve.registry.ref, command=["sleep", "3600"],
                                                              termination_grace_period_seconds=0)))

    await retried(create)
    wanted.singles.add(name)
    if len(wanted.singles) > 3:
        victim = rng.choice(sorted(wanted.singles - {name}))

        async def delete() -> None:
            async with serve.client() as api:
                with contextlib.suppress(NotFound):
                    await api.delete(Container, victim, grace_period=0)

        await retried(delete)
        wanted.singles.discard(victim)
        wanted.deleted.add(victim)
    replicas = rng.randint(1, 4)
    roll = rng.random() < 0.5

    async def scale() -> None:
        async with serve.client() as api:
            d = await api.get(Deployment, "web")
            d.spec.replicas = replicas
            if roll:
                d.spec.template = template(serve.registry.ref, wanted.generation + 1)
            await api.update(d)

    await retried(scale)
    wanted.replicas = replicas
    wanted.generation += int(roll)


async def invariants(serve: ServeAll, wanted: Wanted, tally: Counter[str]) -> None:
    """Every invariant holds (each counted in ``tally`` only when all of them did)."""
    checked: Counter[str] = Counter()
    async with serve.client() as api:
        items, _ = await api.list(Container)
    by_name = {c.metadata.name: c for c in items}
    assert wanted.singles <= set(by_name), f"acknowledged singles missing: {wanted.singles - set(by_name)}"
    assert not wanted.deleted & set(by_name), f"deleted singles back: {wanted.deleted & set(by_name)}"
    web = [c for c in items if c.metadata.labels.get("app") == "web"]
    current = [c for c in web if c.spec.command == ["sleep", f"{3600 + wanted.generation}"]]
    assert len(web) == len(current) == wanted.replicas, (len(web), len(current), wanted.replicas)
    assert all(c.status.phase == "Running" for c in items), [(c.metadata.name, c.status.phase) for c in items
                                                             if c.status.phase != "Running"]
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
    checked["no netns or IP lease without an owner"] += 1
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
        await api.create(Deployment(metadata=ObjectMeta(name="web"), spec=DeploymentSpec(
            replicas=wanted.replicas, selector=LabelSelector(match_labels={"app": "web"}),
            template=template(chaotic.registry.ref, 0))))
    faults: Counter[str] = Counter()
    checked: Counter[str] = Counter()
    for step in range(FAULTS):
        fault = rng.choice(["etcd", "containerd", "leader", "serve --all"])
        changes = asyncio.create_task(work(chaotic, wanted, rng, step))
        await asyncio.sleep(rng.uniform(0.0, 1.5))  # somewhere in the middle of the changes
        await inject(chaotic, fault)
        faults[fault] += 1
        await changes
        await eventually(lambda: invariants(chaotic, wanted, checked), timeout=180,
                         what=f"invariants after fault {step + 1} ({fault}), seed {SEED}\n{chaotic.tail()}")
    print(f"{'fault injected':<40}{'times':>6}")
    for fault, n in sorted(faults.items()):
        print(f"{fault:<40}{n:>6}")
    print(f"{'invariant checked (all held)':<50}{'times':>6}")
    for name, n in sorted(checked.items()):
        print(f"{name:<50}{n:>6}")
    assert sum(faults.values()) == FAULTS
