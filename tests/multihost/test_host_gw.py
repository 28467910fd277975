"""Three hosts on one LAN, backend host-gw: podCIDRs from the cluster CIDR, routes between nodes, no NAT inside."""

from __future__ import annotations

import asyncio
import ipaddress
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from click.testing import CliRunner

from corral.cli.main import cli
from corral.model.errors import NotFound
from corral.model.resources import Node
from corral.store.embedded import free_port
from tests.fixtures.cluster import eventually
from tests.fixtures.hosts import Hosts, start_hosts
from tests.fixtures.registry import Registry
from tests.multihost.conftest import fetch_from, peers_seen, server, wait_running


@pytest_asyncio.fixture(scope="module")
async def hosts(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> AsyncIterator[Hosts]:
    async with start_hosts(tmp_path_factory.mktemp("hostgw"), registry, count=3, backend="host-gw") as h:
        yield h


async def pod_cidrs(hosts: Hosts) -> dict[str, str]:
    return {h.name: (await hosts.api.get(Node, h.name)).spec.pod_cidr for h in hosts.hosts}


async def test_each_worker_gets_its_own_slice_of_the_cluster_cidr(hosts: Hosts) -> None:
    cidrs = await pod_cidrs(hosts)
    nets = [ipaddress.IPv4Network(c) for c in cidrs.values()]
    assert all(n.subnet_of(ipaddress.IPv4Network("10.42.0.0/16")) and n.prefixlen == 24 for n in nets), cidrs
    assert len(set(nets)) == 3, cidrs
    # the agent's bridge is the gateway of its node's slice
    for h in hosts.hosts:
        out = await h.run("ip", "-4", "addr", "show", "dev", "corral0", check=False)
        assert str(ipaddress.IPv4Network(cidrs[h.name]).network_address + 1) in out or "does not exist" in out


async def test_every_host_routes_each_other_podcidr_via_that_node_ip(hosts: Hosts) -> None:
    cidrs = await pod_cidrs(hosts)

    async def routed() -> None:
        for h in hosts.hosts:
            want = sorted(f"{cidrs[o.name]} via {o.ip} dev eth0" for o in hosts.hosts if o is not h)
            got = [" ".join(r.split()[:5]) for r in await h.routes()]
            assert got == want, f"{h.name}: {got} != {want}"

    await eventually(routed, timeout=30, what="host-gw routes on every host")


async def test_a_container_reaches_containers_on_two_other_hosts_and_keeps_its_address(hosts: Hosts) -> None:
    await hosts.api.create(server("web-2", node="host-2", image=hosts.image))
    await hosts.api.create(server("web-3", node="host-3", image=hosts.image))
    web2, web3 = await wait_running(hosts, "web-2"), await wait_running(hosts, "web-3")
    ip, out = await fetch_from(hosts, "client-1", node="host-1",
                               urls=[f"http://{web2.status.ip}:8080/cgi-bin/peer",
                                     f"http://{web3.status.ip}:8080/cgi-bin/peer"])
    cidr = ipaddress.IPv4Network((await hosts.api.get(Node, "host-1")).spec.pod_cidr)
    peers = peers_seen(out)
    assert len(peers) == 2, out
    assert all(ipaddress.IPv4Address(p) in cidr for p in peers), f"the servers saw {peers}, not host-1's containers"
    if ip:
        assert peers == [ip, ip]


async def test_a_container_reaching_outside_the_cluster_cidr_is_masqueraded_to_its_node(hosts: Hosts) -> None:
    """Outside = this test process, on the LAN bridge's address: it sees host-2's LAN address, not the container's."""
    seen: list[str] = []

    async def peer(request: web.Request) -> web.Response:
        seen.append(request.remote or "")
        return web.Response(text=f"peer={request.remote}\n")

    app = web.Application()
    app.router.add_get("/peer", peer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, f"{hosts.lan_a}.1", port).start()
    try:
        _, out = await fetch_from(hosts, "outbound-2", node="host-2", urls=[f"http://{hosts.lan_a}.1:{port}/peer"])
    finally:
        await runner.cleanup()
    assert peers_seen(out) == [hosts[1].ip] and seen == [hosts[1].ip], (out, seen)


async def test_get_nodes_wide_shows_each_node_podcidr(hosts: Hosts) -> None:
    cidrs = await pod_cidrs(hosts)
    result = await _cli(hosts, "get", "nodes", "-o", "wide")
    assert "PODCIDR" in result.splitlines()[0]
    for name, cidr in cidrs.items():
        line = next(ln for ln in result.splitlines() if ln.startswith(name))
        assert cidr in line.split()


async def _cli(hosts: Hosts, *args: str) -> str:
    res = await asyncio.to_thread(CliRunner().invoke, cli,
                                  [*args, "--server", hosts.plane.url, "--token", hosts.plane.admin_token],
                                  env={"CORRAL_CA": str(hosts.plane.ca_file)})
    assert res.exit_code == 0, res.output
    return res.output


async def test_a_restarted_agent_leaves_the_routes_as_they_were(hosts: Hosts) -> None:
    h1 = hosts[0]
    before = {h.name: await h.routes() for h in hosts.hosts}
    await h1.worker.stop()
    await h1.worker.start()
    await hosts.wait_ready(h1)

    async def keeping_routes() -> None:  # the restarted agent has read the Nodes and applied its plan
        assert h1.worker.log.read_text().count("keeping routes to the other nodes") == 2

    await eventually(keeping_routes, timeout=30, what="the restarted agent keeps routes")
    await asyncio.sleep(1.0)
    for h in hosts.hosts:
        assert await h.routes() == before[h.name]
    restarted = h1.worker.log.read_text().split("node host-1 is back")[-1]
    assert "added route" not in restarted and "removed route" not in restarted, restarted[-3000:]


async def test_a_pod_cidr_override_outside_the_cluster_cidr_or_on_another_node_is_refused(
        hosts: Hosts, tmp_path: Path) -> None:
    taken = (await hosts.api.get(Node, "host-2")).spec.pod_cidr
    for cidr, words in (("10.99.0.0/24", "--pod-cidr 10.99.0.0/24 lies outside the cluster CIDR 10.42.0.0/16"),
                        (taken, f"overlaps node host-2's podCIDR {taken}")):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "corral.cli.main", "serve", "--role=worker", "--server", hosts.plane.url,
            "--join-token", hosts.plane.join_token, "--node-name", "intruder", "--data-dir", str(tmp_path),
            "--containerd-socket", hosts[0].worker.containerd.socket, "--bridge", "crlintruder", "--pod-cidr", cidr,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out = (await asyncio.wait_for(proc.communicate(), 60))[0].decode()
        assert proc.returncode != 0 and words in out, out[-3000:]
    with pytest.raises(NotFound):
        await hosts.api.get(Node, "intruder")


async def test_a_deleted_node_loses_its_route_on_the_others_and_frees_its_slice(hosts: Hosts) -> None:
    h3 = hosts[2]
    cidr = (await hosts.api.get(Node, h3.name)).spec.pod_cidr
    await h3.worker.stop()
    await hosts.api.delete(Node, h3.name)

    async def gone() -> None:
        for h in hosts.hosts[:2]:
            assert not [r for r in await h.routes() if r.startswith(cidr)], f"{h.name} still routes {cidr}"
        with pytest.raises(NotFound):
            await hosts.api.get(Node, h3.name)
        kv = await hosts.plane.store.get("/corral/_podcidrs/" + cidr.replace("/", "-"))
        assert kv is None, "the slice's record is still there"

    await eventually(gone, timeout=30, what=f"{cidr} forgotten")
