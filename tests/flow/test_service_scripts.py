"""scripts/install.sh writes a systemd unit whose ExecStart serves; scripts/uninstall.sh removes what corral made.

There is no systemd running here: the test runs the generated unit's ExecStart line itself, with the
unit's EnvironmentFile, and stops it as systemd would with KillMode=process (SIGTERM to corral
alone). Everything lives under the test's own root, data dir, ports, bridge, subnet and nft table;
uninstall.sh is pointed at exactly those.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from corral.model.resources import Container, ContainerPort, ContainerSpec, ObjectMeta
from corral.reconcile.naming import netns_prefix
from corral.runtime.client import Client
from corral.runtime.containers import list_containers
from corral.runtime.embedded import EmbeddedContainerd
from corral.runtime.tasks import Task
from corral.store.embedded import free_port
from tests.fixtures.cluster import TEST_CLUSTER_CIDR, Worker, private_network, scrub
from tests.fixtures.registry import Registry
from tests.fixtures.serving import NODE, ServeAll

pytestmark = pytest.mark.containerd

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
TOKEN = "join-secret-from-the-env-file"


def unit_settings(unit: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in unit.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            out[key] = value
    return out


def env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            out[key] = shlex.split(value)[0]
    return out


async def sh(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, list(argv), capture_output=True, text=True, timeout=timeout,
                                   check=False)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def netns_names() -> list[str]:
    run = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return [line.split()[0] for line in run.stdout.splitlines() if line.strip()]


async def test_the_installed_unit_serves_keeps_containers_across_a_stop_and_uninstall_removes_everything(
    tmp_path: Path, registry: Registry,
) -> None:
    root, data = tmp_path / "root", tmp_path / "data"
    port = free_port()
    bridge, subnet = private_network("cri")
    flags = ["--data-dir", str(data), "--listen", f"127.0.0.1:{port}", "--node-name", NODE, "--bridge", bridge,
             "--nft-table", bridge, "--pod-cidr", subnet, "--cluster-cidr", TEST_CLUSTER_CIDR,
             "--containerd-socket", str(data / "no-such.sock"),
             "--insecure-registry", registry.host, "--join-token", TOKEN]
    install = await sh(str(SCRIPTS / "install.sh"), "--root", str(root), "--role", "all",
                       "--exec", f"{sys.executable} -m corral.cli.main", *flags)
    assert install.returncode == 0, install.stderr
    unit_path = root / "etc/systemd/system/corral.service"
    unit = unit_settings(unit_path)
    assert unit["KillMode"] == "process" and unit["Delegate"] == "yes" and unit["Restart"] == "on-failure"
    assert unit["EnvironmentFile"] == "-/etc/corral/corral.env"
    assert TOKEN not in unit_path.read_text()  # the token is in the environment file only
    secrets = root / "etc/corral/corral.env"
    assert secrets.stat().st_mode & 0o777 == 0o600
    assert env_file(secrets) == {"CORRAL_JOIN_TOKEN": TOKEN}
    if shutil.which("systemd-analyze"):
        verify = await sh("systemd-analyze", "verify", str(unit_path))
        assert verify.returncode == 0, verify.stderr
    else:
        print("systemd-analyze is not installed: the unit is not verified")

    argv = shlex.split(unit["ExecStart"])
    serve = ServeAll(data, registry, port=port, network=(bridge, subnet))
    data.mkdir()
    env = {**os.environ, **env_file(secrets), "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "PYTHONUNBUFFERED": "1"}
    try:
        with serve.log.open("ab") as out:
            serve.proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                              stdout=out, stderr=out, env=env)
        await serve.wait_ready()
        # serve read the secret from CORRAL_JOIN_TOKEN; join.token holds it as K10<CA hash>::<secret>
        assert (data / "join.token").read_text().strip().endswith("::" + TOKEN)
        async with serve.client() as api:
            await api.create(Container(
                metadata=ObjectMeta(name="kept"),
                spec=ContainerSpec(image=registry.ref, command=["sleep", "3600"],
                                   ports=[ContainerPort(container_port=8080, host_port=free_port())])))
        uid, pid = "", 0
        for _ in range(600):
            async with serve.client() as api:
                c = await api.get(Container, "kept")
            if c.status.phase == "Running":
                uid = c.metadata.uid
                async with Client(serve.containerd_socket) as ctr:
                    pid = (await Task(ctr, c.status.container_id).status()).pid
                break
            await asyncio.sleep(0.1)
        assert pid, serve.tail()
        portmap = (await sh("iptables", "-w", "-t", "nat", "-S")).stdout
        assert uid in portmap  # the host port's rules (CNI knows the container by its uid)

        pid_file = data / "agent" / "logpipes" / ".collector.pid"
        for _ in range(300):  # the collector is a process of its own: up once it holds its lock (slow under load)
            if pid_file.exists():
                break
            await asyncio.sleep(0.1)
        collector = int(pid_file.read_text())

        # `systemctl stop` with KillMode=process: SIGTERM to corral alone; the container stays
        await serve.stop()
        assert alive(pid)
        assert alive(collector)  # the node's log collector stays with the container (docs/operations.md)

        run = await sh(str(root / "usr/local/bin/corral-uninstall.sh"), "--root", str(root), "--keep-host-routes", timeout=180)
        assert run.returncode == 0, run.stderr
        assert not alive(pid), run.stdout
        assert not alive(collector), run.stdout
        assert not data.exists()
        assert not (root / "etc/corral").exists() and not unit_path.exists()
        assert not [n for n in netns_names() if n.startswith(netns_prefix(data / "agent"))]
        assert (await sh("ip", "link", "show", bridge)).returncode != 0
        assert (await sh("nft", "list", "table", "inet", bridge)).returncode != 0
        nat = (await sh("iptables", "-w", "-t", "nat", "-S")).stdout
        assert f"corral {bridge}" not in nat and uid not in nat
    finally:
        await serve.stop()
        if data.exists():  # uninstall did not get that far: clean up as the other tests do
            ctrd = EmbeddedContainerd(data / "containerd")
            with contextlib.suppress(Exception):
                await ctrd.start()
                async with Client(ctrd.socket) as ctr:
                    for info in await list_containers(ctr):
                        with contextlib.suppress(Exception):
                            await Task(ctr, info.id).kill(signal.SIGKILL, all=True)
            await scrub(Worker(name=NODE, data_dir=data, containerd=ctrd, bridge=bridge, pod_cidr=subnet,
                               args=[], log=serve.log))
            await ctrd.stop(cleanup=True)
