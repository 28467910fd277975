"""Embedded etcd HA: three control instances whose embedded etcds are one 3-member cluster.

One module-scoped cluster (c0 with --cluster-init, c1 and c2 with --join) is shared by the tests,
which run in order: all three members healthy, a write through c0 read through c2, kill -9 of the
instance whose etcd leads (writes resume through another instance within a few seconds), the dead
member removed with `corral control members remove`, and a clean stop with --leave leaving the list.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from corral.api.client import ApiClient
from corral.model.errors import AlreadyExists, CorralError, Forbidden, Invalid
from corral.model.resources import Namespace, ObjectMeta
from corral.tls.contexts import client_context
from tests.fixtures.cluster import eventually
from tests.fixtures.controlplanes import ControlInstance, control_cluster

pytestmark = [pytest.mark.etcd, pytest.mark.slow]

FAILOVER_GOAL = 3.0  # issue 15: writes resume ≤ 3 s after losing one of three control instances


@pytest_asyncio.fixture(scope="module")
async def trio(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[list[ControlInstance]]:
    async with control_cluster(tmp_path_factory.mktemp("etcdha"), 3, extra=("--leave",)) as instances:
        yield instances


async def corral(inst: ControlInstance, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "corral.cli.main", *args, env=inst.cli_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def write(inst: ControlInstance, name: str, *, timeout: float = 10.0) -> None:
    async with inst.client(timeout=timeout) as api:
        await api.create(Namespace(metadata=ObjectMeta(name=name)), namespace="")


async def test_three_control_instances_hold_three_healthy_members_listed_by_the_cli(
        trio: list[ControlInstance]) -> None:
    names = {inst.member()["name"] for inst in trio}
    code, out = await corral(trio[2], "control", "members")
    assert code == 0, out
    lines = out.strip().splitlines()
    assert lines[0].split()[:5] == ["NAME", "PEER", "URL", "CLIENT", "URL"]
    rows = [line.split() for line in lines[1:]]
    assert {r[0] for r in rows} == names
    assert all(r[4] == "yes" for r in rows), out  # HEALTHY
    assert sum(r[3] == "yes" for r in rows) == 1, out  # one LEADER
    assert all(r[1].startswith("https://127.0.0.1:") for r in rows), out  # peers speak TLS
    # every instance talks to all three members, its own first (the first learns of the later ones
    # from the member list, which it follows every 10 s)
    async def all_know_all() -> None:
        for inst in trio:
            endpoints = json.loads((inst.base / "etcd.endpoints").read_text())
            assert len(endpoints) == 3, endpoints
            assert endpoints[0].endswith(f":{inst.member()['clientPort']}"), endpoints

    await eventually(all_know_all, timeout=30, what="every instance lists every member's client URL")


async def test_a_write_through_the_first_instance_is_read_through_the_third(trio: list[ControlInstance]) -> None:
    await write(trio[0], "written-through-c0")
    async with trio[2].client() as api:
        got = await api.get(Namespace, "written-through-c0", namespace="")
    assert got.metadata.name == "written-through-c0"


async def test_only_an_admin_lists_or_removes_members_and_a_join_token_only_adds(
        trio: list[ControlInstance]) -> None:
    secret = trio[0].join_token().split("::", 1)[1]
    ca = (trio[0].base / "tls" / "ca.crt").read_bytes()
    async with ApiClient(trio[0].url, secret, ssl_context=client_context(ca), timeout=10) as joiner:
        with pytest.raises(Forbidden):
            await joiner.request("GET", "/control/members")
        with pytest.raises(Forbidden):
            await joiner.request("DELETE", f"/control/members/{trio[1].member()['name']}")
        with pytest.raises(Invalid, match="peerURL"):  # peers speak TLS only
            await joiner.request("POST", "/control/members", body={
                "name": "plain", "peerURL": "http://127.0.0.1:1", "clientURL": "https://127.0.0.1:2"})
        with pytest.raises(AlreadyExists):
            await joiner.request("POST", "/control/members", body={
                "name": trio[1].member()["name"], "peerURL": "https://127.0.0.1:1", "clientURL": "https://127.0.0.1:2"})
    assert len(await trio[0].members()) == 3


async def test_a_join_without_the_pinned_ca_is_refused(trio: list[ControlInstance], tmp_path: Path) -> None:
    wrong = "K10" + "0" * 64 + "::" + trio[0].join_token().split("::", 1)[1]
    impostor = ControlInstance(tmp_path / "impostor")
    try:
        await impostor.start("--join", trio[0].url, "--join-token", wrong)
        assert impostor.proc is not None
        code = await asyncio.wait_for(impostor.proc.wait(), 60)
        assert code != 0
        assert "join token pins" in impostor.tail(), impostor.tail()
    finally:
        await impostor.kill()
    assert len(await trio[0].members()) == 3


async def test_killing_the_instance_whose_etcd_leads_lets_writes_resume_through_another_within_seconds(
        trio: list[ControlInstance]) -> None:
    members = await trio[0].members()
    leader_url = next(m["clientURLs"][0] for m in members if m["leader"])
    victim = next(i for i in trio if leader_url.endswith(f":{i.member()['clientPort']}"))
    survivor = next(i for i in trio if i is not victim)
    await write(survivor, "before-the-kill")
    t0 = time.monotonic()
    await victim.kill()
    n = 0

    async def writes_again() -> None:
        nonlocal n
        n += 1
        try:
            await write(survivor, f"after-the-kill-{n}", timeout=1.0)
        except CorralError as e:
            raise AssertionError(str(e)) from None

    await eventually(writes_again, timeout=30, what="a write through a surviving instance succeeds")
    resumed = time.monotonic() - t0
    print(f"\nwrites resumed {resumed:.2f}s after kill -9 of the instance whose etcd led (goal ≤ {FAILOVER_GOAL}s)")
    assert resumed < 15.0  # the goal is measured by benchmarks/bench_failover.py; here: it heals, within seconds

    async def victim_unhealthy() -> None:
        listed = {m["name"]: m for m in await survivor.members()}
        assert listed[victim.member()["name"]]["healthy"] is False
        assert sum(m["leader"] for m in listed.values()) == 1

    await eventually(victim_unhealthy, timeout=20, what="the killed member is listed unhealthy, a new leader")


async def test_a_removed_member_leaves_the_list(trio: list[ControlInstance]) -> None:
    dead = next(i for i in trio if not i.running)
    alive = [i for i in trio if i.running]
    name = dead.member()["name"]
    code, out = await corral(alive[0], "control", "members", "remove", name)
    assert code == 0, out
    names = {m["name"] for m in await alive[1].members()}
    assert names == {i.member()["name"] for i in alive}
    code, out = await corral(alive[0], "control", "members", "remove", name)
    assert code != 0 and "no etcd member" in out, out


async def test_a_clean_stop_with_leave_removes_the_member_and_the_other_keeps_serving(
        trio: list[ControlInstance]) -> None:
    alive = [i for i in trio if i.running]
    leaving, staying = alive
    name = leaving.member()["name"]
    assert leaving.proc is not None
    leaving.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(leaving.proc.wait(), 30) == 0, leaving.tail()
    assert "left the cluster" in leaving.tail(), leaving.tail()
    assert not (leaving.base / "etcd").exists() and (leaving.base / "etcd.removed").exists()
    listed = await staying.members()
    assert [m["name"] for m in listed] == [staying.member()["name"]] and name not in str(listed)
    await eventually(lambda: write(staying, "after-the-leave", timeout=2.0), timeout=20,
                     what="the last member alone takes writes")
    assert staying.proc is not None
    staying.proc.send_signal(signal.SIGTERM)  # the last member does not leave: nothing would be left
    assert await asyncio.wait_for(staying.proc.wait(), 30) == 0, staying.tail()
    assert "last member" in staying.tail() and os.path.exists(staying.base / "etcd" / "member")
