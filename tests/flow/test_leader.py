"""Leader election: two control instances on one etcd; kill -9 the leader and the other takes over."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import sys
from pathlib import Path

import aiohttp
import pytest

from corral.api.client import ApiClient
from corral.model.resources import Container, ContainerSpec, ObjectMeta
from corral.store.election import PREFIX
from corral.store.embedded import EmbeddedEtcd, free_port
from corral.store.etcd import EtcdStore
from corral.tls.contexts import client_context
from tests.fixtures.cluster import eventually


async def start_control(base: Path, etcd: str, port: int) -> asyncio.subprocess.Process:
    base.mkdir(parents=True, exist_ok=True)
    with (base / "serve.log").open("wb") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "corral.cli.main", "serve", "--role=control", "--inline-leader",
            "--data-dir", str(base), "--listen", f"127.0.0.1:{port}", "--etcd", etcd, "--leader-ttl", "3",
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env={**os.environ, "XDG_CONFIG_HOME": str(base)},
        )


def trusting(ca_file: Path) -> ssl.SSLContext:
    return client_context(ca_file.read_bytes())


async def ready(port: int, ca_file: Path) -> None:
    async with aiohttp.ClientSession() as s, s.get(f"https://127.0.0.1:{port}/readyz", ssl=trusting(ca_file)) as r:
        assert r.status == 200


async def test_killing_the_leader_hands_scheduling_to_the_other_instance_within_the_lease(
    tmp_path: Path,
) -> None:
    etcd = EmbeddedEtcd(data_dir=tmp_path / "etcd")
    await etcd.start()
    store = EtcdStore([etcd.endpoint])
    ports = [free_port(), free_port()]
    procs: list[asyncio.subprocess.Process] = []
    try:
        procs.append(await start_control(tmp_path / "a", etcd.endpoint, ports[0]))
        await eventually(lambda: ready(ports[0], tmp_path / "a" / "tls" / "ca.crt"), timeout=30, what="instance a serves")
        procs.append(await start_control(tmp_path / "b", etcd.endpoint, ports[1]))
        await eventually(lambda: ready(ports[1], tmp_path / "b" / "tls" / "ca.crt"), timeout=30, what="instance b serves")
        ca_file = tmp_path / "a" / "tls" / "ca.crt"
        assert ca_file.read_bytes() == (tmp_path / "b" / "tls" / "ca.crt").read_bytes()  # one CA, through etcd

        async def leader_pid() -> int:
            kv = await store.get(PREFIX + "control")
            assert kv is not None
            return int(kv.value.decode().rsplit(":", 1)[1])

        first = await eventually(leader_pid, timeout=15, what="a leader is elected")
        assert first in {p.pid for p in procs}
        survivor = next(p for p in procs if p.pid != first)
        survivor_port = ports[procs.index(survivor)]
        token = (tmp_path / ("a" if procs[0].pid == first else "b") / "admin.token").read_text().strip()

        os.kill(first, signal.SIGKILL)
        killed_at = asyncio.get_running_loop().time()

        async def taken_over() -> float:
            assert await leader_pid() == survivor.pid
            return asyncio.get_running_loop().time() - killed_at

        took = await eventually(taken_over, timeout=15, what="the other instance leads")
        assert took <= 3 + 2  # the lease TTL, and a little for the watch and the campaign

        # both serve the API (active-active), and the new leader's scheduler works
        async with ApiClient([f"https://127.0.0.1:{p}" for p in ports], token, ssl_context=trusting(ca_file)) as api:
            await api.create(Container(metadata=ObjectMeta(name="after-failover"),
                                       spec=ContainerSpec(image="busybox")))

            async def judged() -> None:
                c = await api.get(Container, "after-failover")
                assert c.status.reason == "Unschedulable", c.status
                assert c.status.message == "0/0 nodes available" or c.status.message.startswith("0/0")

            await eventually(judged, timeout=15, what="the new leader's scheduler judges a new container")
        async with aiohttp.ClientSession() as s, s.get(f"https://127.0.0.1:{survivor_port}/healthz",
                                                       ssl=trusting(ca_file)) as r:
            assert r.status == 200
    finally:
        for p in procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(p.wait(), 15)
                except TimeoutError:
                    p.kill()
                    await p.wait()
        await store.close()
        await etcd.stop()


pytestmark = pytest.mark.etcd
