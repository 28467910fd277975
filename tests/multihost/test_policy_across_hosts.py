"""NetworkPolicy between two hosts (VXLAN): ingress is judged on the receiver's node, egress on the
sender's, and a change reaches both within a second.

``web-1`` runs on host-1 and ``web-2`` on host-2, both busybox ``httpd``; requests are sent from
inside one container's network namespace (``nsenter --net``) to the other's address, so each crosses
both hosts' tables and the VXLAN link between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from corral.model import errors
from corral.model.resources import Container, ContainerSpec, NetworkPolicy, ObjectMeta
from corral.network.netns import netns_name, netns_path
from corral.reconcile.naming import netns_prefix
from tests.fixtures.cluster import eventually
from tests.fixtures.hosts import Hosts, start_hosts
from tests.fixtures.registry import Registry
from tests.multihost.conftest import wait_running


@pytest_asyncio.fixture(scope="module")
async def hosts(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> AsyncIterator[Hosts]:
    async with start_hosts(tmp_path_factory.mktemp("policy"), registry, count=2, backend="vxlan") as h:
        yield h


@pytest_asyncio.fixture(scope="module")
async def webs(hosts: Hosts) -> tuple[Container, Container]:
    for i in (1, 2):
        await hosts.api.create(Container(
            metadata=ObjectMeta(name=f"web-{i}", labels={"app": "web", "at": f"host-{i}"}),
            spec=ContainerSpec(image=hosts.image, command=["httpd", "-f", "-p", "8080", "-h", "/var/www"],
                               node=f"host-{i}", termination_grace_period_seconds=0)))
    return await wait_running(hosts, "web-1"), await wait_running(hosts, "web-2")


@pytest_asyncio.fixture(autouse=True)
async def no_policies_after(hosts: Hosts) -> AsyncIterator[None]:
    yield
    items, _ = await hosts.api.list(NetworkPolicy, namespace=None)
    for p in items:
        with contextlib.suppress(errors.NotFound):
            await hosts.api.delete(NetworkPolicy, p.metadata.name, namespace=p.metadata.namespace)


async def reaches(hosts: Hosts, client: Container, server: Container, *, timeout: float = 1.0) -> bool:
    host = next(h for h in hosts.hosts if h.name == client.spec.node)
    path = netns_path(netns_name(client.metadata.uid, prefix=netns_prefix(host.worker.agent_dir)))
    proc = await asyncio.create_subprocess_exec(
        "timeout", str(timeout), "nsenter", f"--net={path}", "/bin/busybox", "wget", "-q", "-O", "/dev/null",
        f"http://{server.status.ip}:8080/", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    return await proc.wait() == 0


async def expect(hosts: Hosts, client: Container, server: Container, *, allowed: bool) -> None:
    async def check() -> None:
        assert await reaches(hosts, client, server) == allowed
    verb = "reaches" if allowed else "is blocked from"
    await eventually(check, timeout=30, what=f"{client.metadata.name} {verb} {server.metadata.name}")


async def policy(hosts: Hosts, name: str, spec: dict[str, Any]) -> None:
    await hosts.api.request("POST", "/namespaces/default/networkpolicies", body={
        "apiVersion": "corral/v1", "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": "default"},
        "spec": spec})


async def blocked_within(hosts: Hosts, client: Container, server: Container, t0: float) -> float:
    """Seconds from ``t0`` to the start of the first request that fails (it was sent after the change)."""
    while True:
        sent = time.monotonic()
        if not await reaches(hosts, client, server, timeout=0.5):
            return sent - t0
        assert sent - t0 < 10, f"{client.metadata.name} → {server.metadata.name} was never blocked"


async def test_ingress_is_enforced_on_the_receivers_node_in_both_directions_within_a_second(
        hosts: Hosts, webs: tuple[Container, Container]) -> None:
    web1, web2 = webs
    await expect(hosts, web2, web1, allowed=True)
    await expect(hosts, web1, web2, allowed=True)
    t0 = time.monotonic()
    await policy(hosts, "deny-in", {"podSelector": {"matchLabels": {"app": "web"}}})
    on_host1, on_host2 = await asyncio.gather(blocked_within(hosts, web2, web1, t0),  # host-1's table judges
                                              blocked_within(hosts, web1, web2, t0))  # host-2's table judges
    print(f"deny enforced on host-1 within {on_host1:.3f}s, on host-2 within {on_host2:.3f}s")
    assert on_host1 < 1.0 and on_host2 < 1.0
    await policy(hosts, "from-host-2", {"podSelector": {"matchLabels": {"at": "host-1"}}, "ingress": [
        {"from": [{"podSelector": {"matchLabels": {"at": "host-2"}}}], "ports": [{"port": 8080}]}]})
    await expect(hosts, web2, web1, allowed=True)  # a peer on another node, by its labels
    assert not await reaches(hosts, web1, web2)


async def test_egress_is_enforced_on_the_senders_node(hosts: Hosts, webs: tuple[Container, Container]) -> None:
    web1, web2 = webs
    await expect(hosts, web2, web1, allowed=True)
    await policy(hosts, "host-2-out", {"podSelector": {"matchLabels": {"at": "host-2"}}, "policyTypes": ["Egress"]})
    await expect(hosts, web2, web1, allowed=False)
    assert await reaches(hosts, web1, web2), "web-2 still accepts: only its egress is isolated"
    await policy(hosts, "host-2-to-web", {"podSelector": {"matchLabels": {"at": "host-2"}}, "egress": [
        {"to": [{"ipBlock": {"cidr": f"{web1.status.ip}/32"}}], "ports": [{"port": 8080}]}]})
    await expect(hosts, web2, web1, allowed=True)
