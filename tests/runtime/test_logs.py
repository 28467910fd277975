"""Container logs: the CRI record format, line cutting, rotation and the readers."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from corral.runtime.logrecords import MAX_LINE, RotatingFile, cut_records, format_record, format_timestamp
from corral.runtime.logs import LogLine, follow, read_tail

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


def test_complete_lines_become_records_and_an_unfinished_one_is_left_unused() -> None:
    records, used = cut_records(b"hello\nwor", "stdout", TS)
    assert (records, used) == ([format_record(TS, "stdout", b"hello")], 6)
    records, used = cut_records(b"world\n\n", "stdout", TS)
    assert records == [format_record(TS, "stdout", b"world"), format_record(TS, "stdout", b"")]
    assert used == 7
    assert cut_records(b"no newline yet", "stdout", TS) == ([], 0)


def test_a_line_longer_than_the_limit_is_cut_into_partial_records() -> None:
    out, used = cut_records(b"x" * (MAX_LINE * 2 + 5) + b"\n", "stdout", TS)
    assert [LogLine.parse(r.decode()).partial for r in out] == [True, True, False]
    assert sum(len(LogLine.parse(r.decode()).text) for r in out) == MAX_LINE * 2 + 5
    assert used == MAX_LINE * 2 + 6
    out, used = cut_records(b"y" * (MAX_LINE + 3), "stdout", TS)  # no newline: the limit's worth goes as P
    assert [LogLine.parse(r.decode()).partial for r in out] == [True]
    assert used == MAX_LINE


def test_an_unfinished_line_at_the_end_of_the_stream_is_kept_as_partial() -> None:
    assert cut_records(b"no newline", "stderr", TS, final=True) == (
        [format_record(TS, "stderr", b"no newline", partial=True)], 10)


def test_a_rotating_file_begins_a_new_file_when_its_log_is_moved_aside_and_never_makes_the_directory(
    tmp_path: Path,
) -> None:
    log = tmp_path / "u1" / "container.log"
    log.parent.mkdir()
    out = RotatingFile(str(log), max_bytes=10_000, max_files=3)
    out.write(format_record(TS, "stdout", b"run 1"))
    (tmp_path / "previous.log").write_bytes(b"")
    log.rename(tmp_path / "previous.log")  # logkeeping.begin_run
    out.write(format_record(TS, "stdout", b"run 2"))
    assert [r.text for r in records(log)] == ["run 2"]
    assert [r.text for r in records(tmp_path / "previous.log")] == ["run 1"]
    log.parent.rename(tmp_path / "kept")  # logkeeping.keep: the last lines follow into the kept file
    out.write(format_record(TS, "stdout", b"last"))
    assert [r.text for r in records(tmp_path / "kept" / "container.log")] == ["run 2", "last"]
    out.close()
    gone = RotatingFile(str(tmp_path / "removed" / "container.log"), max_bytes=10_000, max_files=3)
    gone.write(b"x\n")
    assert gone.dropped == 2 and not (tmp_path / "removed").exists()


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
