"""The CRI log format and its rotating files: what the node's log collector writes and the readers read.

Each record is ``<RFC3339Nano UTC> <stdout|stderr> <F|P> <text>\\n`` (the CRI format): F a full line,
P a part of one — a piece of a line longer than ``MAX_LINE``, or the unfinished end of a stream.
Files rotate by size: ``path`` is current, ``path.1`` … ``path.<K-1>`` are older, the oldest dropped.

``cut_records`` is pure: it turns bytes read from a stream into records and says how many of those
bytes it used, so the caller consumes only those and leaves an unfinished line where it was (in the
pipe: ``runtime/logcollector.py``). ``RotatingFile`` appends records and follows its path: a file
moved away meanwhile (the run before kept as ``--previous``, ``reconcile/logkeeping.py``) is let go
and a new one begun at the path. Standard library only: the collector process imports this alone.
"""

from __future__ import annotations

import os
import time

MAX_LINE = 16 * 1024
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_FILES = 3


def format_timestamp(ns: int) -> str:
    """UTC RFC3339 with nanoseconds, fixed width: ``2026-11-26T05:00:00.123456789Z``."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def format_record(ts: str, stream: str, text: bytes, *, partial: bool = False) -> bytes:
    """One CRI log line for ``text`` (without its newline)."""
    return b"%s %s %s %s\n" % (ts.encode(), stream.encode(), b"P" if partial else b"F", text)


def rotated_path(path: str, index: int) -> str:
    """``path`` for index 0, ``path.N`` for older files."""
    return path if index == 0 else f"{path}.{index}"


def cut_records(data: bytes, stream: str, ts: str, *, final: bool = False) -> tuple[list[bytes], int]:
    """The records in ``data`` and how many of its bytes they hold.

    Every complete line becomes an F record (a line longer than ``MAX_LINE`` is cut into P pieces
    first); text after the last newline is left unused — unless ``MAX_LINE`` of it is there (cut
    into P pieces) or ``final`` says the stream ended (the rest is one P record).
    """
    out: list[bytes] = []
    used = 0
    while (nl := data.find(b"\n", used)) >= 0:
        while nl - used > MAX_LINE:
            out.append(format_record(ts, stream, data[used : used + MAX_LINE], partial=True))
            used += MAX_LINE
        out.append(format_record(ts, stream, data[used:nl]))
        used = nl + 1
    while len(data) - used >= MAX_LINE:
        out.append(format_record(ts, stream, data[used : used + MAX_LINE], partial=True))
        used += MAX_LINE
    if final and used < len(data):
        out.append(format_record(ts, stream, data[used:], partial=True))
        used = len(data)
    return out, used


class RotatingFile:
    """An append-only file that rotates to ``path.1`` … when the next write would pass ``max_bytes``.

    It never makes the directory: where the path's directory is gone (the container's logs were
    kept or removed), writes go on into the file already open, or nowhere (``dropped`` counts them).
    """

    def __init__(self, path: str, *, max_bytes: int, max_files: int) -> None:
        self.path = path
        self.max_bytes = max(1, max_bytes)
        self.max_files = max(1, max_files)
        self.fd = -1
        self.ino = -1
        self.size = 0
        self.dropped = 0

    def _open(self) -> bool:
        self.close()
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except FileNotFoundError:  # no directory
            return False
        st = os.fstat(self.fd)
        self.ino, self.size = st.st_ino, st.st_size
        return True

    def _at_path(self) -> bool:
        """Whether the open file is the one at ``path`` (opening it when not); False: nowhere to write."""
        try:
            ino = os.stat(self.path).st_ino
        except FileNotFoundError:
            ino = -1
        if self.fd >= 0 and ino == self.ino:
            return True
        if ino == -1 and self.fd >= 0 and not os.path.isdir(os.path.dirname(self.path) or "."):
            return True  # the directory went (kept after delete): finish in the file where it went
        return self._open()

    def write(self, data: bytes) -> None:
        """Append whole records, rotating between two of them where the file would pass ``max_bytes``
        (a record longer than that has a file to itself)."""
        if not self._at_path():
            self.dropped += len(data)
            return
        while data:
            room = self.max_bytes - self.size
            if len(data) <= room:
                cut = len(data)
            else:
                cut = data.rfind(b"\n", 0, max(room, 0)) + 1  # the records that fit
                if cut == 0 and self.size:
                    self.rotate()
                    if self.fd < 0:
                        self.dropped += len(data)
                        return
                    continue
                cut = cut or data.find(b"\n") + 1 or len(data)
            self._append(data[:cut])
            data = data[cut:]

    def _append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        self.size += len(data)

    def rotate(self) -> None:
        self.close()
        if self.max_files == 1:
            os.unlink(self.path)
        # Shift path.N-1 → path.N from the oldest down; the replace drops the oldest kept file.
        for index in range(self.max_files - 2, -1, -1):
            src = rotated_path(self.path, index)
            if os.path.exists(src):
                os.replace(src, rotated_path(self.path, index + 1))
        self._open()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            self.ino = -1
