"""Three hosts on two LANs joined by a router, backend vxlan: host-gw could not work here; the overlay does."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from corral.model.resources import Node
from corral.roles.peers import VXLAN_MAC_ANNOTATION
from tests.fixtures.cluster import eventually
from tests.fixtures.hosts import Hosts, start_hosts
from tests.fixtures.registry import Registry
from tests.multihost.conftest import fetch_from, peers_seen, server, wait_running


@pytest_asyncio.fixture(scope="module")
async def hosts(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> AsyncIterator[Hosts]:
    async with start_hosts(tmp_path_factory.mktemp("vxlan"), registry, count=3, backend="vxlan", routed=True) as h:
        yield h


async def overlay_state(hosts: Hosts) -> dict[str, tuple[list[str], list[str], list[str]]]:
    """Per host: corral's routes, the VXLAN device's FDB entries and its permanent neighbours."""
    out = {}
    for h in hosts.hosts:
        fdb = await h.run("bridge", "fdb", "show", "dev", "corral.vxlan")
        neigh = await h.run("ip", "-4", "neigh", "show", "dev", "corral.vxlan", "nud", "permanent")
        out[h.name] = (await h.routes(), sorted(ln for ln in fdb.splitlines() if " dst " in ln),
                       sorted(ln for ln in neigh.splitlines() if ln.strip()))
    return out


async def test_the_hosts_are_on_two_lans(hosts: Hosts) -> None:
    assert [h.ip.rsplit('.', 1)[0] for h in hosts.hosts] == [hosts.lan_a, hosts.lan_b, hosts.lan_a]


async def test_every_host_has_a_vxlan_device_with_fdb_neighbour_and_route_per_other_node(hosts: Hosts) -> None:
    async def published() -> tuple[dict[str, Node], dict[str, str]]:
        nodes = {h.name: await hosts.api.get(Node, h.name) for h in hosts.hosts}
        macs = {name: n.metadata.annotations.get(VXLAN_MAC_ANNOTATION, "") for name, n in nodes.items()}
        assert all(macs.values()) and len(set(macs.values())) == 3, macs
        return nodes, macs

    nodes, macs = await eventually(published, timeout=30, what="every node publishes its VTEP MAC")

    async def complete() -> None:
        state = await overlay_state(hosts)
        for h in hosts.hosts:
            routes, fdb, neigh = state[h.name]
            others = [o for o in hosts.hosts if o is not h]
            want_routes = sorted(
                f"{nodes[o.name].spec.pod_cidr} via {ipaddress.IPv4Network(nodes[o.name].spec.pod_cidr).network_address}"
                f" dev corral.vxlan" for o in others)
            assert [" ".join(r.split()[:5]) for r in routes] == want_routes, routes
            assert all("onlink" in r for r in routes), routes
            assert sorted((ln.split()[0], ln.split()[ln.split().index("dst") + 1]) for ln in fdb) == \
                sorted((macs[o.name], o.ip) for o in others), fdb
            assert sorted(ln.split()[0] for ln in neigh) == sorted(
                str(ipaddress.IPv4Network(nodes[o.name].spec.pod_cidr).network_address) for o in others), neigh

    await eventually(complete, timeout=30, what="the overlay on every host")
    link = await hosts[0].run("ip", "-d", "link", "show", "corral.vxlan")
    assert "mtu 1450" in link and "vxlan id 1 " in link and "dstport 8472" in link and "nolearning" in link, link


async def test_host_gw_could_not_reach_the_other_lan(hosts: Hosts) -> None:
    """The premise of the routed variant: host-1 has no on-link path to host-2's IP."""
    out = await hosts[0].run("ip", "route", "get", hosts[1].ip)
    assert "via" in out, out


async def test_a_container_reaches_containers_across_the_router_and_keeps_its_address(hosts: Hosts) -> None:
    await hosts.api.create(server("web-2", node="host-2", image=hosts.image))
    await hosts.api.create(server("web-3", node="host-3", image=hosts.image))
    web2, web3 = await wait_running(hosts, "web-2"), await wait_running(hosts, "web-3")
    ip, out = await fetch_from(hosts, "client-1", node="host-1",
                               urls=[f"http://{web2.status.ip}:8080/cgi-bin/peer",
                                     f"http://{web3.status.ip}:8080/cgi-bin/peer"])
    cidr = ipaddress.IPv4Network((await hosts.api.get(Node, "host-1")).spec.pod_cidr)
    peers = peers_seen(out)
    assert len(peers) == 2 and all(ipaddress.IPv4Address(p) in cidr for p in peers), out
    if ip:
        assert peers == [ip, ip]
    # the containers' links fit inside the overlay
    assert "mtu 1450" in await hosts[0].run("ip", "link", "show", "corral0")


async def test_a_restarted_agent_leaves_routes_fdb_and_neighbours_as_they_were(hosts: Hosts) -> None:
    before = await overlay_state(hosts)
    h1 = hosts[0]
    await h1.worker.stop()
    await h1.worker.start()
    await hosts.wait_ready(h1)

    async def keeping_routes() -> None:
        assert h1.worker.log.read_text().count("keeping routes to the other nodes") == 2

    await eventually(keeping_routes, timeout=30, what="the restarted agent keeps routes")
    await asyncio.sleep(1.0)
    assert await overlay_state(hosts) == before
    restarted = h1.worker.log.read_text().split("node host-1 is back")[-1]
    assert "added " not in restarted and "removed " not in restarted, restarted[-3000:]


async def test_a_deleted_node_leaves_no_route_fdb_or_neighbour_on_the_others(hosts: Hosts) -> None:
    h2 = hosts[1]
    node = await hosts.api.get(Node, h2.name)
    cidr, mac = node.spec.pod_cidr, node.metadata.annotations[VXLAN_MAC_ANNOTATION]
    await h2.worker.stop()
    await hosts.api.delete(Node, h2.name)

    async def gone() -> None:
        state = await overlay_state(hosts)
        for h in (hosts[0], hosts[2]):
            routes, fdb, neigh = state[h.name]
            assert not [r for r in routes if r.startswith(cidr)], routes
            assert not [f for f in fdb if f.startswith(mac)], fdb
            assert not [n for n in neigh if mac in n], neigh

    await eventually(gone, timeout=30, what=f"{h2.name} forgotten")
