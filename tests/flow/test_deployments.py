"""Deployments end to end on a real 2-worker cluster: scaling, rolling updates within bounds, rollback.

The rolling-update test watches every container event (an informer) for the whole rollout and
checks, after each one, that availability never fell below ``replicas - maxUnavailable`` and the
live total never rose above ``replicas + maxSurge``. The CLI commands run as real subprocesses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

import pytest
import pytest_asyncio

from corral.api.client import ApiClient
from corral.api.listwatch import api_informer
from corral.controllers.rollout import TEMPLATE_HASH_LABEL
from corral.model.resources import (
    Container,
    ContainerSpec,
    ContainerTemplate,
    Deployment,
    DeploymentSpec,
    DeploymentStrategy,
    EnvVar,
    LabelSelector,
    ObjectMeta,
    RollingUpdate,
    TemplateMeta,
)
from tests.fixtures.cluster import Cluster, eventually, start_cluster
from tests.fixtures.registry import Registry


@pytest_asyncio.fixture(scope="module")
async def cluster2(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> AsyncIterator[Cluster]:
    async with start_cluster(tmp_path_factory.mktemp("deployments"), registry, workers=2) as c:
        yield c


def deployment(cluster: Cluster, name: str, *, replicas: int, surge: int | str = 1, unavailable: int | str = 1,
               version: str = "1", deadline: int = 600) -> Deployment:
    return Deployment(
        metadata=ObjectMeta(name=name),
        spec=DeploymentSpec(
            replicas=replicas,
            selector=LabelSelector(match_labels={"app": name}),
            template=ContainerTemplate(
                metadata=TemplateMeta(labels={"app": name}),
                spec=ContainerSpec(image=cluster.image, command=["sleep", "3600"], termination_grace_period_seconds=1,
                                   env=[EnvVar(name="VERSION", value=version)]),
            ),
            strategy=DeploymentStrategy(rolling_update=RollingUpdate(max_surge=surge, max_unavailable=unavailable)),
            progress_deadline_seconds=deadline,
        ),
    )


async def live_containers(api: ApiClient, app: str) -> list[Container]:
    items, _ = await api.list(Container, label_selector=f"app={app}")
    return [c for c in items if not c.metadata.deletion_timestamp]


async def rolled_out(api: ApiClient, name: str, *, timeout: float = 90) -> Deployment:
    """Wait until every replica is updated and available and no old container is left."""

    async def check() -> Deployment:
        d = await api.get(Deployment, name)
        st = d.status
        assert st.observed_generation == d.metadata.generation, "not observed yet"
        assert st.updated_replicas == st.replicas == st.available_replicas == d.spec.replicas, st
        live = await live_containers(api, name)
        assert len(live) == d.spec.replicas, [c.metadata.name for c in live]
        return d

    return await eventually(check, timeout=timeout, what=f"deployment {name} rolls out")


async def change(api: ApiClient, name: str, edit: Callable[[Deployment], None]) -> Deployment:
    d = await api.get(Deployment, name)
    edit(d)
    return await api.update(d)


async def corral_cli(cluster: Cluster, *args: str, timeout: float = 90) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "corral.cli.main", *args, "--server", cluster.plane.url,
        "--token", cluster.plane.admin_token, env={**os.environ, "CORRAL_CA": str(cluster.plane.ca_file)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def delete_deployment(cluster: Cluster, name: str) -> None:
    """The garbage collector may not be there: remove the containers too, and wait for them to go."""
    with contextlib.suppress(Exception):
        await cluster.api.delete(Deployment, name)
    for c in await live_containers(cluster.api, name):
        with contextlib.suppress(Exception):
            await cluster.api.delete(Container, c.metadata.name, grace_period=0)

    async def gone() -> None:
        items, _ = await cluster.api.list(Container, label_selector=f"app={name}")
        assert not items, [c.metadata.name for c in items]

    await eventually(gone, timeout=60, what=f"the containers of {name} are gone")


async def test_a_deployment_scales_up_and_down_and_spreads_its_replicas_over_the_nodes(cluster2: Cluster) -> None:
    api = cluster2.api
    await api.create(deployment(cluster2, "scaled", replicas=2))
    try:
        await rolled_out(api, "scaled")
        nodes = sorted(c.spec.node for c in await live_containers(api, "scaled"))
        assert nodes == ["node-1", "node-2"]

        code, out = await corral_cli(cluster2, "scale", "deployment/scaled", "--replicas", "4")
        assert code == 0, out
        await rolled_out(api, "scaled")
        live = await live_containers(api, "scaled")
        assert sorted(c.spec.node for c in live) == ["node-1", "node-1", "node-2", "node-2"]
        assert all(c.metadata.name.startswith("scaled-") and len(c.metadata.name) == len("scaled-") + 5 for c in live)
        d = await api.get(Deployment, "scaled")
        owner = live[0].metadata.owner_references[0]
        assert (owner.kind, owner.uid, owner.controller) == ("Deployment", d.metadata.uid, True)

        code, out = await corral_cli(cluster2, "scale", "scaled", "--replicas", "1")
        assert code == 0, out
        d = await rolled_out(api, "scaled")
        assert d.status.replicas == 1
        conds = {c.type: (c.status, c.reason) for c in d.status.conditions}
        assert conds["Available"] == ("True", "MinimumReplicasAvailable")
        assert conds["Progressing"] == ("True", "NewReplicaSetAvailable")
    finally:
        await delete_deployment(cluster2, "scaled")


@dataclass
class Watched:
    """What a watch of a deployment's containers saw, event by event."""

    min_available: int = 1_000
    max_live: int = 0
    hashes_seen_together: bool = False
    events: int = 0
    log: list[str] = field(default_factory=list)
    armed: bool = False  # the first list's ADDED events build the picture; counting starts after it

    def look(self, objects: Mapping[tuple[str, str], Container]) -> None:
        if not self.armed:
            return
        live = [c for c in objects.values() if not c.metadata.deletion_timestamp]
        available = sum(1 for c in live if c.status.ready and c.status.phase == "Running")
        self.events += 1
        self.min_available = min(self.min_available, available)
        self.max_live = max(self.max_live, len(live))
        if len({c.metadata.labels.get(TEMPLATE_HASH_LABEL) for c in live}) > 1:
            self.hashes_seen_together = True
        self.log.append(f"live={len(live)} available={available}")


