"""Restarts after any crash: a real ``serve --all`` and its children killed with SIGKILL, one at a time and all at once.

Each check looks at the world as well as the API: the containerd tasks by name (one running task
per wanted container, the same one as before: adopted, not restarted), the children's pids.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from corral.model.resources import Container, ContainerSpec, Event, ObjectMeta
from corral.runtime.client import Client
from corral.runtime.containers import list_containers
from corral.runtime.tasks import Task
from tests.fixtures.cluster import eventually
from tests.fixtures.registry import Registry
from tests.fixtures.serving import NODE, ServeAll, running_serve_all

pytestmark = pytest.mark.containerd


@pytest_asyncio.fixture(scope="module")
async def solo(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> AsyncIterator[ServeAll]:
    async with running_serve_all(tmp_path_factory.mktemp("solo"), registry) as serve:
        yield serve


def sleeper(name: str, image: str) -> Container:
    return Container(metadata=ObjectMeta(name=name, labels={"test": "restarts"}),
                     spec=ContainerSpec(image=image, command=["sleep", "3600"], termination_grace_period_seconds=1))


async def running_tasks(socket: str) -> dict[str, list[str]]:
    """corral/name → the containerd ids of that name whose task is running."""
    out: dict[str, list[str]] = {}
    async with Client(socket) as client:
        for info in await list_containers(client, {"corral/node": NODE}):
            try:
                state = (await Task(client, info.id).status()).state
            except Exception:
                continue
            if state == "running":
                out.setdefault(info.labels["corral/name"], []).append(info.id)
    return out


def gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


async def all_running(serve: ServeAll, names: list[str]) -> dict[str, str]:
    """Every name Running in the API, with exactly one running task each; name → containerd id."""
    async with serve.client() as api:
        items, _ = await api.list(Container, label_selector="test=restarts")
    assert sorted(c.metadata.name for c in items) == sorted(names)
    assert all(c.status.phase == "Running" for c in items), [(c.metadata.name, c.status.phase) for c in items]
    tasks = await running_tasks(serve.containerd_socket)
    assert sorted(tasks) == sorted(names), tasks
    assert all(len(ids) == 1 for ids in tasks.values()), tasks
    return {n: ids[0] for n, ids in tasks.items()}


async def make(serve: ServeAll, new: list[str], *, existing: tuple[str, ...] = ()) -> dict[str, str]:
    """Create ``new`` and wait until they and ``existing`` all run."""
    async with serve.client() as api:
        await asyncio.gather(*(api.create(sleeper(n, serve.registry.ref)) for n in new))
    return await eventually(lambda: all_running(serve, [*existing, *new]), timeout=90, what="all Running")


async def api_answers(serve: ServeAll) -> None:
    async with serve.client() as api:
        async with api.session().get(f"{api.server}/readyz", ssl=api.ssl_option) as r:
            assert r.status == 200, await r.text()
        await api.list(Container)


async def test_a_killed_embedded_etcd_is_restarted_and_the_api_answers_again_within_5s(solo: ServeAll) -> None:
    names = ["etcd-a", "etcd-b"]
    before = await make(solo, names)
    old = solo.pid_of("etcd")
    os.kill(old, signal.SIGKILL)
    killed = time.monotonic()
    await eventually(lambda: api_answers(solo), timeout=30, what=f"the API answers again\n{solo.tail()}")
    took = time.monotonic() - killed
    assert solo.pid_of("etcd") != old
    assert took <= 5.0, f"the API answered again only after {took:.1f}s"
    await asyncio.sleep(8)  # past --fence-after and the node grace: nothing was fenced or released
    assert await all_running(solo, names) == before
    assert "restarting it" in solo.tail(100_000)
    async with solo.client() as api, api.session().get(f"{api.server}/metrics", ssl=api.ssl_option) as r:
        assert 'corral_child_restarts_total{child="etcd"} 1.0' in await r.text()  # logged and counted


async def test_a_store_outage_longer_than_the_fence_keeps_every_container_running_and_is_reported(
    solo: ServeAll,
) -> None:
    names = ["etcd-a", "etcd-b"]
    before = await all_running(solo, names)
    etcd = solo.pid_of("etcd")
    os.kill(etcd, signal.SIGSTOP)  # etcd hangs: the API answers, its store does not
    try:
        await asyncio.sleep(12)  # past --fence-after (4 s) and the node grace plus the release margin (8 s)
        assert await running_tasks(solo.containerd_socket) == {n: [cid] for n, cid in before.items()}
    finally:
        os.kill(etcd, signal.SIGCONT)
    await eventually(lambda: api_answers(solo), timeout=30, what="the API answers again")
    await asyncio.sleep(8)  # the node controller judges again: nothing may be released now
    assert await all_running(solo, names) == before
    assert "killing every task" not in solo.tail(100_000)  # the fence never went up

    async def reported() -> None:
        async with solo.client() as api:
            events, _ = await api.list(Event, namespace=None, field_selector="reason=StoreUnavailable")
        assert any(e.spec.involved_object.kind == "Node" and e.spec.involved_object.name == NODE for e in events)

    await eventually(reported, timeout=30, what="an Event says the node kept its containers")


async def test_a_killed_embedded_containerd_is_restarted_and_containers_keep_running(solo: ServeAll) -> None:
    names = ["etcd-a", "etcd-b"]
    before = await all_running(solo, names)
    old = solo.pid_of("containerd")
    os.kill(old, signal.SIGKILL)

    async def restarted() -> None:
        assert solo.pid_of("containerd") != old
        assert await all_running(solo, names) == before

    await eventually(restarted, timeout=30, what=f"containerd runs again\n{solo.tail()}")
    before |= await make(solo, ["after-containerd"], existing=tuple(names))  # the agent works with the new daemon
    assert await all_running(solo, [*names, "after-containerd"]) == before


async def test_a_killed_leader_process_is_restarted_and_scheduling_goes_on(solo: ServeAll) -> None:
    old = solo.leader_pid()
    os.kill(old, signal.SIGKILL)

    async def restarted() -> int:
        pid = solo.leader_pid()
        assert pid != old
        return pid

    await eventually(restarted, timeout=30, what="a new leader process")
    await make(solo, ["after-leader"], existing=("etcd-a", "etcd-b", "after-containerd"))


async def test_serve_all_killed_with_sigkill_takes_its_children_along_and_starts_again_with_nothing_lost(
    solo: ServeAll,
) -> None:
    names = ["etcd-a", "etcd-b", "after-containerd", "after-leader"]
    before = await all_running(solo, names)
    children = [solo.pid_of("etcd"), solo.pid_of("containerd"), solo.leader_pid()]
    await solo.kill()

    async def children_gone() -> None:
        assert all(gone(p) for p in children), [p for p in children if not gone(p)]

    await eventually(children_gone, timeout=15, what="etcd, containerd and the leader die with serve")
    started = time.monotonic()
    await solo.start()
    await solo.wait_ready(timeout=60)
    after = await eventually(lambda: all_running(solo, names), timeout=60, what=f"converged\n{solo.tail()}")
    took = time.monotonic() - started
    assert after == before  # the same tasks: adopted, none restarted, none duplicated
    assert took < 30, took
