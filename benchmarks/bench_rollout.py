"""Benchmark of a Deployment's rolling update on a real cluster: total time and the minimum availability.

Starts its own registry (the busybox test image), a private etcd, the control plane and N real
workers (``tests.fixtures.cluster.start_cluster``), creates a deployment of ``--replicas``
containers (``sleep``, grace 1 s), waits until all are available, then changes the template and
follows every container event with an informer until the rollout is complete. Prints the time
to the first scale-up, the rollout time, the minimum availability seen (and the floor the
strategy allows), the most live containers seen (and the ceiling), and how the new containers
spread over the nodes.

    .venv/bin/python benchmarks/bench_rollout.py --replicas 20 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.fixtures

from corral.api.client import ApiClient
from corral.api.listwatch import api_informer
from corral.controllers.rollout import TEMPLATE_HASH_LABEL, resolve_bounds
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
from corral.runtime.imagebuild import build_busybox_image
from tests.fixtures.cluster import start_cluster
from tests.fixtures.registry import push_oci_archive, run_registry


def _intstr(text: str) -> int | str:
    return text if text.endswith("%") else int(text)


async def _complete(api: ApiClient, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = await api.get(Deployment, name)
        st = d.status
        if (st.observed_generation == d.metadata.generation
                and st.updated_replicas == st.replicas == st.available_replicas == d.spec.replicas):
            items, _ = await api.list(Container, label_selector=f"app={name}")
            if sum(1 for c in items if not c.metadata.deletion_timestamp) == d.spec.replicas:
                return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"deployment {name} did not roll out in {timeout}s")


async def bench(*, replicas: int, workers: int, surge: int | str, unavailable: int | str) -> None:
    base = Path(tempfile.mkdtemp(prefix="corral-bench-rollout-"))
    try:
        archive = await asyncio.to_thread(build_busybox_image, base / "busybox.tar")
        (base / "registry").mkdir()
        async with run_registry(base / "registry") as registry:
            await push_oci_archive(registry, archive, ref=registry.ref)
            async with start_cluster(base / "cluster", registry, workers=workers) as cluster:
                await run(cluster.api, cluster.image, replicas=replicas, workers=workers, surge=surge,
                          unavailable=unavailable)
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def run(api: ApiClient, image: str, *, replicas: int, workers: int, surge: int | str,
              unavailable: int | str) -> None:
    name = "bench"
    d = Deployment(
        metadata=ObjectMeta(name=name),
        spec=DeploymentSpec(
            replicas=replicas, selector=LabelSelector(match_labels={"app": name}),
            template=ContainerTemplate(metadata=TemplateMeta(labels={"app": name}), spec=ContainerSpec(
                image=image, command=["sleep", "3600"], termination_grace_period_seconds=1,
                env=[EnvVar(name="VERSION", value="1")])),
            strategy=DeploymentStrategy(rolling_update=RollingUpdate(max_surge=surge, max_unavailable=unavailable)),
        ),
    )
    t0 = time.monotonic()
    await api.create(d)
    await _complete(api, name, 300)
    scale_up = time.monotonic() - t0

    low, high = 10**9, 0
    reflector = api_informer(api, Container, namespace="default", label_selector=f"app={name}")
    armed = False

    def look(*_event: object) -> None:
        nonlocal low, high
        if not armed:
            return
        live = [c for c in reflector.objects.values() if not c.metadata.deletion_timestamp]
        low = min(low, sum(1 for c in live if c.status.ready and c.status.phase == "Running"))
        high = max(high, len(live))

    reflector.add_handler(look)
    task = asyncio.create_task(reflector.run())
    try:
        await asyncio.wait_for(reflector.synced.wait(), 30)
        armed = True
        look()
        current = await api.get(Deployment, name)
        current.spec.template.spec.env = [EnvVar(name="VERSION", value="2")]
        t1 = time.monotonic()
        await api.update(current)
        await _complete(api, name, 600)
        rollout = time.monotonic() - t1
        await asyncio.sleep(0.3)
        nodes = Counter(c.spec.node for c in reflector.objects.values()
                        if not c.metadata.deletion_timestamp and c.metadata.labels.get(TEMPLATE_HASH_LABEL))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    s, u = resolve_bounds(replicas, surge, unavailable)
    print(f"deployment of {replicas} replicas on {workers} workers, maxSurge={surge} ({s}), "
          f"maxUnavailable={unavailable} ({u})")
    print(f"  scale 0 -> {replicas} available: {scale_up:.2f} s")
    print(f"  rolling update to a new template, until all {replicas} new replicas are available and no old one is "
          f"live: {rollout:.2f} s")
    print(f"  minimum available during the update: {low} (floor replicas - maxUnavailable = {replicas - u})")
    print(f"  maximum live during the update: {high} (ceiling replicas + maxSurge = {replicas + s})")
    print(f"  new replicas per node: {dict(sorted(nodes.items()))}")
    with contextlib.suppress(Exception):
        await api.delete(Deployment, name)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicas", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--max-surge", type=_intstr, default="25%")
    p.add_argument("--max-unavailable", type=_intstr, default="25%")
    a = p.parse_args()
    asyncio.run(bench(replicas=a.replicas, workers=a.workers, surge=a.max_surge, unavailable=a.max_unavailable))


if __name__ == "__main__":
    main()
