"""Named network namespaces, made the way ``ip netns add`` makes them.

A namespace is a bind mount of a process's ``/proc/<pid>/ns/net`` on an empty file under
``/var/run/netns/<name>``; the mount keeps it alive with no process in it, and runc joins it by that
path (the OCI spec's ``linux.namespaces[{type: network, path}]``). The namespace is made by a short-lived
thread of its own: a thread's network namespace is its own, so ``unshare(CLONE_NEWNET)`` in that thread
leaves the agent's other threads where they are; the thread bind-mounts its
``/proc/self/task/<tid>/ns/net`` on the file and ends. No fork: forking a process that runs gRPC's
threads (etcd and containerd clients) can crash the child, which is how ``pyroute2.netns.create``
(a forked Python child) failed here.

Every call runs off the event loop: the mount syscalls and the directory scans block.

Names are ``<prefix><container id>``. The prefix (``corral-`` by default) is configurable so that
tests, and several agents sharing one host, only ever see and delete their own namespaces.

Create and delete are idempotent. A crash between "create the mount point file" and
"bind the namespace on it" leaves a plain empty file; ``exists`` tells the two apart (a live
namespace is on nsfs, the same device as ``/proc/self/ns/net``) and ``create`` replaces the stale file.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import re
import threading
from pathlib import Path

from corral.model.errors import Invalid

NETNS_RUN_DIR = Path("/var/run/netns")
DEFAULT_PREFIX = "corral-"

# CNI's rule for CNI_CONTAINERID, used here for namespace names too: they become file names.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,200}$")


def netns_name(container_id: str, *, prefix: str = DEFAULT_PREFIX) -> str:
    """The namespace name of a container: ``<prefix><container id>``; rejects ids unfit for a file name."""
    name = prefix + container_id
    if not _NAME.match(container_id) or not _NAME.match(name):
        raise Invalid(f"container id {container_id!r} cannot name a network namespace (letters, digits, _ . -)")
    return name


def netns_path(name: str) -> Path:
    """Where the namespace ``name`` is (or would be) mounted; what runc and CNI are given."""
    return NETNS_RUN_DIR / name


_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount_new_netns(path: Path) -> None:
    """In a thread of its own: unshare its network namespace and bind-mount it on ``path``."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
            source = f"/proc/self/task/{threading.get_native_id()}/ns/net".encode()
            _check(_libc.mount(source, str(path).encode(), b"none", MS_BIND, None), f"bind mount on {path}")
        except BaseException as e:  # handed to the caller
            failure.append(e)

    worker = threading.Thread(target=run, name="corral-netns")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]


def _is_netns(path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    return st.st_dev == os.stat("/proc/self/ns/net").st_dev


def _create(name: str) -> Path:
    path = netns_path(name)
    if _is_netns(path):
        return path
    if path.exists():  # a stale mount point left by a crash mid-create
        path.unlink()
    NETNS_RUN_DIR.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0)
    except FileExistsError:
        fd = -1  # a concurrent create of the same name won the race
    if fd >= 0:
        os.close(fd)
        try:
            _mount_new_netns(path)
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            raise
    if not _is_netns(path):
        raise OSError(errno.EIO, f"network namespace {name} was not mounted at {path}")
    return path


def _delete(name: str) -> None:
    path = netns_path(name)
    if not os.path.lexists(path):
        return
    if _is_netns(path):
        ret = _libc.umount2(str(path).encode(), MNT_DETACH)
        if ret != 0 and ctypes.get_errno() not in (errno.EINVAL, errno.ENOENT):
            _check(ret, f"umount {path}")
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _list(prefix: str) -> list[str]:
    try:
        names = os.listdir(NETNS_RUN_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


async def create(name: str) -> Path:
    """Create the namespace ``name`` unless it exists; return its path."""
    return await asyncio.to_thread(_create, name)


async def delete(name: str) -> None:
    """Unmount and remove the namespace ``name``; nothing happens if it is already gone."""
    await asyncio.to_thread(_delete, name)


async def exists(name: str) -> bool:
    """Whether ``name`` is a live namespace (not merely a leftover mount point file)."""
    return await asyncio.to_thread(_is_netns, netns_path(name))


async def list_names(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """The names under /var/run/netns that start with ``prefix``, sorted."""
    return await asyncio.to_thread(_list, prefix)
