"""Container logs: reading the CRI-format files the node's log collector writes.

Writing is the collector's job (``runtime/logcollector.py``: one process per node reads every
container's stdout and stderr FIFOs, ``runtime/logpipes.py``, so logs keep flowing while the agent
restarts and a slow reader never blocks a container). This module reads:

- ``tail(path, n)`` returns the last ``n`` records, reaching into rotated files when the current one
  has fewer; ``follow(path)`` yields records as they are written and follows the file across
  rotation (it notices a new inode at ``path``, drains the old file, then opens the new one).

Records are the CRI format (``runtime/logrecords.py``), parsed into ``LogLine``. File reads run in a
worker thread.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from corral.runtime.logrecords import DEFAULT_MAX_FILES, rotated_path

_BLOCK = 64 * 1024


@dataclass(frozen=True, slots=True)
class LogLine:
    """One record: its RFC3339Nano time, its stream, whether it is a part of a longer line, its text."""

    time: str
    stream: str
    partial: bool
    text: str

    @classmethod
    def parse(cls, raw: str) -> LogLine:
        """Parse ``<time> <stream> <F|P> <text>``; a malformed line is kept whole as stdout text."""
        parts = raw.rstrip("\n").split(" ", 3)
        if len(parts) == 4 and parts[2] in ("F", "P"):
            return cls(time=parts[0], stream=parts[1], partial=parts[2] == "P", text=parts[3])
        if len(parts) == 3 and parts[2] in ("F", "P"):
            return cls(time=parts[0], stream=parts[1], partial=parts[2] == "P", text="")
        return cls(time="", stream="stdout", partial=False, text=raw.rstrip("\n"))


def read_tail(path: Path, n: int, *, max_files: int = DEFAULT_MAX_FILES) -> list[LogLine]:
    """The last ``n`` records of the log at ``path`` and its rotated files, oldest first (blocking)."""
    if n <= 0:
        return []
    lines: list[bytes] = []
    for index in range(max(1, max_files)):
        file = Path(rotated_path(str(path), index))
        try:
            with file.open("rb") as f:
                older = _last_lines(f.fileno(), n - len(lines))
        except FileNotFoundError:
            if index == 0:
                continue
            break
        lines[:0] = older
        if len(lines) >= n:
            break
    return [LogLine.parse(line.decode(errors="replace")) for line in lines[-n:]]


async def tail(path: Path, n: int, *, max_files: int = DEFAULT_MAX_FILES) -> list[LogLine]:
    """``read_tail`` off the event loop."""
    return await asyncio.to_thread(read_tail, path, n, max_files=max_files)


def _last_lines(fd: int, n: int, *, end: int | None = None) -> list[bytes]:
    """The last ``n`` complete lines of an open file (before offset ``end``), read backwards in blocks."""
    pos = os.fstat(fd).st_size if end is None else end
    buf = b""
    while pos > 0 and buf.count(b"\n") <= n:
        step = min(_BLOCK, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
    lines = buf.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the text after the final newline
    elif lines:
        lines.pop()  # an unfinished last line: the collector is still writing it
    if pos > 0 and lines:
        lines.pop(0)  # the first piece may be cut
    return lines[-n:] if n else []


async def follow(
    path: Path,
    *,
    tail_lines: int = 0,
    poll_interval: float = 0.2,
    max_files: int = DEFAULT_MAX_FILES,
) -> AsyncIterator[LogLine]:
    """Yield the last ``tail_lines`` records, then every new record as it lands, across rotations.

    It never ends by itself; the caller stops iterating (or cancels) when it is done.
    """
    follower = _Follower(path)
    try:
        for line in await asyncio.to_thread(follower.start, tail_lines, max_files):
            yield line
        while True:
            lines = await asyncio.to_thread(follower.poll)
            if not lines:
                await asyncio.sleep(poll_interval)
                continue
            for line in lines:
                yield line
    finally:
        follower.close()


class _Follower:
    """The blocking half of ``follow``: an open file, an offset, and an unfinished line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1
        self.ino = -1
        self.pos = 0
        self.pending = b""

    def start(self, tail_lines: int, max_files: int) -> list[LogLine]:
        if not self._open_current():
            return []
        # Follow from the end of the last complete record; the tail is what lies before it.
        size = os.fstat(self.fd).st_size
        data = os.pread(self.fd, min(size, _BLOCK), max(0, size - _BLOCK))
        cut = data.rfind(b"\n")
        self.pos = size - (len(data) - cut - 1) if cut >= 0 else size
        if tail_lines <= 0:
            return []
        lines = _last_lines(self.fd, tail_lines, end=self.pos)
        for index in range(1, max(1, max_files)):
            if len(lines) >= tail_lines:
                break
            try:
                with open(rotated_path(str(self.path), index), "rb") as f:
                    lines[:0] = _last_lines(f.fileno(), tail_lines - len(lines))
            except FileNotFoundError:
                break
        return [LogLine.parse(raw.decode(errors="replace")) for raw in lines[-tail_lines:]]

    def _open_current(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        self.close()
        self.fd, self.ino, self.pos, self.pending = fd, os.fstat(fd).st_ino, 0, b""
        return True

    def poll(self) -> list[LogLine]:
        if self.fd < 0:
            return self._parse(self._read()) if self._open_current() else []
        out = self._read()
        try:
            current = os.stat(self.path).st_ino
        except FileNotFoundError:
            current = self.ino
        if current != self.ino:
            out += self._read()  # drain the rotated file before moving on
            self._open_current()
            out += self._read()
        elif os.fstat(self.fd).st_size < self.pos:
            self.pos, self.pending = 0, b""  # truncated in place
        return self._parse(out)

    def _read(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            data = os.pread(self.fd, _BLOCK, self.pos)
            if not data:
                break
            self.pos += len(data)
            chunks.append(data)
        return b"".join(chunks)

    def _parse(self, data: bytes) -> list[LogLine]:
        buf = self.pending + data
        cut = buf.rfind(b"\n")
        if cut < 0:
            self.pending = buf
            return []
        self.pending = buf[cut + 1 :]
        return [LogLine.parse(raw.decode(errors="replace")) for raw in buf[:cut].split(b"\n")]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
