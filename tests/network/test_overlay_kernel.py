"""``Overlay`` against the real kernel, in a network namespace of the test's own: level-based and idempotent.

The overlay's calls act on the calling process's namespace, so each step runs as
``nsenter --net=<ns> python -c …`` and reports what it changed as JSON.
"""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import AsyncIterator

import pytest_asyncio

from tests.fixtures.hosts import sh

STEP = """
import json, sys
from corral.network.overlay import Overlay, Peer, plan
backend, peers = sys.argv[1], [Peer(*p) for p in json.loads(sys.argv[2])]
o = Overlay(backend=backend, device="corral.vxlan", vni=7, port=8472, node_ip="192.168.250.10", pod_cidr="10.42.0.0/24")
mac = o.ensure_device()
c = o.apply(plan(backend, peers))
print(json.dumps({"mac": mac, "added": c.added, "removed": c.removed, "failed": c.failed}))
"""

A = ["a", "10.42.1.0/24", "192.168.250.11", "aa:aa:aa:aa:aa:01"]
B = ["b", "10.42.2.0/24", "192.168.250.12", "aa:aa:aa:aa:aa:02"]


@pytest_asyncio.fixture
async def netns() -> AsyncIterator[str]:
    name = f"crov{secrets.token_hex(3)}"
    await sh("ip", "netns", "add", name)
    try:
        await sh("ip", "-n", name, "link", "add", "up0", "type", "veth", "peer", "name", "up1")
        await sh("ip", "-n", name, "addr", "add", "192.168.250.10/24", "dev", "up0")
        await sh("ip", "-n", name, "link", "set", "up0", "up")
        await sh("ip", "-n", name, "link", "set", "up1", "up")
        yield name
    finally:
        await sh("ip", "netns", "del", name, check=False)


async def step(ns: str, backend: str, peers: list[list[str]]) -> dict[str, list[str] | str]:
    out = await sh("nsenter", f"--net=/var/run/netns/{ns}", sys.executable, "-c", STEP, backend, json.dumps(peers))
    result: dict[str, list[str] | str] = json.loads(out.strip().splitlines()[-1])
    return result


async def test_applying_the_same_plan_twice_changes_nothing_and_a_gone_peer_leaves_no_trace(netns: str) -> None:
    first = await step(netns, "vxlan", [A, B])
    assert len(first["added"]) == 6 and not first["removed"] and not first["failed"], first
    again = await step(netns, "vxlan", [A, B])
    assert again == {**first, "added": []}, "a second pass (an agent restart) changed something"
    await sh("ip", "-n", netns, "route", "add", "10.99.0.0/24", "via", "192.168.250.99")  # not ours
    fewer = await step(netns, "vxlan", [A])
    assert sorted(fewer["removed"]) == sorted([
        "route 10.42.2.0/24 via 10.42.2.0",
        "neighbour 10.42.2.0 aa:aa:aa:aa:aa:02", "fdb aa:aa:aa:aa:aa:02 192.168.250.12"]), fewer
    routes = await sh("ip", "-n", netns, "-4", "route")
    assert "10.99.0.0/24 via 192.168.250.99" in routes and "10.42.2.0" not in routes
    assert "10.42.1.0/24 via 10.42.1.0 dev corral.vxlan proto 74 onlink" in routes, routes
    link = await sh("ip", "-n", netns, "-d", "link", "show", "corral.vxlan")
    assert "mtu 1450" in link and "vxlan id 7" in link and "nolearning" in link, link


async def test_switching_to_host_gw_removes_the_device_and_routes_via_the_node_ips(netns: str) -> None:
    await step(netns, "vxlan", [A, B])
    hostgw = await step(netns, "host-gw", [A, B])
    assert hostgw["mac"] == "" and not hostgw["failed"], hostgw
    routes = await sh("ip", "-n", netns, "-4", "route", "show", "proto", "74")
    assert sorted(routes.split("\n")[:2]) == ["10.42.1.0/24 via 192.168.250.11 dev up0 ",
                                              "10.42.2.0/24 via 192.168.250.12 dev up0 "], routes
    assert "corral.vxlan" not in await sh("ip", "-n", netns, "link")