async def test_a_rolling_update_never_drops_below_replicas_minus_max_unavailable(cluster2: Cluster) -> None:
    api = cluster2.api
    await api.create(deployment(cluster2, "roll", replicas=4, surge=1, unavailable=1))
    try:
        await rolled_out(api, "roll")
        watched = Watched()
        reflector = api_informer(api, Container, namespace="default", label_selector="app=roll")
        reflector.add_handler(lambda *_event: watched.look(reflector.objects))
        task = asyncio.create_task(reflector.run())
        try:
            await asyncio.wait_for(reflector.synced.wait(), 10)
            watched.armed = True
            watched.look(reflector.objects)
            assert watched.min_available == 4
            before = await api.get(Deployment, "roll")
            await change(api, "roll", lambda d: setattr(d.spec.template.spec, "env", [EnvVar(name="VERSION", value="2")]))
            after = await rolled_out(api, "roll")
            await asyncio.sleep(0.5)  # the last events reach the watch
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert watched.hashes_seen_together, "the old and new revision never ran side by side"
        assert watched.min_available >= 3, watched.log
        assert watched.max_live <= 5, watched.log
        assert int(after.metadata.annotations["corral.io/revision"]) == int(
            before.metadata.annotations["corral.io/revision"]) + 1 == after.status.revision
        live = await live_containers(api, "roll")
        assert all(c.spec.env == [EnvVar(name="VERSION", value="2")] for c in live)
    finally:
        await delete_deployment(cluster2, "roll")


async def test_rollout_status_fails_past_the_deadline_and_undo_returns_to_the_previous_template(
        cluster2: Cluster) -> None:
    api = cluster2.api
    await api.create(deployment(cluster2, "undo", replicas=2, surge=1, unavailable=0, deadline=5))
    try:
        code, out = await corral_cli(cluster2, "rollout", "status", "undo", "--timeout", "90")
        assert code == 0 and "successfully rolled out" in out, out
        good = await rolled_out(api, "undo")
        missing = cluster2.image.rsplit(":", 1)[0] + ":missing"

        def break_it(d: Deployment) -> None:
            d.spec.template.spec.image = missing  # its pull fails: never ready

        await change(api, "undo", break_it)
        code, out = await corral_cli(cluster2, "rollout", "status", "undo", "--timeout", "60")
        assert code == 1 and "exceeded its progress deadline" in out, out
        live = await live_containers(api, "undo")
        assert sum(1 for c in live if c.status.ready) == 2  # maxUnavailable 0: the old ones all stay

        code, out = await corral_cli(cluster2, "rollout", "history", "undo")
        assert code == 0 and "sleep 3600" in out and ":missing" in out, out
        code, out = await corral_cli(cluster2, "rollout", "undo", "undo")
        assert code == 0 and "rolled back to revision 1" in out, out
        code, out = await corral_cli(cluster2, "rollout", "status", "undo", "--timeout", "90")
        assert code == 0, out
        d = await rolled_out(api, "undo")
        assert d.spec.template.spec.image == cluster2.image and d.status.revision == 3
        old_names = {c.metadata.name for c in await live_containers(api, "undo")}
        assert good.status.revision == 1 and len(old_names) == 2
    finally:
        await delete_deployment(cluster2, "undo")
