"""A DaemonSet on the real worker: its daemon runs in containerd, and why-not explains one that cannot.

Uses the flow tests' shared one-worker cluster, in a namespace of its own, and removes what it made.
(Placement over several nodes, joins and leaves are tested on hollow nodes: test_workload_placement.py.)
"""

from __future__ import annotations

import asyncio
import os
import sys

from corral.controllers.daemonsets import DAEMON_NODE_LABEL
from corral.model.resources import (
    Container,
    ContainerSpec,
    ContainerTemplate,
    DaemonSet,
    DaemonSetSpec,
    LabelSelector,
    Namespace,
    ObjectMeta,
    ResourceList,
    ResourceRequirements,
    TemplateMeta,
)
from corral.scheduler.framework import INSUFFICIENT_MEMORY
from tests.fixtures.cluster import Cluster, eventually

NS = "ds-real"


def daemonset(cluster: Cluster, name: str, *, memory: str = "") -> DaemonSet:
    return DaemonSet(metadata=ObjectMeta(name=name, namespace=NS), spec=DaemonSetSpec(
        selector=LabelSelector(match_labels={"app": name}),
        template=ContainerTemplate(metadata=TemplateMeta(labels={"app": name}), spec=ContainerSpec(
            image=cluster.image, command=["sleep", "3600"], termination_grace_period_seconds=1,
            resources=ResourceRequirements(requests=ResourceList(memory=memory))))))


async def why_not(cluster: Cluster, name: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "corral.cli.main", "why-not", name, "-n", NS, "--server", cluster.plane.url,
        "--token", cluster.plane.admin_token, env={**os.environ, "CORRAL_CA": str(cluster.plane.ca_file)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_a_daemon_runs_on_the_real_worker_and_why_not_explains_one_that_cannot(cluster: Cluster) -> None:
    api = cluster.api
    await api.create(Namespace(metadata=ObjectMeta(name=NS)))
    try:
        await api.create(daemonset(cluster, "agentd"))
        await api.create(daemonset(cluster, "hungry", memory="900Ti"))

        async def daemons(app: str) -> list[Container]:
            items, _ = await api.list(Container, namespace=NS, label_selector=f"app={app}")
            return [c for c in items if not c.metadata.deletion_timestamp]

        async def running() -> Container:
            (c,) = await daemons("agentd")
            assert c.status.phase == "Running" and c.spec.node == cluster.worker.name, c.status
            return c

        c = await eventually(running, timeout=60, what="the daemon runs on the worker")
        assert c.metadata.labels[DAEMON_NODE_LABEL] == cluster.worker.name
        assert c.status.container_id and not c.status.container_id.startswith("sim-")  # containerd's

        async def pending() -> Container:
            (h,) = await daemons("hungry")
            assert h.status.phase == "Pending" and INSUFFICIENT_MEMORY in h.status.message, h.status
            return h

        h = await eventually(pending, timeout=30, what="the hungry daemon waits, saying why")
        code, out = await why_not(cluster, h.metadata.name)
        assert code == 0 and f"{cluster.worker.name}" in out and INSUFFICIENT_MEMORY in out, out
    finally:
        for name in ("agentd", "hungry"):
            await api.delete(DaemonSet, name, namespace=NS)

        async def gone() -> None:
            items, _ = await api.list(Container, namespace=NS)
            assert not items, [x.metadata.name for x in items]

        await eventually(gone, timeout=60, what="the daemons go with their daemon sets")
        await api.delete(Namespace, NS)
