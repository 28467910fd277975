"""Containers attached with the real CNI plugins: addresses, reachability, host ports, clean removal."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from corral.network import Network, PortMapping, netns
from corral.network.masq import chain_name
from tests.network.conftest import PrivateNet, run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _web_root(root: Path) -> None:
    root.mkdir()
    (root / "index.html").write_text("hello from b\n")


@asynccontextmanager
async def httpd(netns_name: str, root: Path) -> AsyncIterator[None]:
    """busybox httpd on port 8080 inside the namespace, stopped (by its pid) afterwards."""
    await asyncio.to_thread(_web_root, root)
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", netns_name, "busybox", "httpd", "-f", "-p", "8080", "-h", str(root)
    )
    try:
        yield
    finally:
        proc.kill()
        await proc.wait()


async def fetch(url: str, *, in_netns: str | None = None, tries: int = 30) -> str:
    argv = ["busybox", "wget", "-q", "-O", "-", url]  # no -T: Debian 12's busybox-static wget crashes on it
    if in_netns:
        argv = ["ip", "netns", "exec", in_netns, *argv]
    out = ""
    for _ in range(tries):
        try:
            rc, out = await run(*argv, timeout=3)
        except TimeoutError:
            continue
        if rc == 0:
            return out
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not answer: {out}")


async def iptables_mentions(net: PrivateNet, container_id: str) -> list[str]:
    _, rules = await run("iptables-save")
    digest = hashlib.sha512((net.config.name + container_id).encode()).hexdigest()[:21]
    return [line for line in rules.splitlines() if f'id: "{container_id}"' in line or digest in line]


async def test_two_containers_get_subnet_ips_reach_each_other_and_a_host_port_answers_on_loopback(
    test_net: PrivateNet, tmp_path: Path
) -> None:
    network, config = test_net.network, test_net.config
    host_port = _free_port()
    a = await network.ensure("a")
    b = await network.ensure("b", [PortMapping(host_port=host_port, container_port=8080)])

    subnet = ipaddress.ip_network(config.subnet)
    assert {a.ip, b.ip} <= {str(h) for h in subnet.hosts()} and a.ip != b.ip
    assert a.gateway == b.gateway == config.gateway_ip
    assert a.interface == "eth0" and a.mac and a.prefix_len == 24
    assert sorted((await network.ipam_holders()).values()) == ["a", "b"]

    b_ns = network.netns_path("b").name
    async with httpd(b_ns, tmp_path / "www"):
        assert await fetch(f"http://{b.ip}:8080/", in_netns=network.netns_path("a").name) == "hello from b\n"
        assert await fetch(f"http://{b.ip}:8080/") == "hello from b\n"
        assert await fetch(f"http://127.0.0.1:{host_port}/") == "hello from b\n"

    for cid in ("a", "b"):
        await network.remove(cid)
    assert await network.ipam_holders() == {}
    assert await network.list_netns() == [] and await network.list_attached() == []
    assert await iptables_mentions(test_net, "a") == [] and await iptables_mentions(test_net, "b") == []
    await network.remove("b")  # DEL twice is fine


async def test_ensure_is_idempotent_and_a_restarted_agent_reads_the_attachment_back(test_net: PrivateNet) -> None:
    network = test_net.network
    first = await network.ensure("web")
    assert await network.ensure("web") == first
    assert list((await network.ipam_holders()).values()) == ["web"]

    restarted = Network(test_net.config)
    assert await restarted.attachment("web") == first
    assert await restarted.list_attached() == ["web"]
    assert await restarted.attach("web", first.netns) == first


async def test_changed_port_mappings_reattach_with_the_new_ports(test_net: PrivateNet) -> None:
    network = test_net.network
    await network.ensure("p", [PortMapping(host_port=_free_port(), container_port=80)])
    port = _free_port()
    again = await network.ensure("p", [PortMapping(host_port=port, container_port=80)])
    assert again.port_mappings == (PortMapping(host_port=port, container_port=80),)
    assert list((await network.ipam_holders()).values()) == ["p"]
    _, rules = await run("iptables-save", "-t", "nat")
    assert f"--dport {port}" in rules


async def test_remove_after_the_namespace_vanished_releases_the_ip_and_the_masquerade_chain(
    test_net: PrivateNet,
) -> None:
    network = test_net.network
    await network.ensure("gone", [PortMapping(host_port=_free_port(), container_port=80)])
    _, before = await run("iptables-save", "-t", "nat")
    assert chain_name(test_net.config.name, "gone") in before

    await netns.delete(network.netns_path("gone").name)
    await network.remove("gone")
    assert await network.ipam_holders() == {}
    assert await iptables_mentions(test_net, "gone") == []


async def test_an_interrupted_attach_is_undone_by_the_next_ensure(test_net: PrivateNet) -> None:
    network = test_net.network
    done = await network.ensure("crash")
    # What a crash right after the intent was written and ADD ran looks like: a record without a result.
    record_path = test_net.config.state_dir / "crash.json"
    record = json.loads(record_path.read_text())
    record["result"] = None
    record_path.write_text(json.dumps(record))
    assert await network.attachment("crash") is None

    again = await network.ensure("crash")
    assert again.netns == done.netns
    assert list((await network.ipam_holders()).values()) == ["crash"]


async def test_detach_and_remove_of_unknown_or_detached_ids_are_fine(test_net: PrivateNet) -> None:
    network = test_net.network
    await network.detach("never-attached")
    await network.remove("never-attached")
    path = await netns.create(network.netns_path("own").name)
    att = await network.attach("own", str(path))
    assert att.netns == str(path)
    await network.detach("own", str(path))
    await network.detach("own", str(path))
    assert await network.attachment("own") is None and await network.ipam_holders() == {}
    assert await netns.exists(path.name)  # detach leaves a namespace it did not create
