"""The work that goes on while the chaos tests inject faults, and what it acknowledged.

Each round creates a single container, deletes an older one once there are more than three, and
scales (1 to 4 replicas) and maybe rolls the Deployment ``web``. Every write is retried until it is
acknowledged (the API or its store may be down for a moment); ``Wanted`` records what was
acknowledged, which is what the invariants hold the cluster to. The helpers at the end read what a
node leaves on the machine (veths, cgroups, mounts) for the "nothing left over" invariant. Shared by
tests/flow/test_chaos.py (``serve --all``) and tests/flow/test_chaos_ha.py (three control
instances, two workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from corral.api.client import ApiClient
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


def template(image: str, generation: int) -> ContainerTemplate:
    return ContainerTemplate(metadata=TemplateMeta(labels={"app": "web"}),
                             spec=ContainerSpec(image=image, command=["sleep", f"{3600 + generation}"],
                                                termination_grace_period_seconds=0))


class Wanted:
    """What was acknowledged: the single containers that must exist, those that must not, the replicas.

    ``released`` are singles the node lifecycle controller deleted from a lost (cut off) node, with
    an Event: gone by design, and they must never come back when the node heals.
    """

    def __init__(self) -> None:
        self.singles: set[str] = set()
        self.deleted: set[str] = set()
        self.released: set[str] = set()
        self.replicas = 2
        self.generation = 0

    def deployment(self, image: str) -> Deployment:
        return Deployment(metadata=ObjectMeta(name="web"), spec=DeploymentSpec(
            replicas=self.replicas, selector=LabelSelector(match_labels={"app": "web"}), template=template(image, 0)))

    def check(self, items: list[Container]) -> None:
        """Every acknowledged write is in ``items`` (the API's containers), and nothing deleted is back."""
        names = {c.metadata.name for c in items}
        assert self.singles <= names, f"acknowledged singles missing: {self.singles - names}"
        assert not self.deleted & names, f"deleted singles back: {self.deleted & names}"
        assert not self.released & names, f"released singles back: {self.released & names}"
        web = [c for c in items if c.metadata.labels.get("app") == "web"]
        current = [c for c in web if c.spec.command == ["sleep", f"{3600 + self.generation}"]]
        assert len(web) == len(current) == self.replicas, (len(web), len(current), self.replicas)
        assert all(c.status.phase == "Running" for c in items), [
            (c.metadata.name, c.status.phase, c.status.message) for c in items if c.status.phase != "Running"]


async def retried(write: Callable[[], Awaitable[None]], *, timeout: float = 120) -> None:
    """Try a write until it is acknowledged (the API or its store may be down for a moment)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await write()
            return
        except (CorralError, OSError, TimeoutError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def work(client: Callable[[], ApiClient], image: str, wanted: Wanted, rng: random.Random, step: int) -> None:
    """One round of changes: a single created, maybe one deleted, the Deployment scaled or rolled."""
    name = f"single-{step:03d}"

    async def create() -> None:
        async with client() as api:
            with contextlib.suppress(AlreadyExists):  # acknowledged before a cut connection: a retry meets it
                await api.create(Container(metadata=ObjectMeta(name=name, labels={"chaos": "single"}),
                                           spec=ContainerSpec(image=image, command=["sleep", "3600"],
                                                              termination_grace_period_seconds=0)))

    await retried(create)
    wanted.singles.add(name)
    if len(wanted.singles) > 3:
        victim = rng.choice(sorted(wanted.singles - {name}))

        async def delete() -> None:
            async with client() as api:
                with contextlib.suppress(NotFound):
                    await api.delete(Container, victim, grace_period=0)

        await retried(delete)
        wanted.singles.discard(victim)
        wanted.deleted.add(victim)
    replicas = rng.randint(1, 4)
    roll = rng.random() < 0.5

    async def scale() -> None:
        async with client() as api:
            d = await api.get(Deployment, "web")
            d.spec.replicas = replicas
            if roll:
                d.spec.template = template(image, wanted.generation + 1)
            await api.update(d)

    await retried(scale)
    wanted.replicas = replicas
    wanted.generation += int(roll)


def fault_table(recoveries: dict[str, list[float]]) -> str:
    """Per kind of fault: how often, and how long until every invariant held again (mean, max)."""
    width = max([len("fault injected"), *map(len, recoveries)]) + 2
    lines = [f"{'fault injected':<{width}}{'times':>6}{'mean s':>9}{'max s':>8}"]
    lines += [f"{name:<{width}}{len(ts):>6}{sum(ts) / len(ts):>9.1f}{max(ts):>8.1f}"
              for name, ts in sorted(recoveries.items()) if ts]
    return "\n".join(lines)


def table(title: str, rows: Counter[str]) -> str:
    width = max([len(title), *map(len, rows)]) + 2
    lines = [f"{title:<{width}}{'times':>6}"]
    lines += [f"{name:<{width}}{n:>6}" for name, n in sorted(rows.items())]
    return "\n".join(lines)


# --- what a node leaves on the machine -------------------------------------------------------------

CGROUPS = Path("/sys/fs/cgroup/pids/corral")  # runc's cgroupsPath is /corral/<containerd id> (runtime/spec.py)


async def bridge_veths(bridge: str, *, enter: Sequence[str] = ()) -> int:
    """How many veths (the containers' host ends) hang on ``bridge`` (in the namespace ``enter`` runs in)."""
    proc = await asyncio.create_subprocess_exec(*enter, "ip", "-o", "link", "show", "master", bridge, "type", "veth",
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    return len([line for line in out.decode().splitlines() if line.strip()])


def mounts_under(path: Path) -> list[str]:
    """The mount points below ``path`` (in this mount namespace, which containerd's shims share)."""
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p.startswith(str(path) + "/")]


def stray_mounts(*, state_dir: Path, agent_dir: Path, running: set[str], uids: set[str]) -> list[str]:
    """Task rootfs mounts under containerd's ``state_dir`` whose task does not run, and mounts under
    the agent's dir (secret tmpfs, volumes) that name no container the node has."""
    rootfs = [p for p in mounts_under(state_dir) if p.endswith("/rootfs") and Path(p).parent.name not in running]
    agent = [p for p in mounts_under(agent_dir) if not any(u in p for u in uids)]
    return rootfs + agent


def stray_cgroups(ours: set[str], running: set[str]) -> set[str]:
    """The cgroups of containerd ids in ``ours`` whose task does not run."""
    return ({p.name for p in CGROUPS.iterdir()} & ours) - running if CGROUPS.exists() else set()
