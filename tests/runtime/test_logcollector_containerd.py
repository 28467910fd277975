"""The node's log collector under a real container (containerd + runc shim): kill -9 it while the container
counts, start it again, and no number is missing while the container's writes never wait a second."""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from corral.runtime import logpipes
from corral.runtime.client import Client
from corral.runtime.containers import create_container, delete_container
from corral.runtime.images import Image
from corral.runtime.logs import read_tail
from corral.runtime.spec import build_spec
from corral.runtime.tasks import Stdio, Task, create_task
from tests.fixtures.cluster import eventually

pytestmark = pytest.mark.containerd

COUNT = 20_000
PAD = "x" * 120  # ~2.5 MiB in all: the pipes fill within a few hundred lines while the collector is away
# Each line: the number, then the host's uptime (centiseconds) when the shell wrote it; a gap in
# uptime between two lines is how long a write waited.
# paced (0.2 s every 1,000 lines, at least 4 s in all) so the collector is killed mid-count however fast the machine is
COUNTER = (f'i=0; while [ $i -lt {COUNT} ]; do read up rest < /proc/uptime; echo "$i $up {PAD}"; i=$((i+1)); '
           f'[ $((i % 1000)) -eq 0 ] && sleep 0.2; done')


@asynccontextmanager
async def node_logs(tmp_path: Path, cid: str) -> AsyncIterator[tuple[Path, Stdio, logpipes.ReadEnds]]:
    """What the agent does for a container's output: its log dir, FIFOs and read ends; removed afterwards."""
    log = tmp_path / "logs" / cid / "container.log"
    log.parent.mkdir(parents=True)
    fifos = logpipes.ensure(tmp_path, cid)
    agent = logpipes.ReadEnds()
    agent.hold(cid, fifos)
    try:
        yield log, Stdio(str(fifos[0]), str(fifos[1])), agent
    finally:
        agent.release_all()
        await asyncio.to_thread(logpipes.remove, tmp_path, cid)


def lines_of(log: Path) -> list[str]:
    recs = read_tail(log, 10**9, max_files=3)
    return "".join(r.text + ("" if r.partial else "\n") for r in recs if r.stream == "stdout").splitlines()


async def test_killing_the_collector_while_a_container_counts_loses_no_number_and_never_blocks_it_a_second(
    ctr_client: Client, busybox_image: Image, tmp_path: Path,
) -> None:
    cid = f"count-{secrets.token_hex(3)}"
    collector = logpipes.LogCollector(tmp_path)  # 10 MiB x 3 files: nothing rotates away here
    await collector.start()
    spec = build_spec(container_id=cid, image_config=busybox_image.config, command=["sh", "-c", COUNTER])
    kills = 0
    try:
        async with node_logs(tmp_path, cid) as (log, stdio, _):
            try:
                await create_container(ctr_client, id=cid, image=busybox_image, spec=spec)
                exited = await (await create_task(ctr_client, cid, stdio=stdio)).start()
                started = time.monotonic()
                waiting = asyncio.ensure_future(exited.wait(timeout=120))
                while not waiting.done() and kills < 5:
                    await asyncio.sleep(0.4)
                    assert collector.pid is not None
                    os.kill(collector.pid, signal.SIGKILL)  # as a crash would
                    await collector.wait()
                    kills += 1
                    await collector.start()  # what the agent's Supervisor does
                status = await waiting
                ran = time.monotonic() - started
                assert status.code == 0

                async def all_written() -> None:
                    got = lines_of(log)
                    assert got and got[-1].startswith(f"{COUNT - 1} "), got[-1:] or "nothing"

                await eventually(all_written, timeout=30, what="the last number in the log")
            finally:
                await delete_container(ctr_client, cid)
    finally:
        await collector.stop()
    got = lines_of(log)
    numbers = [int(line.split()[0]) for line in got]
    assert set(numbers) == set(range(COUNT)), f"lost: {sorted(set(range(COUNT)) - set(numbers))[:10]}"
    uptimes = [float(line.split()[1]) for line in got]
    longest_wait = max(b - a for a, b in itertools.pairwise(uptimes))
    assert kills >= 3, f"the container ended before the collector was killed 3 times ({ran:.1f}s)"
    assert longest_wait < 1.0, f"a write waited {longest_wait:.2f}s"
    print(f"\n{COUNT} lines in {ran:.1f}s, collector killed {kills} times: longest wait between two lines "
          f"{longest_wait * 1000:.0f} ms, {len(numbers) - COUNT} repeated")


async def test_a_tasks_last_output_waits_in_its_pipes_when_it_ends_while_the_collector_is_down(
    ctr_client: Client, busybox_image: Image, tmp_path: Path,
) -> None:
    cid = f"last-{secrets.token_hex(3)}"
    spec = build_spec(container_id=cid, image_config=busybox_image.config,
                      command=["sh", "-c", "echo first; echo oops >&2; printf 'no newline'"])
    collector = logpipes.LogCollector(tmp_path)
    try:
        async with node_logs(tmp_path, cid) as (log, stdio, agent):
            try:
                await create_container(ctr_client, id=cid, image=busybox_image, spec=spec)
                task = await create_task(ctr_client, cid, stdio=stdio)
                assert (await (await task.start()).wait(timeout=20)).code == 0  # it ran and ended, no collector
                await Task(ctr_client, cid).delete()  # the shim closed its ends: only the agent's are left
                await collector.start()

                async def written(*expected: tuple[str, str, bool]) -> None:
                    assert {(r.stream, r.text, r.partial) for r in read_tail(log, 10)} == set(expected)

                await eventually(lambda: written(("stdout", "first", False), ("stderr", "oops", False)),
                                 timeout=15, what="the ended task's lines in the log")
                # its unfinished last line waits for the stream's end, which a collector that came later
                # learns when the container goes (its FIFOs removed)
                agent.release_all()
                await asyncio.to_thread(logpipes.remove, tmp_path, cid)
                await eventually(lambda: written(("stdout", "first", False), ("stderr", "oops", False),
                                                 ("stdout", "no newline", True)), timeout=15,
                                 what="the unfinished line")
            finally:
                await delete_container(ctr_client, cid)
    finally:
        await collector.stop()
