"""The node's log collector in a running cluster: killed, it is started again by the agent; the agent killed,
it keeps collecting and the next agent adopts it — and `corral logs` shows every line either way."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from corral.model.resources import Container, ContainerSpec, ObjectMeta
from corral.runtime.logcollector import PID_NAME, PIPES_DIR
from corral.runtime.logpipes import is_collector
from tests.fixtures.cluster import Cluster, Worker, eventually, start_cluster
from tests.fixtures.registry import Registry
from tests.flow.test_create_flow import delete_and_wait

COUNT = 8000
# a number a line, ~130 bytes, then a pause: a few seconds of output that fills the pipes quickly
COUNTER = f'i=0; while [ $i -lt {COUNT} ]; do echo "$i {"x" * 120}"; i=$((i+1)); done; sleep 600'


@pytest_asyncio.fixture(scope="module")
async def logged(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> AsyncIterator[Cluster]:
    async with start_cluster(tmp_path_factory.mktemp("logged"), registry, workers=1) as c:
        yield c


def collector_pid(worker: Worker) -> int:
    pid = int((worker.agent_dir / PIPES_DIR / PID_NAME).read_text().strip())
    assert is_collector(pid, worker.agent_dir), f"pid {pid} is not the log collector"
    return pid


async def logs(cluster: Cluster, name: str) -> list[str]:
    return (await cluster.api.request("GET", f"/namespaces/default/containers/{name}/logs")).decode().splitlines()


async def all_numbers(cluster: Cluster, name: str) -> None:
    numbers = [int(line.split()[0]) for line in await logs(cluster, name)]
    assert set(numbers) == set(range(COUNT)), f"missing {len(set(range(COUNT)) - set(numbers))} numbers"


async def counter(cluster: Cluster, name: str) -> None:
    await cluster.api.create(Container(metadata=ObjectMeta(name=name),
                                       spec=ContainerSpec(image=cluster.image, command=["sh", "-c", COUNTER],
                                                          termination_grace_period_seconds=1)))
    await cluster.wait_for(name, lambda c: c.status.phase == "Running", timeout=60)


async def test_a_killed_collector_is_started_again_by_the_agent_and_no_line_is_lost(logged: Cluster) -> None:
    worker = logged.worker
    await eventually(lambda: asyncio.to_thread(collector_pid, worker), timeout=30, what="the collector runs")
    await counter(logged, "counted")
    killed: list[int] = []
    for _ in range(3):
        pid = await eventually(lambda: asyncio.to_thread(collector_pid, worker), timeout=10, what="a collector")
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
        await asyncio.sleep(0.3)

    async def restarted() -> int:
        pid = await asyncio.to_thread(collector_pid, worker)
        assert pid not in killed
        return pid

    await eventually(restarted, timeout=30, what="the agent starts the collector again")
    await eventually(lambda: all_numbers(logged, "counted"), timeout=60, what="every number in `corral logs`")
    await delete_and_wait(logged, "counted")


async def test_the_collector_outlives_a_killed_agent_and_the_next_agent_adopts_it(logged: Cluster) -> None:
    worker = logged.worker
    before = await eventually(lambda: asyncio.to_thread(collector_pid, worker), timeout=30, what="the collector")
    await counter(logged, "through-a-crash")
    await worker.kill()  # the agent dies while the container writes
    await asyncio.sleep(1.0)
    assert await asyncio.to_thread(collector_pid, worker) == before  # still collecting
    log = worker.agent_dir / "logs"
    assert any(Path(log).rglob("container.log"))
    await worker.start()
    await logged.wait_node_ready(worker)
    await eventually(lambda: all_numbers(logged, "through-a-crash"), timeout=60, what="every number after the crash")
    assert await asyncio.to_thread(collector_pid, worker) == before  # adopted, not replaced
    await delete_and_wait(logged, "through-a-crash")
