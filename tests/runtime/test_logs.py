"""Container logs: the CRI record format, line splitting, rotation, the readers, and the real shipper."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from corral.runtime.logs import LogLine, follow, install_shipper, log_uri, read_tail, tail
from corral.runtime.logshipper import (
    MAX_LINE,
    LineSplitter,
    RotatingFile,
    format_record,
    format_timestamp,
    parse_args,
)

TS = "2026-11-26T05:00:00.123456789Z"


def records(path: Path) -> list[LogLine]:
    return [LogLine.parse(line) for line in path.read_text().splitlines()]


def test_timestamps_are_utc_rfc3339_with_nine_fraction_digits() -> None:
    assert format_timestamp(1_795_669_200_123_456_789) == "2026-11-26T05:00:00.123456789Z"
    assert format_timestamp(1_795_669_200_000_000_001).endswith(":00.000000001Z")


def test_a_record_round_trips_through_the_cri_format() -> None:
    raw = format_record(TS, "stderr", b"hello world").decode()
    assert raw == f"{TS} stderr F hello world\n"
    assert LogLine.parse(raw) == LogLine(time=TS, stream="stderr", partial=False, text="hello world")
    assert LogLine.parse(f"{TS} stdout F ") == LogLine(TS, "stdout", False, "")


def test_lines_split_across_reads_are_joined_and_the_rest_waits_for_its_newline() -> None:
    split = LineSplitter("stdout")
    assert split.feed(b"hel", TS) == []
    assert split.feed(b"lo\nwor", TS) == [format_record(TS, "stdout", b"hello")]
    assert split.feed(b"ld\n\n", TS) == [format_record(TS, "stdout", b"world"), format_record(TS, "stdout", b"")]
    assert split.pending == b""


def test_a_line_longer_than_the_limit_is_cut_into_partial_records() -> None:
    split = LineSplitter("stdout")
    out = split.feed(b"x" * (MAX_LINE * 2 + 5) + b"\n", TS)
    assert [LogLine.parse(r.decode()).partial for r in out] == [True, True, False]
    assert sum(len(LogLine.parse(r.decode()).text) for r in out) == MAX_LINE * 2 + 5


def test_an_unfinished_line_at_the_end_of_the_stream_is_kept_as_partial() -> None:
    split = LineSplitter("stderr")
    split.feed(b"no newline", TS)
    assert split.flush(TS) == [format_record(TS, "stderr", b"no newline", partial=True)]


def test_flags_are_order_free_pairs_as_the_shim_passes_them() -> None:
    assert parse_args(["--max-files", "2", "--path", "/x", "--max-bytes", "10"]) == ("/x", 10, 2)
    assert parse_args(["--path=/y"])[0] == "/y"


def test_the_log_uri_names_the_shipper_and_carries_the_flags_as_query_keys(tmp_path: Path) -> None:
    uri = log_uri(Path("/opt/bin/corral-logshipper"), path=tmp_path / "a b.log", max_bytes=100, max_files=2)
    parsed = urlparse(uri)
    assert parsed.scheme == "binary"
    assert parsed.path == "/opt/bin/corral-logshipper"
    assert parse_qs(parsed.query) == {
        "--path": [str(tmp_path / "a b.log")],
        "--max-bytes": ["100"],
        "--max-files": ["2"],
    }


def test_rotation_keeps_at_most_the_given_number_of_files(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    out = RotatingFile(str(log), max_bytes=200, max_files=3)
    for i in range(40):
        out.write(format_record(TS, "stdout", b"line %d" % i))
    out.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.log", "c.log.1", "c.log.2"]
    assert all(p.stat().st_size <= 200 for p in tmp_path.iterdir())
    assert records(log)[-1].text == "line 39"


def test_tail_reaches_into_rotated_files_for_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    out = RotatingFile(str(log), max_bytes=300, max_files=5)
    for i in range(20):
        out.write(format_record(TS, "stdout", b"line %d" % i))
    out.close()
    last = read_tail(log, 7, max_files=5)
    assert [line.text for line in last] == [f"line {i}" for i in range(13, 20)]
    assert read_tail(tmp_path / "missing.log", 5) == []


async def test_follow_yields_the_tail_then_new_lines_across_a_rotation(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    out = RotatingFile(str(log), max_bytes=400, max_files=3)
    out.write(format_record(TS, "stdout", b"before"))
    got: list[str] = []

    async def reader() -> None:
        async for line in follow(log, tail_lines=1, poll_interval=0.02):
            got.append(line.text)
            if line.text == "line 29":
                return

    task = asyncio.create_task(reader())
    await asyncio.sleep(0.1)
    for i in range(30):
        out.write(format_record(TS, "stdout", b"line %d" % i))
        if i % 5 == 0:
            await asyncio.sleep(0.03)
    out.close()
    await asyncio.wait_for(task, 5)
    assert got == ["before"] + [f"line {i}" for i in range(30)]
    assert len(os.listdir(tmp_path)) == 3  # it did rotate while following


def _high_fd(fd: int) -> int:
    new = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return new


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_the_installed_shipper_writes_both_streams_and_exits_on_sigterm(tmp_path: Path) -> None:
    shipper = install_shipper(tmp_path / "bin")
    assert install_shipper(tmp_path / "bin") == shipper  # unchanged: not rewritten
    log = tmp_path / "logs" / "c.log"
    out_r, out_w = map(_high_fd, os.pipe())
    err_r, err_w = map(_high_fd, os.pipe())
    ready_r, ready_w = map(_high_fd, os.pipe())
    started = time.perf_counter()
    proc = subprocess.Popen(  # noqa: ASYNC220 - a plain child with chosen fds; reaped below
        [
            "/bin/bash",
            "-c",
            f'exec "$0" "$@" 3<&{out_r}- 4<&{err_r}- 5>&{ready_w}-',
            str(shipper),
            *("--max-files", "2", "--path", str(log), "--max-bytes", "100000"),
        ],
        pass_fds=(out_r, err_r, ready_w),
        env={"CONTAINER_ID": "c1", "CONTAINER_NAMESPACE": "corral"},
    )
    try:
        for fd in (out_r, err_r, ready_w):
            os.close(fd)
        assert await asyncio.wait_for(asyncio.to_thread(os.read, ready_r, 1), 10) == b""  # readiness: the pipe closes
        ready_ms = (time.perf_counter() - started) * 1000
        os.write(out_w, b"hello\npart")
        os.write(err_w, b"oops\n")
        await asyncio.sleep(0.2)
        rss_kb = _rss_kb(proc.pid)
        print(f"\nshipper ready in {ready_ms:.1f} ms, RSS {rss_kb / 1024:.1f} MiB")
        assert rss_kb < 30 * 1024
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for fd in (out_w, err_w, ready_r):
            os.close(fd)
    got = {(r.stream, r.text, r.partial) for r in records(log)}
    assert got == {("stdout", "hello", False), ("stderr", "oops", False), ("stdout", "part", True)}
    assert [line.text for line in await tail(log, 1)] in (["part"], ["oops"], ["hello"])
