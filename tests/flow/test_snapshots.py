"""etcd snapshots of a real ``serve --all``: scheduled ones kept to the retention, and save → restore with a worker
that reconciles to the restored state (what was made after the snapshot is removed, what was in it adopted)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from corral.model.resources import Container, Event
from corral.store.snapshots import list_snapshots
from tests.fixtures.cluster import eventually
from tests.fixtures.registry import Registry
from tests.fixtures.serving import ServeAll, running_serve_all
from tests.flow.test_restarts import all_running, make, running_tasks

pytestmark = pytest.mark.containerd


@pytest_asyncio.fixture(scope="module")
async def snappy(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> AsyncIterator[ServeAll]:
    extra = ["--etcd-snapshot-interval", "1s", "--etcd-snapshot-retain", "2"]
    async with running_serve_all(tmp_path_factory.mktemp("snappy"), registry, extra=extra) as serve:
        yield serve


async def corral(serve: ServeAll, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "corral.cli.main", *args, "--data-dir", str(serve.base),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env={**os.environ})
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    return out.decode()


async def test_scheduled_snapshots_are_taken_and_only_the_newest_are_kept(snappy: ServeAll) -> None:
    directory = snappy.base / "snapshots"
    seen: set[str] = set()

    async def several_taken() -> None:
        now = {s.path.name for s in list_snapshots(directory)}
        seen.update(now)
        assert len(seen) >= 3, seen
        assert len(now) <= 2, now

    await eventually(several_taken, timeout=30, what="three snapshots taken, two kept")
    listing = await corral(snappy, "etcd", "snapshot", "list")
    assert "corral-snapshot-" in listing and "corrupt" not in listing


async def test_a_restored_snapshot_brings_back_its_containers_and_removes_the_later_ones(snappy: ServeAll) -> None:
    before = await make(snappy, ["in-snapshot"])
    snapshot = snappy.base / "backup.db"
    assert "saved" in await corral(snappy, "etcd", "snapshot", "save", str(snapshot))
    later = await make(snappy, ["after-snapshot"], existing=("in-snapshot",))
    async with snappy.client() as api:
        later_uid = (await api.get(Container, "after-snapshot")).metadata.uid

    await snappy.stop()  # restore is offline, like k3s --cluster-reset-restore-path
    out = await corral(snappy, "etcd", "snapshot", "restore", str(snapshot))
    assert "restored" in out
    assert list(snappy.base.glob("etcd.before-restore-*"))  # the old data is kept aside
    await snappy.start()
    await snappy.wait_ready()

    async def reconciled() -> None:
        assert await all_running(snappy, ["in-snapshot"]) == before  # adopted: the very same task
        assert "after-snapshot" not in await running_tasks(snappy.containerd_socket)
        async with snappy.client() as api:
            events, _ = await api.list(Event, field_selector="reason=RemovedOrphan")
        assert any(e.spec.involved_object.uid == later_uid for e in events)

    await eventually(reconciled, timeout=90, what=f"the node matches the restored state\n{snappy.tail()}")
    assert later["after-snapshot"] not in str(await running_tasks(snappy.containerd_socket))


def test_restore_refuses_while_etcd_runs_on_the_data_dir(snappy: ServeAll, tmp_path: Path) -> None:
    import subprocess

    snap = sorted((snappy.base / "snapshots").glob("*.db"))[-1]
    run = subprocess.run([sys.executable, "-m", "corral.cli.main", "etcd", "snapshot", "restore", str(snap),
                          "--data-dir", str(snappy.base)], capture_output=True, text=True)
    assert run.returncode != 0 and "stop corral first" in run.stderr
