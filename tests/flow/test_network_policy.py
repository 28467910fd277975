"""NetworkPolicy enforced by the agent's nftables table, against real containers on one node.

Servers run busybox ``httpd``; clients are containers that only sleep, and the test sends requests
from inside a client's network namespace (``nsenter --net``), so each request really leaves that
container's ``eth0``, crosses the node's bridge and is judged by the worker's table. Every policy a
test makes is deleted after it, so the other flow tests sharing the cluster see none.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest_asyncio

from corral.model import errors
from corral.model.resources import (
    Container,
    ContainerPort,
    ContainerSpec,
    Namespace,
    NetworkPolicy,
    ObjectMeta,
)
from corral.network.netns import netns_name, netns_path
from corral.network.nftables import nft_command
from corral.reconcile.naming import netns_prefix
from corral.store.embedded import free_port
from tests.fixtures.cluster import Cluster, eventually

NS = "pol-team"  # a namespace labelled team=x, for namespaceSelector


@dataclass
class Peers:
    srv: Container  # httpd :8080, app=srv, with a host port
    open: Container  # httpd :8080, app=open; no policy ever selects it
    cli: Container  # role=client, namespace default
    other: Container  # role=other, namespace default
    team: Container  # role=client, namespace pol-team (team=x)
    host_port: int


def netns_of(cluster: Cluster, c: Container) -> str:
    prefix = netns_prefix(cluster.worker.agent_dir)
    return str(netns_path(netns_name(c.metadata.uid, prefix=prefix)))


async def run(*argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


async def reaches(cluster: Cluster, client: Container, server: Container, *, port: int = 8080,
                  timeout: float = 1.0) -> bool:
    """Whether an HTTP request from inside ``client`` gets an answer from ``server``."""
    rc, _ = await run("timeout", str(timeout), "nsenter", f"--net={netns_of(cluster, client)}",
                      "/bin/busybox", "wget", "-q", "-O", "/dev/null", f"http://{server.status.ip}:{port}/")
    return rc == 0


async def expect(cluster: Cluster, client: Container, server: Container, *, allowed: bool, port: int = 8080) -> None:
    async def check() -> None:
        assert await reaches(cluster, client, server, port=port) == allowed
    verb = "reaches" if allowed else "is blocked from"
    await eventually(check, timeout=20, what=f"{client.metadata.name} {verb} {server.metadata.name}:{port}")


async def start(cluster: Cluster, name: str, labels: dict[str, str], command: list[str], *,
                namespace: str = "default", ports: list[ContainerPort] | None = None) -> Container:
    await cluster.api.create(Container(metadata=ObjectMeta(name=name, namespace=namespace, labels=labels),
                                       spec=ContainerSpec(image=cluster.image, command=command, ports=ports or [])))
    return await cluster.wait_for(name, lambda c: c.status.phase == "Running" and bool(c.status.ip),
                                  namespace=namespace, timeout=60)


async def delete(cluster: Cluster, tp: Any, name: str, namespace: str = "default") -> None:
    with contextlib.suppress(errors.NotFound):
        await cluster.api.delete(tp, name, namespace=namespace, grace_period=0)


@pytest_asyncio.fixture(scope="module")
async def peers(cluster: Cluster) -> AsyncIterator[Peers]:
    host_port = free_port()
    httpd = ["httpd", "-f", "-p", "8080", "-h", "/var/www"]
    sleep = ["sleep", "3600"]
    made: list[tuple[str, str]] = []
    try:
        await cluster.api.create(Namespace(metadata=ObjectMeta(name=NS, labels={"team": "x"})))
        spec = [("srv", {"app": "srv"}, httpd, "default", [ContainerPort(8080, host_port=host_port, name="web")]),
                ("open", {"app": "open"}, httpd, "default", []),
                ("cli", {"role": "client"}, sleep, "default", []),
                ("other", {"role": "other"}, sleep, "default", []),
                ("team", {"role": "client"}, sleep, NS, [])]
        for name, _, _, namespace, _ in spec:
            made.append((name, namespace))
        started = await asyncio.gather(*(start(cluster, name, labels, command, namespace=namespace, ports=ports)
                                         for name, labels, command, namespace, ports in spec))
        yield Peers(*started, host_port=host_port)
    finally:
        for name, namespace in made:
            await delete(cluster, Container, name, namespace)
        for name, namespace in made:
            async def gone(name: str = name, namespace: str = namespace) -> None:
                with contextlib.suppress(errors.NotFound):
                    await cluster.api.get(Container, name, namespace=namespace)
                    raise AssertionError("still there")
            await eventually(gone, timeout=30, what=f"{namespace}/{name} is deleted")
        with contextlib.suppress(errors.NotFound):
            await cluster.api.delete(Namespace, NS)


@pytest_asyncio.fixture(autouse=True)
async def no_policies_after(cluster: Cluster) -> AsyncIterator[None]:
    yield
    items, _ = await cluster.api.list(NetworkPolicy, namespace=None)
    for p in items:
        await delete(cluster, NetworkPolicy, p.metadata.name, p.metadata.namespace)


async def policy(cluster: Cluster, name: str, spec: dict[str, Any], *, namespace: str = "default") -> None:
    body = {"apiVersion": "corral/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    await cluster.api.request("POST", f"/namespaces/{namespace}/networkpolicies", body=body)


SRV = {"matchLabels": {"app": "srv"}}


async def test_default_deny_ingress_blocks_a_client_and_a_policy_admitting_its_label_lets_it_in(
        cluster: Cluster, peers: Peers) -> None:
    await expect(cluster, peers.cli, peers.srv, allowed=True)
    await policy(cluster, "deny", {"podSelector": SRV})
    await expect(cluster, peers.cli, peers.srv, allowed=False)
    await policy(cluster, "allow-clients", {"podSelector": SRV, "ingress": [
        {"from": [{"podSelector": {"matchLabels": {"role": "client"}}}], "ports": [{"port": "web"}]}]})
    await expect(cluster, peers.cli, peers.srv, allowed=True)
    await expect(cluster, peers.other, peers.srv, allowed=False)
    assert not await reaches(cluster, peers.team, peers.srv), "a podSelector alone means the policy's namespace"
    # a container no policy selects accepts everything, the whole time
    for client in (peers.cli, peers.other, peers.team):
        assert await reaches(cluster, client, peers.open)


async def test_a_namespace_selector_admits_the_containers_of_labelled_namespaces(cluster: Cluster, peers: Peers) -> None:
    await policy(cluster, "from-team-x", {"podSelector": SRV, "ingress": [
        {"from": [{"namespaceSelector": {"matchLabels": {"team": "x"}},
                   "podSelector": {"matchExpressions": [{"key": "role", "operator": "In", "values": ["client"]}]}}]}]})
    await expect(cluster, peers.team, peers.srv, allowed=True)
    await expect(cluster, peers.cli, peers.srv, allowed=False)


async def test_an_ip_block_admits_its_range_except_the_excepted_addresses(cluster: Cluster, peers: Peers) -> None:
    await policy(cluster, "from-subnet", {"podSelector": SRV, "ingress": [
        {"from": [{"ipBlock": {"cidr": cluster.worker.pod_cidr, "except": [f"{peers.cli.status.ip}/32"]}}],
         "ports": [{"port": 8000, "endPort": 8090, "protocol": "TCP"}]}]})
    await expect(cluster, peers.cli, peers.srv, allowed=False)
    await expect(cluster, peers.other, peers.srv, allowed=True)


async def test_egress_deny_stops_a_client_and_an_egress_rule_lets_it_reach_one_server(
        cluster: Cluster, peers: Peers) -> None:
    await expect(cluster, peers.other, peers.open, allowed=True)
    await policy(cluster, "other-out", {"podSelector": {"matchLabels": {"role": "other"}}, "policyTypes": ["Egress"]})
    await expect(cluster, peers.other, peers.open, allowed=False)
    await expect(cluster, peers.other, peers.srv, allowed=False)
    await policy(cluster, "other-to-srv", {"podSelector": {"matchLabels": {"role": "other"}}, "egress": [
        {"to": [{"podSelector": SRV}], "ports": [{"port": 8080}]}]})
    await expect(cluster, peers.other, peers.srv, allowed=True)
    await expect(cluster, peers.other, peers.open, allowed=False)
    assert await reaches(cluster, peers.cli, peers.open), "only the selected container is isolated"


async def test_a_policy_change_is_enforced_within_a_second(cluster: Cluster, peers: Peers) -> None:
    await expect(cluster, peers.cli, peers.srv, allowed=True)
    t0 = time.monotonic()
    await policy(cluster, "deny", {"podSelector": SRV})
    while True:  # a request that fails was sent after the rules changed: its start bounds the delay
        sent = time.monotonic()
        if not await reaches(cluster, peers.cli, peers.srv, timeout=0.3):
            break
        assert sent - t0 < 5, "the deny policy was not enforced"
    deny_delay = sent - t0
    t1 = time.monotonic()
    await policy(cluster, "allow", {"podSelector": SRV, "ingress": [{"from": [{"podSelector": {}}]}]})
    while not await reaches(cluster, peers.cli, peers.srv, timeout=0.3):  # each miss costs its timeout
        assert time.monotonic() - t1 < 5, "the allow policy was not enforced"
    allow_delay = time.monotonic() - t1
    print(f"deny enforced within {deny_delay:.3f}s, allow within {allow_delay:.3f}s")
    assert deny_delay < 1.0
    assert allow_delay < 1.0 + 0.3


async def test_containers_cannot_reach_the_nodes_loopback_but_host_ports_on_127_0_0_1_still_work(
        cluster: Cluster, peers: Peers) -> None:
    table = cluster.worker.bridge
    # portmap set route_localnet on the bridge for srv's host port: without the guard, 127.0.0.1 is open
    rc, out = await run("sysctl", "-n", f"net.ipv4.conf.{table}.route_localnet")
    assert rc == 0 and out.strip() == "1", out
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        port = sock.getsockname()[1]
        netns = netns_of(cluster, peers.other)
        gateway = next(line.split()[2] for line in (await run("nsenter", f"--net={netns}", "ip", "-4", "route"))[1]
                       .splitlines() if line.startswith("default"))
        # the client container sends to 127.0.0.1 through its gateway, as an attacker with NET_ADMIN would
        for argv in (["ip", "addr", "flush", "dev", "lo"], ["sysctl", "-w", "net.ipv4.conf.eth0.route_localnet=1"],
                     ["ip", "route", "add", "127.0.0.1/32", "via", gateway, "dev", "eth0"]):
            rc, out = await run("nsenter", f"--net={netns}", *argv)
            assert rc == 0, out

        async def sent_through() -> bool:
            send = f"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'knock', ('127.0.0.1', {port}))"
            await run("nsenter", f"--net={netns}", sys.executable, "-c", send)  # busybox nc has no UDP
            for _ in range(20):  # up to 2 s for it to arrive
                with contextlib.suppress(BlockingIOError):
                    return sock.recv(100) != b""
                await asyncio.sleep(0.1)
            return False

        async def settled() -> None:
            _, listed = await nft_command("list", "table", "inet", table)
            assert "loopback_input" in listed
        await eventually(settled, timeout=20, what="the agent has loaded its guard")
        # the control: with the agent's guard chain gone, the packet arrives (so the test can fail)
        _, listed = await nft_command("list", "chain", "inet", table, "loopback_input")
        rc, out = await nft_command("delete", "chain", "inet", table, "loopback_input")
        assert rc == 0, out
        try:
            assert await sent_through(), "without the guard the datagram should reach 127.0.0.1"
        finally:  # the guard back as the agent had loaded it
            proc = await asyncio.create_subprocess_exec("nft", "-f", "-", stdin=asyncio.subprocess.PIPE)
            await proc.communicate(listed.encode())
            assert proc.returncode == 0
        assert not await sent_through(), "the loopback guard lets the datagram through"
    # and the node's own use of 127.0.0.1 host ports still works (portmap's DNAT + masquerade)
    rc, out = await run("timeout", "3", "/bin/busybox", "wget", "-q", "-O", "-", f"http://127.0.0.1:{peers.host_port}/")
    assert rc == 0 and "hello from corral" in out, out


async def test_a_restarted_agent_loads_the_same_table_and_nothing_twice(cluster: Cluster, peers: Peers) -> None:
    worker = cluster.worker
    await policy(cluster, "deny", {"podSelector": SRV, "ingress": [
        {"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]})
    await expect(cluster, peers.other, peers.srv, allowed=False)
    _, before = await nft_command("list", "table", "inet", worker.bridge)
    assert "_sel {" in before and "loopback_input" in before
    await worker.kill()
    rc, out = await nft_command("add", "chain", "inet", worker.bridge, "policy_leftover")  # a stale piece
    assert rc == 0, out
    await worker.start()
    await cluster.wait_node_ready(worker)

    async def same() -> None:  # line for line (the sets may be listed in another order: the running
        _, after = await nft_command("list", "table", "inet", worker.bridge)  # agent added them one by one)
        assert sorted(after.splitlines()) == sorted(before.splitlines())
    await eventually(same, timeout=30, what="the restarted agent loads the same table")
    await expect(cluster, peers.other, peers.srv, allowed=False)
    await expect(cluster, peers.cli, peers.srv, allowed=True)


async def test_containers_that_start_after_the_policies_join_their_selections(cluster: Cluster, peers: Peers) -> None:
    await policy(cluster, "late-deny", {"podSelector": {"matchLabels": {"app": "late"}}, "ingress": [
        {"from": [{"podSelector": {"matchLabels": {"role": "late-client"}}}]}]})
    await expect(cluster, peers.cli, peers.open, allowed=True)
    late = await start(cluster, "late", {"app": "late"}, ["httpd", "-f", "-p", "8080", "-h", "/var/www"])
    late_client = await start(cluster, "late-client", {"role": "late-client"}, ["sleep", "3600"])
    try:
        await expect(cluster, peers.cli, late, allowed=False)  # the new server is isolated on arrival
        await expect(cluster, late_client, late, allowed=True)  # and the new client is among its peers
    finally:
        for name in ("late", "late-client"):
            await delete(cluster, Container, name)
