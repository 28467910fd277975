"""Deleted containers are terminated in parallel, each on its own grace timer, not queued behind the
agent's workers."""

from __future__ import annotations

import asyncio
import time

from corral.model.resources import Container, ContainerSpec, ObjectMeta
from tests.fixtures.cluster import Cluster, eventually

COUNT, GRACE = 20, 4


async def test_twenty_containers_that_ignore_sigterm_are_all_gone_after_about_one_grace_period(
        cluster: Cluster) -> None:
    names = [f"stubborn-{i}" for i in range(COUNT)]
    for name in names:  # they ignore SIGTERM: only the SIGKILL after the grace period ends them
        await cluster.api.create(Container(metadata=ObjectMeta(name=name, labels={"app": "stubborn"}), spec=ContainerSpec(
            image=cluster.image, command=["sh", "-c", "trap '' TERM; while :; do sleep 1; done"],
            termination_grace_period_seconds=GRACE)))
    try:
        async def all_running() -> None:
            items, _ = await cluster.api.list(Container, label_selector="app=stubborn")
            assert sum(c.status.phase == "Running" for c in items) == COUNT

        await eventually(all_running, timeout=120, what=f"{COUNT} containers Running")
        await asyncio.sleep(1.0)  # their shells have set the trap
        started = time.monotonic()
        await asyncio.gather(*(cluster.api.delete(Container, name) for name in names))

        async def all_gone() -> None:
            items, _ = await cluster.api.list(Container, label_selector="app=stubborn")
            assert not items, [c.metadata.name for c in items]

        await eventually(all_gone, timeout=60, what="every stubborn container gone")
        took = time.monotonic() - started
        # one grace period (plus removal); queued behind 8 workers it would be 3 rounds of it (12 s+)
        assert took < 2 * GRACE + 1, f"{COUNT} terminations took {took:.1f}s with a {GRACE}s grace"
    finally:
        for name in names:
            try:
                await cluster.api.delete(Container, name, grace_period=0)
            except Exception:
                continue
