"""Named network namespaces, made the way ``ip netns add`` makes them.

A namespace is a bind mount of a process's ``/proc/<pid>/ns/net`` on an empty file under
``/var/run/netns/<name>``; the mount keeps it alive with no process in it, and runc joins it by that
path (the OCI spec's ``linux.namespaces[{type: network, path}]``). pyroute2 does the unshare and the
mount in a forked child (``pyroute2.netns.create``) so the agent's own namespace never changes.

Every call runs in a worker thread: the fork, the mount syscalls and the directory scans block.

Names are ``<prefix><container id>``. The prefix (``corral-`` by default) is configurable so that
tests, and several agents sharing one host, only ever see and delete their own namespaces.

Create and delete are idempotent. A crash between pyroute2's "create the mount point file" and
"bind the namespace on it" leaves a plain empty file; ``exists`` tells the two apart (a live
namespace is on nsfs, the same device as ``/proc/self/ns/net``) and ``create`` replaces the stale file.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
from pathlib import Path

from pyroute2 import netns as _pyroute2_netns

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
    try:
        _pyroute2_netns.create(name)
    except FileExistsError:
        pass  # a concurrent create of the same name won the race
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise
    if not _is_netns(path):
        raise OSError(errno.EIO, f"network namespace {name} was not mounted at {path}")
    return path


def _delete(name: str) -> None:
    path = netns_path(name)
    if not os.path.lexists(path):
        return
    with contextlib.suppress(FileNotFoundError):
        _pyroute2_netns.remove(name)  # umount2(MNT_DETACH) then unlink


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
