"""The node's log collector: one process writes every container's stdout and stderr into CRI log files.

The agent gives each container two FIFOs as its task's stdout and stderr (``runtime/logpipes.py``):
``<data>/logpipes/<uid>.stdout`` and ``<uid>.stderr``. containerd's runc shim (1.6,
``process/io.go`` ``copyPipes``) opens a plain path that is a FIFO twice — a write end it copies the
container's output into, and a read end it never reads, held so that writes never meet EPIPE
while no reader is there. This process, one per node, opens every FIFO it finds in that directory
and writes ``<data>/logs/<uid>/container.log`` (rotated by size, ``runtime/logrecords.py``) — the
file ``corral logs``, ``logs -f``, ``--previous``, kept logs and attach read, as before. A
container costs the node its shim and two FIFOs; no process of its own.

**Restarts lose nothing.** The world is the state: on start the collector lists the FIFO directory
and opens what is there; inotify tells it at once when FIFOs are made or removed (so it reads a new
container's output from its first line, stdout before stderr), and it looks again every ``TICK``
seconds in case it missed one. While it is away — killed, restarting — output waits in the pipes
(64 KiB each, and as much again between the container and its shim), and a container that fills
them blocks until the collector is back, typically well under a second. The pipes stay open meanwhile: the shim holds its ends while
the task runs, and the agent holds a read end of each FIFO until the container is removed
(``logpipes.ReadEnds``), so even the last output of a task that ends meanwhile waits. The agent
restarting changes nothing here: the collector does not die with it (``logpipes.LogCollector``).
Nothing is taken out of a pipe before it is in the log file: the collector *peeks* with ``tee(2)``
(duplicating the pipe's bytes into a private pipe without consuming them), writes the records, and
only then reads the same number of bytes out of the FIFO. An unfinished line is not consumed at
all; it waits in the pipe for its newline (or for ``MAX_LINE`` of it, or for the end of the stream:
the task's writers all closed, when it is written as a P record). So a ``kill -9`` can at worst
repeat the records last written (killed between the write and the read), never lose one. A file
lock (``.collector.lock``) keeps a second collector on the same directory waiting.

**Waking up.** Each FIFO is in an edge-triggered epoll set: every write into it (the kernel wakes
a polled pipe's readers on each write) and the hang-up when its last writer closes (a task that
ended) wake the loop once, so a pipe left holding an unfinished line does not keep waking it. Each
tick the collector also asks the kernel how much every FIFO holds (``FIONREAD``) and takes what is
more than the unfinished line it left: a wake-up it missed costs a tick, never a line. Between
ticks the loop sleeps in epoll; it costs nothing while the containers are quiet.

Run as ``python -m corral.runtime.logcollector --data-dir DIR [--max-bytes N] [--max-files K]``;
standard library only (it imports ``logrecords`` and nothing else of corral). SIGTERM ends it at
once: what it has not written stays in the pipes for the next one.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import fcntl
import os
import resource
import select
import signal
import stat
import sys
import termios
import time
from dataclasses import dataclass

from corral.runtime.logrecords import DEFAULT_MAX_BYTES, DEFAULT_MAX_FILES, RotatingFile, cut_records, format_timestamp

PIPES_DIR = "logpipes"
LOGS_DIR = "logs"
LOG_NAME = "container.log"
STREAMS = ("stdout", "stderr")
LOCK_NAME = ".collector.lock"
PID_NAME = ".collector.pid"
TICK = 0.1  # seconds between looks at the directory and at how much each FIFO holds
PEEK = 64 * 1024  # the most bytes taken from one FIFO at a time
SCRATCH_SIZE = 1024 * 1024  # the private pipe a peek lands in: room for any FIFO's whole content
_SPLICE_F_NONBLOCK = 2

_IN_MOVED_FROM, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x40, 0x80, 0x100, 0x200
_IN_NONBLOCK, _IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC

_libc = ctypes.CDLL(None, use_errno=True)
_tee = _libc.tee
_tee.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint]
_tee.restype = ctypes.c_ssize_t
_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]


def watch_directory(path: str) -> int:
    """An inotify descriptor that becomes readable when entries are made, removed or moved in ``path``."""
    fd = int(_libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC))
    if fd < 0 or _libc.inotify_add_watch(fd, os.fsencode(path),
                                         _IN_CREATE | _IN_DELETE | _IN_MOVED_FROM | _IN_MOVED_TO) < 0:
        err = ctypes.get_errno()
        if fd >= 0:
            os.close(fd)
        raise OSError(err, os.strerror(err))
    return fd


def drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 65536):
            pass


def peek(fd: int, into: int, size: int) -> int:
    """Copy up to ``size`` bytes at the head of pipe ``fd`` into pipe ``into`` without consuming them
    (``tee(2)``); 0 when ``fd`` holds nothing."""
    n = int(_tee(fd, into, size, _SPLICE_F_NONBLOCK))
    if n >= 0:
        return n
    err = ctypes.get_errno()
    if err == errno.EAGAIN:
        return 0
    raise OSError(err, os.strerror(err))


def pending_bytes(fd: int) -> int:
    """How many bytes pipe ``fd`` holds (``FIONREAD``)."""
    buf = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return int.from_bytes(buf, sys.byteorder)


def read_exactly(fd: int, n: int) -> bytes:
    chunks: list[bytes] = []
    while n > 0:
        data = os.read(fd, n)
        if not data:
            raise OSError(errno.EIO, "a pipe held fewer bytes than it had shown")
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)


@dataclass(eq=False)
class Stream:
    """One open FIFO: the container's uid, which stream, and the bytes of an unfinished line it holds."""

    name: str
    uid: str
    kind: str
    fd: int
    held: int = 0


