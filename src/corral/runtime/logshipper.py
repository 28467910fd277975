"""The per-container log shipper: containerd's ``binary://`` log program, writing CRI-format log files.

containerd's runc shim (1.6, ``pkg/process/io.go`` ``NewBinaryIO``) starts the program named by a
task's ``binary:///path?key=value`` stdio URI once per task: the container's stdout is on fd 3,
its stderr on fd 4, and fd 5 is a readiness pipe the program closes when it is ready (the shim
waits for that before starting the container). The environment carries ``CONTAINER_ID`` and
``CONTAINER_NAMESPACE``. Each query pair becomes two arguments, the key verbatim and then its
value, in Go's map order (random) — so the URI's keys are the flags themselves
(``?--path=/x&--max-bytes=N&--max-files=K``) and flags are parsed as order-free pairs. When the
task is deleted the shim closes the pipes and sends SIGTERM; the shipper drains and exits.

Each line is written as ``<RFC3339Nano UTC> <stdout|stderr> <F|P> <text>\\n`` (the CRI format: F a
full line, P a part of a line longer than ``MAX_LINE`` or cut by the end of the stream). Files rotate
by size: ``path`` is current, ``path.1`` … ``path.<K-1>`` are older, the oldest dropped.

The program runs once per container, so it is stdlib-only, avoids heavy imports (no argparse, no
asyncio) and is installed as a standalone script (``corral.runtime.logs.install_shipper``) run with
``python -IS`` so it starts in milliseconds and stays small. ``python -m corral.runtime.logshipper``
works too.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

STDOUT_FD = 3
STDERR_FD = 4
READY_FD = 5
MAX_LINE = 16 * 1024
READ_SIZE = 64 * 1024
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


class LineSplitter:
    """Cuts one stream's bytes into records; keeps an unfinished line until its newline comes."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.pending = b""

    def feed(self, data: bytes, ts: str) -> list[bytes]:
        buf = self.pending + data
        out: list[bytes] = []
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            line = buf[start:nl]
            while len(line) > MAX_LINE:
                out.append(format_record(ts, self.stream, line[:MAX_LINE], partial=True))
                line = line[MAX_LINE:]
            out.append(format_record(ts, self.stream, line))
            start = nl + 1
        rest = buf[start:]
        while len(rest) >= MAX_LINE:
            out.append(format_record(ts, self.stream, rest[:MAX_LINE], partial=True))
            rest = rest[MAX_LINE:]
        self.pending = rest
        return out

    def flush(self, ts: str) -> list[bytes]:
        """The end of the stream: what is left is a partial line."""
        if not self.pending:
            return []
        rest, self.pending = self.pending, b""
        return [format_record(ts, self.stream, rest, partial=True)]


class RotatingFile:
    """An append-only file that rotates to ``path.1`` … when the next write would pass ``max_bytes``."""

    def __init__(self, path: str, *, max_bytes: int, max_files: int) -> None:
        self.path = path
        self.max_bytes = max(1, max_bytes)
        self.max_files = max(1, max_files)
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        self.fd = -1
        self.size = 0
        self._open()

    def _open(self) -> None:
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.size = os.fstat(self.fd).st_size

    def write(self, data: bytes) -> None:
        if self.size and self.size + len(data) > self.max_bytes:
            self.rotate()
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        self.size += len(data)

    def rotate(self) -> None:
        os.close(self.fd)
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


def parse_args(argv: list[str]) -> tuple[str, int, int]:
    """Order-free ``--key value`` / ``--key=value`` pairs (the shim passes them in random order)."""
    opts: dict[str, str] = {}
    i = 0
    while i < len(argv):
        key = argv[i]
        if "=" in key:
            key, _, value = key.partition("=")
            i += 1
        elif i + 1 < len(argv):
            value = argv[i + 1]
            i += 2
        else:
            raise SystemExit(f"corral-logshipper: {key} needs a value")
        opts[key.lstrip("-")] = value
    if "path" not in opts:
        raise SystemExit("usage: corral-logshipper --path FILE [--max-bytes N] [--max-files K]")
    return (
        opts["path"],
        int(opts.get("max-bytes", DEFAULT_MAX_BYTES)),
        int(opts.get("max-files", DEFAULT_MAX_FILES)),
    )


def ship(
    out: RotatingFile,
    streams: dict[int, LineSplitter],
    *,
    ready_fd: int | None = None,
    stop_fd: int | None = None,
) -> None:
    """Copy the streams into ``out`` until every stream ends or ``stop_fd`` becomes readable."""
    if ready_fd is not None:
        os.close(ready_fd)
    poller = select.poll()
    for fd in streams:
        poller.register(fd, select.POLLIN)
    if stop_fd is not None:
        poller.register(stop_fd, select.POLLIN)
    open_fds = set(streams)
    stopping = False
    drain_left = 64  # reads allowed after a stop, so a chatty container cannot hold the shipper
    while open_fds:
        events = poller.poll(0 if stopping else None)
        if stopping:
            drain_left -= 1
            if not events or drain_left <= 0:
                break
        batch: list[bytes] = []
        ts = format_timestamp(time.time_ns())
        for fd, _mask in events:
            if fd == stop_fd:
                stopping = True
                poller.unregister(fd)
                continue
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                continue
            if data:
                batch.extend(streams[fd].feed(data, ts))
            else:
                batch.extend(streams[fd].flush(ts))
                poller.unregister(fd)
                open_fds.discard(fd)
        if batch:
            out.write(b"".join(batch))
    ts = format_timestamp(time.time_ns())
    rest = [rec for splitter in streams.values() for rec in splitter.flush(ts)]
    if rest:
        out.write(b"".join(rest))


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    path, max_bytes, max_files = parse_args(sys.argv[1:] if argv is None else argv)
    # Probe the inherited fds before opening anything, or a new fd could take a free number.
    streams = {fd: LineSplitter(name) for fd, name in ((STDOUT_FD, "stdout"), (STDERR_FD, "stderr")) if _is_open(fd)}
    ready = READY_FD if _is_open(READY_FD) else None
    for fd in streams:
        os.set_blocking(fd, False)
    out = RotatingFile(path, max_bytes=max_bytes, max_files=max_files)
    stop_r, stop_w = os.pipe()
    os.set_blocking(stop_w, False)
    signal.set_wakeup_fd(stop_w)
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    try:
        ship(out, streams, ready_fd=ready, stop_fd=stop_r)
    finally:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
