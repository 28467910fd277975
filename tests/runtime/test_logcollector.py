"""The node's log collector over real FIFOs: both streams, unfinished lines, rotation, kill -9 without loss.

Each test holds the FIFOs as containerd's runc shim does (a write end it copies into, and a read end it
never reads) and as the agent does (a read end until the container is removed, ``logpipes.ReadEnds``),
so what the collector sees is what it sees under a real task; tests/runtime/test_logcollector_containerd.py
runs a real container.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path

import pytest

from corral.runtime import logpipes
from corral.runtime.logcollector import PID_NAME, PIPES_DIR
from corral.runtime.logs import LogLine
from tests.fixtures.cluster import eventually


def log_of(data_dir: Path, uid: str) -> Path:
    return data_dir / "logs" / uid / "container.log"


def records(path: Path) -> list[LogLine]:
    return [LogLine.parse(line) for line in path.read_text().splitlines()] if path.exists() else []


def text_of(recs: list[LogLine], stream: str = "stdout") -> str:
    """The stream as the container wrote it: P records joined to what follows them."""
    return "".join(r.text + ("" if r.partial else "\n") for r in recs if r.stream == stream)


@contextmanager
def shim_ends(path: Path) -> Iterator[int]:
    """A FIFO opened as the shim opens it: a read end held and never read, and a write end (yielded, blocking)."""
    held = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    out = os.open(path, os.O_WRONLY)
    try:
        yield out
    finally:
        with suppress(OSError):
            os.close(out)
        os.close(held)


@pytest.fixture
def agent_reads() -> Iterator[logpipes.ReadEnds]:
    ends = logpipes.ReadEnds()
    yield ends
    ends.release_all()


def container(data_dir: Path, uid: str, agent: logpipes.ReadEnds) -> tuple[Path, Path]:
    """What the agent does before a task starts: the log directory, the FIFOs, its read ends on them."""
    (data_dir / "logs" / uid).mkdir(parents=True, exist_ok=True)
    fifos = logpipes.ensure(data_dir, uid)
    agent.hold(uid, fifos)
    return fifos


@asynccontextmanager
async def collector(data_dir: Path, *extra: str) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await start_collector(data_dir, *extra)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def start_collector(data_dir: Path, *extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "corral.runtime.logcollector", "--data-dir", str(data_dir), *extra)


async def test_the_collector_writes_every_containers_stdout_and_stderr_into_its_log(tmp_path: Path, agent_reads: logpipes.ReadEnds) -> None:
    (out1, err1), (out2, _) = container(tmp_path, "u1", agent_reads), container(tmp_path, "u2", agent_reads)
    with shim_ends(out1) as o1, shim_ends(err1) as e1, shim_ends(out2) as o2:
        os.write(o1, b"hello\n")  # written before the collector runs: it waits in the pipe
        async with collector(tmp_path):
            os.write(e1, b"oops\n")
            os.write(o2, b"other\n")

            async def written() -> None:
                assert {(r.stream, r.text) for r in records(log_of(tmp_path, "u1"))} == {
                    ("stdout", "hello"), ("stderr", "oops")}
                assert [r.text for r in records(log_of(tmp_path, "u2"))] == ["other"]

            await eventually(written, timeout=10, what="both containers' lines are in their logs")


async def test_an_unfinished_line_waits_for_its_newline_and_ends_as_partial_when_its_writers_close(
    tmp_path: Path, agent_reads: logpipes.ReadEnds,
) -> None:
    out, _ = container(tmp_path, "u1", agent_reads)
    async with collector(tmp_path):
        with shim_ends(out) as w:
            os.write(w, b"Name? ")
            await asyncio.sleep(0.5)
            assert records(log_of(tmp_path, "u1")) == []  # still in the pipe
            os.write(w, b"corral\nbye")
            await eventually(lambda: _texts(tmp_path, ["Name? corral"]), timeout=10, what="the completed line")
        await eventually(lambda: _texts(tmp_path, ["Name? corral", "bye"]), timeout=10, what="the end as P")
    assert records(log_of(tmp_path, "u1"))[-1].partial


async def _texts(data_dir: Path, expected: list[str]) -> None:
    assert [r.text for r in records(log_of(data_dir, "u1"))] == expected


async def test_the_collector_rotates_a_chatty_containers_log(tmp_path: Path, agent_reads: logpipes.ReadEnds) -> None:
    out, _ = container(tmp_path, "u1", agent_reads)
    async with collector(tmp_path, "--max-bytes", "4000", "--max-files", "3"):
        with shim_ends(out) as w:
            for i in range(400):
                os.write(w, b"line %d\n" % i)
        await eventually(lambda: _last_is(tmp_path, "line 399"), timeout=10, what="the last line")
    files = sorted(p.name for p in (tmp_path / "logs" / "u1").iterdir())
    assert files == ["container.log", "container.log.1", "container.log.2"]
    assert all((tmp_path / "logs" / "u1" / f).stat().st_size <= 4000 for f in files)


async def _last_is(data_dir: Path, text: str) -> None:
    recs = records(log_of(data_dir, "u1"))
    assert recs and recs[-1].text == text


async def test_killing_the_collector_and_starting_it_again_loses_no_line_and_blocks_the_writer_under_a_second(
    tmp_path: Path, agent_reads: logpipes.ReadEnds,
) -> None:
    out, _ = container(tmp_path, "u1", agent_reads)
    count = 60_000
    longest_write = 0.0

    def counter(fd: int) -> None:
        """Numbers in writes that cut lines anywhere, as a buffered writer's would."""
        nonlocal longest_write
        data = b"".join(b"%d\n" % i for i in range(count))
        for start in range(0, len(data), 997):
            began = time.monotonic()
            os.write(fd, data[start : start + 997])
            longest_write = max(longest_write, time.monotonic() - began)
            if start % (997 * 20) == 0:
                time.sleep(0.002)  # ~10k lines a second: the pipe fills while the collector is away

    with shim_ends(out) as w:
        writer = threading.Thread(target=counter, args=(w,))
        proc = await start_collector(tmp_path)
        try:
            writer.start()
            for _ in range(4):
                await asyncio.sleep(0.8)
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
                proc = await start_collector(tmp_path)
            await asyncio.to_thread(writer.join, 60)
            await eventually(lambda: _last_is(tmp_path, str(count - 1)), timeout=20, what="the last number")
        finally:
            writer.join(60)
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            await proc.wait()
    numbers = [int(line) for line in text_of(records(log_of(tmp_path, "u1"))).splitlines()]
    assert set(numbers) == set(range(count)), f"lost: {sorted(set(range(count)) - set(numbers))[:10]}"
    assert len(numbers) - count < 4 * 1000  # at worst one peek's records repeated per kill
    assert longest_write < 1.0, f"a write blocked {longest_write:.2f}s"
    print(f"\nlongest write while the collector was killed 4 times: {longest_write * 1000:.0f} ms; "
          f"{len(numbers) - count} records repeated")


