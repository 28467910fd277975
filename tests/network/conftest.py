"""A private container network per test: its own bridge ``crl<4 hex>``, subnet, netns prefix and data dir.

Teardown removes everything the test may have left, even when it failed: every container the network
knows of (records, namespaces, IPAM holders) is removed through ``Network.remove``, then the bridge
is deleted. The real CNI plugins and iptables are required; their absence fails loudly.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from corral.network import Network, NetworkConfig
from corral.network.cni import DEFAULT_PLUGIN_DIRS, INSTALL_HINT


async def run(*argv: str, timeout: float = 10.0) -> tuple[int, str]:
    """Run a command to completion; return its exit status and combined output."""
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(errors="replace")


def _require_parts() -> None:
    for plugin in ("bridge", "host-local", "portmap", "loopback"):
        if not any(os.access(d / plugin, os.X_OK) for d in DEFAULT_PLUGIN_DIRS):
            pytest.fail(f"CNI plugin {plugin} is missing: {INSTALL_HINT}")
    for tool in ("iptables", "ip"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: apt-get install iptables iproute2 (or scripts/install-deps.sh)")
    if not os.path.exists("/bin/busybox"):
        pytest.fail("busybox is missing: apt-get install busybox-static (or scripts/install-deps.sh)")


async def _free_subnet() -> str:
    _, routes = await run("ip", "-4", "route", "show", "table", "all")
    used = [w for line in routes.splitlines() for w in line.split() if "/" in w]
    taken = [ipaddress.ip_network(u, strict=False) for u in used if _is_net(u)]
    while True:
        net = ipaddress.ip_network(f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(256)}.0/24")
        if not any(net.overlaps(t) for t in taken):
            return str(net)


def _is_net(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


@dataclass
class PrivateNet:
    network: Network
    config: NetworkConfig


@pytest_asyncio.fixture
async def test_net(tmp_path: Path) -> AsyncIterator[PrivateNet]:
    _require_parts()
    tag = secrets.token_hex(2)
    config = NetworkConfig(
        data_dir=tmp_path / "agent",
        name=f"corral-test-{tag}",
        bridge=f"crl{tag}",
        subnet=await _free_subnet(),
        netns_prefix=f"corral-test-{tag}-",
    )
    network = Network(config)
    try:
        yield PrivateNet(network=network, config=config)
    finally:
        try:
            ids = set(await network.list_attached()) | set(await network.list_netns())
            ids |= set((await network.ipam_holders()).values())
            for cid in ids:
                await network.remove(cid)
        finally:
            await run("ip", "link", "del", config.bridge)