class Collector:
    """The open FIFOs (by name and by descriptor), a rotating log file per container, the epoll set."""

    def __init__(self, data_dir: str, *, max_bytes: int = DEFAULT_MAX_BYTES, max_files: int = DEFAULT_MAX_FILES) -> None:
        self.pipes_dir = os.path.join(data_dir, PIPES_DIR)
        self.logs_dir = os.path.join(data_dir, LOGS_DIR)
        self.max_bytes, self.max_files = max_bytes, max_files
        self.streams: dict[str, Stream] = {}  # by FIFO name
        self.by_fd: dict[int, Stream] = {}
        self.files: dict[str, RotatingFile] = {}  # by uid
        self.failing: set[str] = set()  # uids whose log could not be written (said once)
        self.poller = select.epoll()
        self.scratch_r, self.scratch_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        with contextlib.suppress(OSError):  # else the default 64 KiB; a peek then takes less at a time
            fcntl.fcntl(self.scratch_w, fcntl.F_SETPIPE_SZ, SCRATCH_SIZE)
        self._dir_seen = (-1, 0)  # (mtime, when it was seen): an unchanged, settled directory is not listed

    # --- the directory -------------------------------------------------------------------------

    def scan(self, *, changed: bool = False) -> None:
        """Open the FIFOs that appeared, drain and close those removed; ``changed``: the directory did."""
        try:
            mtime = os.stat(self.pipes_dir).st_mtime_ns
        except FileNotFoundError:
            mtime = 0
        now = time.time_ns()
        # a change within the clock's granularity keeps the same mtime: list again until it is old
        if not changed and mtime == self._dir_seen[0] and self._dir_seen[1] - mtime > 2_000_000_000:
            return
        self._dir_seen = (mtime, now)
        try:
            names = {n for n in os.listdir(self.pipes_dir) if not n.startswith(".") and n.rpartition(".")[2] in STREAMS}
        except FileNotFoundError:
            names = set()
        for name in sorted(names - self.streams.keys(), key=lambda n: (n.rpartition(".")[0], n.endswith(".stderr"))):
            self._open(name)
        for name in sorted(self.streams.keys() - names):
            self._close(self.streams[name])

    def _open(self, name: str) -> None:
        try:
            fd = os.open(os.path.join(self.pipes_dir, name), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            os.close(fd)
            return
        uid, _, kind = name.rpartition(".")
        stream = Stream(name=name, uid=uid, kind=kind, fd=fd)
        self.streams[name], self.by_fd[fd] = stream, stream
        self.poller.register(fd, select.EPOLLIN | select.EPOLLET)
        self.service(stream, ended=False)

    def _close(self, stream: Stream) -> None:
        """Its FIFO was removed (the container is gone): write what is left, then let it go."""
        self.pump(stream, final=True)
        self.poller.unregister(stream.fd)
        os.close(stream.fd)
        del self.streams[stream.name], self.by_fd[stream.fd]
        if not any(s.uid == stream.uid for s in self.streams.values()):
            file = self.files.pop(stream.uid, None)
            if file is not None:
                file.close()

    # --- moving bytes ----------------------------------------------------------------------------

    def file_for(self, uid: str) -> RotatingFile:
        file = self.files.get(uid)
        if file is None:
            path = os.path.join(self.logs_dir, uid, LOG_NAME)
            file = self.files[uid] = RotatingFile(path, max_bytes=self.max_bytes, max_files=self.max_files)
        return file

    def pump(self, stream: Stream, *, final: bool) -> int:
        """Write the records the FIFO holds, consuming exactly those bytes; the bytes left (an
        unfinished line, unless ``final``)."""
        while True:
            n = peek(stream.fd, self.scratch_w, PEEK)
            if n == 0:
                return 0
            data = read_exactly(self.scratch_r, n)
            records, used = cut_records(data, stream.kind, format_timestamp(time.time_ns()), final=final)
            if records:
                try:
                    self.file_for(stream.uid).write(b"".join(records))  # first into the file …
                except OSError as e:  # a full disk: left in the pipe, tried again each tick
                    if stream.uid not in self.failing:
                        self.failing.add(stream.uid)
                        print(f"corral-logcollector: cannot write the log of {stream.uid}: {e}", file=sys.stderr)
                    return 0
                self.failing.discard(stream.uid)
            if used:
                read_exactly(stream.fd, used)  # … then out of the pipe
            held = pending_bytes(stream.fd)
            if held <= n - used:  # nothing came in behind what was peeked
                return held

    def service(self, stream: Stream, *, ended: bool) -> None:
        """Take what a FIFO holds; ``ended``: its writers all closed, so an unfinished line is all there is."""
        stream.held = self.pump(stream, final=ended)

    def check_all(self) -> None:
        """The safety net under the edge-triggered wake-ups: any FIFO holding more than the unfinished
        line it was left with is serviced now."""
        for stream in list(self.streams.values()):
            if pending_bytes(stream.fd) > stream.held:
                self.service(stream, ended=False)

    # --- the loop --------------------------------------------------------------------------------

    def run(self, stop_fd: int) -> None:
        """Collect until ``stop_fd`` becomes readable."""
        self.poller.register(stop_fd, select.EPOLLIN)
        changes = watch_directory(self.pipes_dir)
        self.poller.register(changes, select.EPOLLIN)
        try:
            self._loop(stop_fd, changes)
        finally:
            os.close(changes)

    def _loop(self, stop_fd: int, changes: int) -> None:
        next_tick = 0.0
        while True:
            now = time.monotonic()
            if now >= next_tick:
                self.scan()
                self.check_all()
                next_tick = now + TICK
            for fd, mask in self.poller.poll(max(0.0, next_tick - time.monotonic())):
                if fd == stop_fd:
                    return
                if fd == changes:
                    drain(changes)
                    self.scan(changed=True)
                    continue
                stream = self.by_fd.get(fd)
                if stream is not None:
                    self.service(stream, ended=bool(mask & (select.EPOLLHUP | select.EPOLLERR)))

    def close(self) -> None:
        for stream in list(self.streams.values()):
            os.close(stream.fd)
        for file in self.files.values():
            file.close()
        self.poller.close()
        os.close(self.scratch_r)
        os.close(self.scratch_w)


def take_lock(pipes_dir: str) -> int:
    """Hold the directory's collector lock (waiting while another collector has it); write our pid."""
    os.makedirs(pipes_dir, exist_ok=True)
    fd = os.open(os.path.join(pipes_dir, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    pid_file = os.path.join(pipes_dir, PID_NAME)
    with open(pid_file + ".tmp", "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(pid_file + ".tmp", pid_file)
    return fd


def _raise_fd_limit() -> None:
    """Three descriptors a container (two FIFOs, a log file): as many as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="corral-logcollector", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="the agent's data dir (logpipes/ and logs/ under it)")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="rotate a log at this size")
    parser.add_argument("--max-files", type=int, default=DEFAULT_MAX_FILES, help="log files kept per container")
    args = parser.parse_args(argv)
    stop_r, stop_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    signal.set_wakeup_fd(stop_w)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    _raise_fd_limit()
    collector = Collector(os.path.abspath(args.data_dir), max_bytes=args.max_bytes, max_files=args.max_files)
    lock = take_lock(collector.pipes_dir)
    try:
        collector.run(stop_r)
    finally:
        collector.close()
        os.close(lock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
