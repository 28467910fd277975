"""Node loss → replacement Running on another node, with default settings (grace 5 s, fence 4 s, margin 3 s).

A real cluster (tests/fixtures/cluster.py: private etcd, in-process control plane, two
``corral serve --role=worker`` children with their own containerd) runs a Deployment of one
replica. Each trial SIGKILLs the worker that runs it — a node that stops heartbeating — and times
until a replacement is Running (status reported by the other node's agent) on the other node.
Then the killed worker starts again, gets Ready, and the next trial kills whichever node runs the
replica now. Prints p50/max over the trials (goal: ≤ 10 s).

The floor is the lifecycle's design: the last heartbeat can be up to one interval (2 s) before
the kill, and release comes ``node_grace + margin`` (8 s) after the controller last saw a
heartbeat; then the Deployment controller creates, the scheduler binds, the agent starts.

    .venv/bin/python benchmarks/bench_node_loss.py [--trials 10]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.fixtures

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
from corral.runtime.imagebuild import build_busybox_image
from tests.fixtures.cluster import Cluster, start_cluster
from tests.fixtures.registry import push_oci_archive, run_registry

SLEEPER = ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 1; done']


async def running_on(cluster: Cluster) -> dict[str, str]:
    """name -> node of the replicas that are Running and not terminating."""
    items, _ = await cluster.api.list(Container, label_selector="app=bench-loss")
    return {c.metadata.name: c.spec.node for c in items
            if c.status.phase == "Running" and not c.metadata.deletion_timestamp}


async def trial(cluster: Cluster) -> float:
    placed: dict[str, str] = {}
    for _ in range(600):
        if len(placed := await running_on(cluster)) == 1:
            break
        await asyncio.sleep(0.1)
    (old_name, node), = placed.items()
    victim = next(w for w in cluster.workers if w.name == node)
    start = time.monotonic()
    await victim.kill()
    while True:
        now = await running_on(cluster)
        if any(name != old_name and n != node for name, n in now.items()):
            elapsed = time.monotonic() - start
            break
        if time.monotonic() - start > 60:
            raise RuntimeError(f"no replacement within 60 s (running: {now})")
        await asyncio.sleep(0.05)
    await victim.start()
    await cluster.wait_node_ready(victim)
    return elapsed


async def main(trials: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-node-loss-", ignore_cleanup_errors=True) as tmp:
        base = Path(tmp)
        for sub in ("registry", "cluster"):
            (base / sub).mkdir()
        archive = await asyncio.to_thread(build_busybox_image, base / "busybox.tar")
        async with run_registry(base / "registry") as registry:
            await push_oci_archive(registry, archive, ref=registry.ref)
            async with start_cluster(base / "cluster", registry, workers=2) as cluster:
                labels = {"app": "bench-loss"}
                await cluster.api.create(Deployment(
                    metadata=ObjectMeta(name="bench-loss"),
                    spec=DeploymentSpec(replicas=1, selector=LabelSelector(match_labels=labels),
                                        template=ContainerTemplate(
                                            metadata=TemplateMeta(labels=labels),
                                            spec=ContainerSpec(image=registry.ref, command=SLEEPER,
                                                               termination_grace_period_seconds=1))),
                ))
                times = []
                for i in range(trials):
                    try:
                        t = await trial(cluster)
                    except RuntimeError:
                        keep = Path(tempfile.mkdtemp(prefix="bench-node-loss-logs-"))
                        for w in cluster.workers:
                            if w.log.exists():
                                shutil.copy(w.log, keep / w.log.name)
                        print(f"trial {i + 1} failed; the workers' logs are kept in {keep}", flush=True)
                        raise
                    times.append(t)
                    print(f"trial {i + 1}: replacement Running after {t:.2f} s", flush=True)
                await cluster.api.delete(Deployment, "bench-loss")
    print(f"node loss -> replacement Running (grace 5 s, default settings), {trials} trials: "
          f"p50 {statistics.median(times):.2f} s, max {max(times):.2f} s, min {min(times):.2f} s (goal <= 10 s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    asyncio.run(main(parser.parse_args().trials))