async def test_a_second_collector_on_the_same_directory_waits_until_the_first_is_gone(tmp_path: Path, agent_reads: logpipes.ReadEnds) -> None:
    out, _ = container(tmp_path, "u1", agent_reads)
    async with collector(tmp_path) as first:
        pid_file = tmp_path / PIPES_DIR / PID_NAME

        async def pid_written(pid: int) -> None:
            assert pid_file.read_text().strip() == str(pid)

        await eventually(lambda: pid_written(first.pid), timeout=10, what="the first one's pid")
        async with collector(tmp_path) as second:
            await asyncio.sleep(0.5)
            assert pid_file.read_text().strip() == str(first.pid)  # still waiting for the lock
            first.send_signal(signal.SIGKILL)
            await first.wait()
            await eventually(lambda: pid_written(second.pid), timeout=10, what="the second takes over")
            with shim_ends(out) as w:
                os.write(w, b"after\n")
            await eventually(lambda: _texts(tmp_path, ["after"]), timeout=10, what="the second collects")


async def test_a_restarted_agent_adopts_the_running_collector_and_stops_it_on_a_clean_stop(tmp_path: Path, agent_reads: logpipes.ReadEnds) -> None:
    first = logpipes.LogCollector(tmp_path)
    await first.start()
    try:
        assert first.pid is not None
        again = logpipes.LogCollector(tmp_path)  # as a new agent after the old one was killed
        await again.start()
        assert again.pid == first.pid
        waiter = asyncio.create_task(again.wait())
        await again.stop()
        await asyncio.wait_for(waiter, 10)  # an adopted process is waited for through its pidfd
        assert await asyncio.wait_for(first.wait(), 10) is not None  # it is gone
    finally:
        await first.stop()


async def test_a_clean_stop_of_the_agent_leaves_the_collector_running_while_containers_are_left(
    tmp_path: Path, agent_reads: logpipes.ReadEnds,
) -> None:
    container(tmp_path, "u1", agent_reads)
    first = logpipes.LogCollector(tmp_path)
    await first.start()
    try:
        assert not await first.stop_if_idle()  # u1's FIFOs are there: it keeps collecting
        again = logpipes.LogCollector(tmp_path)
        await again.start()
        assert again.pid is not None and again.pid == await asyncio.to_thread(logpipes.running_collector, tmp_path)
        agent_reads.release_all()
        await asyncio.to_thread(logpipes.remove, tmp_path, "u1")
        assert await again.stop_if_idle()  # the last container gone: it stops
        assert await asyncio.to_thread(logpipes.running_collector, tmp_path) is None
    finally:
        await first.stop()
