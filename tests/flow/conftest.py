"""A whole single-node cluster for flow tests: etcd, the control plane, containerd, an agent process.

The control plane runs in the test process (on its own etcd); the agent is a real
``corral serve --role=worker`` child process (so tests can ``kill -9`` it) with its own containerd,
data dir, bridge and pod subnet. Everything is stopped, and every container removed, at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
import pytest_asyncio

from corral.api.client import ApiClient
from corral.model.errors import CorralError
from corral.model.resources import Container
from corral.roles.control import ControlConfig, ControlPlane, run_control
from corral.runtime.embedded import EmbeddedContainerd
from corral.store.embedded import EmbeddedEtcd, free_port
from tests.fixtures.registry import Registry

T = TypeVar("T")


@dataclass
class Worker:
    name: str
    data_dir: Path
    containerd: EmbeddedContainerd
    bridge: str
    pod_cidr: str
    args: list[str]
    log: Path
    proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "corral.cli.main", "serve", "--role=worker", *self.args,
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    async def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
        self.proc = None

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                await self.kill()
        self.proc = None


@dataclass
class Cluster:
    plane: ControlPlane
    api: ApiClient
    registry: Registry
    workers: list[Worker] = field(default_factory=list)

    @property
    def worker(self) -> Worker:
        return self.workers[0]

    @property
    def image(self) -> str:
        return self.registry.ref

    async def wait_for(self, name: str, check: Callable[[Container], bool], *, namespace: str = "default",
                       timeout: float = 30.0) -> Container:
        deadline = asyncio.get_running_loop().time() + timeout
        last: Container | None = None
        while True:
            with contextlib.suppress(Exception):
                last = await self.api.get(Container, name, namespace=namespace)
                if check(last):
                    return last
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{namespace}/{name} did not get there in {timeout}s; last: {last}")
            await asyncio.sleep(0.1)


async def eventually(check: Callable[[], Awaitable[T]], *, timeout: float = 30.0, what: str = "") -> T:
    deadline = asyncio.get_running_loop().time() + timeout
    last: BaseException | None = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            return await check()
        except (AssertionError, CorralError, OSError) as e:
            last = e
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what} ({last})")


@pytest_asyncio.fixture(scope="session")
async def cluster(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> AsyncIterator[Cluster]:
    base = tmp_path_factory.mktemp("cluster")
    etcd = EmbeddedEtcd(data_dir=base / "etcd")
    await etcd.start()
    stop = asyncio.Event()
    ready: asyncio.Future[ControlPlane] = asyncio.get_running_loop().create_future()

    async def started(plane: ControlPlane) -> None:
        ready.set_result(plane)
        await stop.wait()

    port = free_port()
    cfg = ControlConfig(data_dir=base / "control", port=port, etcd=[etcd.endpoint], write_user_config=False)
    control = asyncio.create_task(run_control(cfg, stop=stop, started=started))
    ctrd = EmbeddedContainerd(base / "containerd")
    workers: list[Worker] = []
    api: ApiClient | None = None
    try:
        plane = await asyncio.wait_for(asyncio.shield(ready), 30)
        await ctrd.start()
        suffix = secrets.token_hex(2)
        subnet = f"10.{200 + int(suffix[:2], 16) % 50}.{int(suffix[2:], 16)}.0/24"
        worker = Worker(
            name="node-1", data_dir=base / "agent", containerd=ctrd, bridge=f"crl{suffix}", pod_cidr=subnet,
            log=base / "agent.log",
            args=["--server", plane.url, "--join-token", plane.join_token, "--node-name", "node-1",
                  "--data-dir", str(base / "agent"), "--containerd-socket", ctrd.socket, "--pod-cidr", subnet,
                  "--bridge", f"crl{suffix}", "--insecure-registry", registry.host],
        )
        workers.append(worker)
        await worker.start()
        api = ApiClient(plane.url, plane.admin_token)
        c = Cluster(plane, api, registry, workers)
        from corral.model.resources import Node

        async def node_ready() -> None:
            node = await api.get(Node, "node-1")
            assert any(cond.type == "Ready" and cond.status == "True" for cond in node.status.conditions)

        try:
            await eventually(node_ready, timeout=30, what="node-1 registers")
        except AssertionError:
            raise AssertionError(f"the agent did not register; its log:\n{worker.log.read_text()[-4000:]}") from None
        yield c
    finally:
        with contextlib.suppress(Exception):
            if api is not None:
                items, _ = await api.list(Container, namespace=None)
                for item in items:
                    await api.delete(Container, item.metadata.name, namespace=item.metadata.namespace, grace_period=0)
                for _ in range(100):
                    items, _ = await api.list(Container, namespace=None)
                    if not items:
                        break
                    await asyncio.sleep(0.1)
        for w in workers:
            await w.stop()
        if api is not None:
            await api.close()
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(control, 15)
        await ctrd.stop(cleanup=True)
        await etcd.stop()
