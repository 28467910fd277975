"""etcd snapshots: save through etcd's Maintenance API, list, prune, restore into a new data dir.

``save`` streams etcd's ``Maintenance.Snapshot`` (the whole backend, with etcd's own checksum at the
end) into ``<file>.part`` and renames it into place once complete and synced, so a snapshot file
is never half written. Snapshots are files named ``corral-snapshot-<UTC time>.db`` in a directory
(``<data-dir>/snapshots`` by default); ``prune`` keeps the newest N, ``run_scheduled`` takes one
every interval (``serve --etcd-snapshot-interval/--etcd-snapshot-retain``).

``restore`` is offline, like ``k3s server --cluster-reset-restore-path``: it runs ``etcdctl
snapshot restore`` (Debian's etcd 3.4 ships no etcdutl) into a new directory beside the embedded
etcd's, a single-member cluster named as corral names its member, then moves the old data dir
aside (``etcd.before-restore-<time>``) and the restored one into its place. The next ``serve``
start runs etcd on it. Resource versions go back to the snapshot's revision: clients that watch
from a later one are answered 410 and list again (api/resources.py), so every agent reconciles to
the restored state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from aetcd import rpc

from corral.model.errors import CorralError, Invalid, Unavailable
from corral.store.etcd import EtcdStore
from corral.store.etcd_errors import GRPC_ERRORS, translate

log = logging.getLogger(__name__)

PREFIX = "corral-snapshot-"
SUFFIX = ".db"
MEMBER_NAME = "corral"  # the embedded etcd's member name (store/embedded.py)


@dataclass(frozen=True)
class SnapshotFile:
    path: Path
    size: int
    taken: float  # seconds since the epoch (the file's mtime)


def snapshot_name(now: float | None = None) -> str:
    return PREFIX + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time())) + SUFFIX


async def save(store: EtcdStore, path: Path, *, timeout: float = 300.0) -> int:
    """Write a snapshot of the etcd behind ``store`` to ``path``; its size in bytes."""
    part = path.with_name(path.name + ".part")
    await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    out = await asyncio.to_thread(open, part, "wb")
    size = 0
    try:
        stub = rpc.MaintenanceStub(store.channel())
        try:
            async for chunk in stub.Snapshot(rpc.SnapshotRequest(), timeout=timeout):
                await asyncio.to_thread(out.write, chunk.blob)
                size += len(chunk.blob)
        except GRPC_ERRORS as e:
            raise translate(e, what="snapshot") from None
        await asyncio.to_thread(_sync_and_close, out)
    except BaseException:
        out.close()
        with contextlib.suppress(OSError):
            part.unlink()
        raise
    if size == 0:
        await asyncio.to_thread(part.unlink)
        raise Unavailable("etcd sent an empty snapshot")
    await asyncio.to_thread(part.replace, path)
    return size


def _sync_and_close(f: object) -> None:
    assert hasattr(f, "fileno") and hasattr(f, "flush") and hasattr(f, "close")
    f.flush()
    os.fsync(f.fileno())
    f.close()


def list_snapshots(directory: Path) -> list[SnapshotFile]:
    """corral's snapshot files in ``directory``, oldest first. Blocking (small directory reads)."""
    if not directory.is_dir():
        return []
    found = []
    for p in directory.iterdir():
        if p.name.startswith(PREFIX) and p.name.endswith(SUFFIX) and p.is_file():
            st = p.stat()
            found.append(SnapshotFile(p, st.st_size, st.st_mtime))
    return sorted(found, key=lambda s: (s.taken, s.path.name))


def prune(directory: Path, *, retain: int) -> list[Path]:
    """Remove all but the newest ``retain`` snapshots; the paths removed. Blocking."""
    old = list_snapshots(directory)[:-retain] if retain > 0 else []
    for s in old:
        s.path.unlink(missing_ok=True)
    return [s.path for s in old]


async def status(path: Path) -> dict[str, int]:
    """``etcdctl snapshot status``: hash, revision, totalKey, totalSize (checks the file's integrity)."""
    out = await _etcdctl("snapshot", "status", str(path), "--write-out", "json")
    data = json.loads(out)
    return {k: int(v) for k, v in data.items()}


async def restore(snapshot: Path, etcd_dir: Path) -> Path:
    """Make ``etcd_dir`` a new single-member etcd data dir holding ``snapshot``; where the old one went.

    etcd must not be running on ``etcd_dir`` (stop ``serve`` first)."""
    if not await asyncio.to_thread(snapshot.is_file):
        raise Invalid(f"{snapshot}: no such snapshot file")
    await status(snapshot)  # refuses a truncated or corrupt file before anything is touched
    fresh = etcd_dir.with_name(etcd_dir.name + ".restoring")
    await asyncio.to_thread(shutil.rmtree, fresh, True)
    peer = "http://127.0.0.1:2380"  # recorded in the member; serve starts it with its own URLs
    await _etcdctl("snapshot", "restore", str(snapshot), "--data-dir", str(fresh), "--name", MEMBER_NAME,
                   "--initial-cluster", f"{MEMBER_NAME}={peer}", "--initial-advertise-peer-urls", peer)
    aside = etcd_dir.with_name(f"{etcd_dir.name}.before-restore-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    if await asyncio.to_thread(etcd_dir.exists):
        await asyncio.to_thread(etcd_dir.rename, aside)
    await asyncio.to_thread(fresh.rename, etcd_dir)
    return aside


async def _etcdctl(*args: str) -> str:
    binary = shutil.which("etcdctl")
    if binary is None:
        raise Unavailable("etcdctl is not installed (Debian package etcd-client)")
    proc = await asyncio.create_subprocess_exec(binary, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env={**os.environ, "ETCDCTL_API": "3"})
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise CorralError(f"etcdctl {' '.join(args[:2])} failed: {err.decode(errors='replace').strip()}")
    return out.decode()


async def run_scheduled(store: EtcdStore, directory: Path, *, interval: float, retain: int) -> None:
    """Take a snapshot every ``interval`` seconds into ``directory``, keeping the newest ``retain``."""
    while True:
        await asyncio.sleep(interval)
        path = directory / snapshot_name()
        try:
            size = await save(store, path)
        except CorralError as e:
            log.warning("scheduled etcd snapshot failed: %s", e)
            continue
        removed = await asyncio.to_thread(prune, directory, retain=retain)
        log.info("etcd snapshot %s (%d bytes)%s", path, size, f"; removed {len(removed)} older" if removed else "")
