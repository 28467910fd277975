"""containerd's per-task bundle directories, and the one it can leave behind.

containerd makes ``<state>/io.containerd.runtime.v2.task/<namespace>/<id>`` for each task it creates
(the OCI bundle: ``config.json``, ``rootfs``, the shim's address) and removes it when the task goes.
A shim that dies before it has written all of its files — its create cancelled because the client
that asked for it, an agent, was killed — has containerd's own clean-up fail (containerd 1.6: "failed
to clean up after shim disconnected … open …/runtime: no such file or directory"), and the
directory stays: every later create of that task fails with "failed to start shim: mkdir …: file
exists" until containerd restarts.

``held_bundle`` reads that directory out of containerd's answer, and ``tasks.create_task`` turns the
answer into ``BundleHeld`` (a ``TemporaryError``, retried every second: it is over as soon as
containerd lets go, so no growing backoff); ``remove_stale`` removes the directory when it
is certainly left over — older than ``MIN_AGE`` seconds (not a create under way), used by no process
(a shim runs with the bundle as its working directory) — the way containerd's clean-up would have:
whatever is mounted under it unmounted, then the directory removed. The caller checks first that
containerd has no task of that id.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import time
from pathlib import Path

from corral.model.errors import Unavailable

TASK_STATE_DIR = "io.containerd.runtime.v2.task"
MIN_AGE = 5.0  # seconds: a bundle younger than this may belong to a create under way
RETRY_SECONDS = 1.0  # a create that met a held bundle directory is tried again this much later
_HELD = re.compile(r"mkdir (/\S+): file exists")
_MNT_DETACH = 2


class BundleHeld(Unavailable):
    """A task's create met its bundle directory still there (``path``): an earlier create of it is
    under way or being cleaned up, or its failed clean-up left the directory behind."""

    delay = RETRY_SECONDS

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(message)
        self.path = path


def held_bundle(message: str, *, namespace: str, task_id: str) -> Path | None:
    """The bundle directory containerd's "failed to start shim: mkdir DIR: file exists" names, if it
    is the one of ``namespace``/``task_id`` (anything else: None)."""
    found = _HELD.search(message)
    if found is None:
        return None
    path = Path(found.group(1))
    if (path.name, path.parent.name, path.parent.parent.name) != (task_id, namespace, TASK_STATE_DIR):
        return None
    return path


def in_use(path: Path) -> bool:
    """Whether a process works in ``path`` (a shim's working directory is its bundle)."""
    target = str(path)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd") == target:
                    return True
            except OSError:
                continue  # gone, or a kernel thread
    return False


def mounts_under(path: Path) -> list[str]:
    """Mount points at or under ``path``, deepest first (from this process's mountinfo)."""
    prefix = str(path)
    points: list[str] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = _unescape(line.split()[4])
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def remove_stale(path: Path, *, min_age: float = MIN_AGE) -> bool:
    """Remove the bundle directory ``path`` if it is left over (see the module docstring); whether it
    is gone. Blocking."""
    try:
        age = time.time() - path.lstat().st_mtime
    except FileNotFoundError:
        return True
    if age < min_age or in_use(path):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    for point in mounts_under(path):
        if libc.umount2(point.encode(), _MNT_DETACH) != 0:
            return False  # something we cannot take away: leave it all as it is
    shutil.rmtree(path)
    return True


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)
