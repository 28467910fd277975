"""The service proxy's rules as text (pure), and that the kernel takes them (loaded in a throwaway network namespace)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from corral.controllers.endpoints import desired_endpoints
from corral.model.resources import (
    Container,
    ContainerPort,
    ContainerSpec,
    ContainerStatus,
    EndpointAddress,
    EndpointPort,
    Endpoints,
    EndpointsSpec,
    ObjectMeta,
    Service,
    ServicePort,
    ServiceSpec,
)
from corral.network.nftables import render_table
from corral.network.services import render_services


def svc(name: str, ip: str, **spec: object) -> Service:
    ports = spec.pop("ports", [ServicePort(port=80, target_port=8080)])
    return Service(metadata=ObjectMeta(name=name, namespace="default"),
                   spec=ServiceSpec(selector={"app": name}, cluster_ip=ip, ports=ports, **spec))  # type: ignore[arg-type]


def eps(name: str, *ips: str, port: int = 8080) -> Endpoints:
    return Endpoints(metadata=ObjectMeta(name=name, namespace="default"),
                     spec=EndpointsSpec(addresses=[EndpointAddress(ip=ip, ports=[EndpointPort(port=port)]) for ip in ips]))


def test_each_cluster_ip_port_spreads_over_its_ready_endpoints_with_numgen() -> None:
    text = render_services([svc("web", "10.43.0.10")], {("default", "web"): eps("web", "10.88.0.6", "10.88.0.5")}).text
    assert "10.43.0.10 . tcp . 80 : goto svc_pick_2" in text
    assert "th dport . numgen random mod 2 map @svc_backends" in text
    assert "10.43.0.10 . tcp . 80 . 0 : 10.88.0.5 . 8080, 10.43.0.10 . tcp . 80 . 1 : 10.88.0.6 . 8080" in text
    assert "elements = { 10.88.0.5 . 10.88.0.5, 10.88.0.6 . 10.88.0.6 }" in text  # hairpin pairs, masqueraded
    elsewhere = render_services([svc("web", "10.43.0.10")], {("default", "web"): eps("web", "10.88.0.5")},
                                node="other-node").text
    assert "10.88.0.5 . 10.88.0.5" not in elsewhere  # a container reaches itself only through its own node


def test_a_service_without_ready_endpoints_is_rejected_not_dnatted() -> None:
    text = render_services([svc("web", "10.43.0.10", type="NodePort",
                                ports=[ServicePort(port=80, node_port=30080)])], {}).text
    assert "elements = { 10.43.0.10 . tcp . 80 }" in text
    assert "elements = { tcp . 30080 }" in text
    assert "dnat ip to" not in text


def test_headless_services_get_no_rules_and_affinity_gets_a_set_per_endpoint() -> None:
    text = render_services([svc("hl", "None"), svc("aff", "10.43.0.11", session_affinity="ClientIP")],
                           {("default", "hl"): eps("hl", "10.88.0.5"), ("default", "aff"): eps("aff", "10.88.0.7")}).text
    assert "10.88.0.5" not in text
    assert "flags dynamic,timeout" in text and "update @svc_a_" in text and "ip saddr @svc_a_" in text


def test_the_same_state_renders_the_same_text() -> None:
    services = [svc(f"s{i}", f"10.43.1.{i}") for i in range(1, 20)]
    endpoints = {("default", f"s{i}"): eps(f"s{i}", "10.88.0.5", "10.88.0.6") for i in range(1, 20)}
    assert render_services(services, endpoints) == render_services(list(reversed(services)), endpoints)


async def test_the_kernel_loads_the_rendered_table() -> None:
    part = render_services([svc("web", "10.43.0.10", type="NodePort", session_affinity="ClientIP",
                                ports=[ServicePort(port=80, target_port=8080, node_port=30080),
                                       ServicePort(port=53, name="dns", protocol="UDP")]),
                            svc("none", "10.43.0.11")],
                           {("default", "web"): eps("web", "10.88.0.5", "10.88.0.6")})
    script = render_table("inet", "svc_render_check", [part])
    proc = await asyncio.create_subprocess_exec("unshare", "-n", "nft", "-f", "-", stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate(script.encode())
    assert proc.returncode == 0, out.decode() + script


def _container(name: str, ip: str, *, ready: bool = True, deleting: bool = False, phase: str = "Running") -> Container:
    return Container(metadata=ObjectMeta(name=name, namespace="default", uid=name, labels={"app": "web"},
                                         deletion_timestamp="2026-01-01T00:00:00Z" if deleting else ""),
                     spec=ContainerSpec(image="x", ports=[ContainerPort(container_port=8080, name="http")]),
                     status=ContainerStatus(phase=phase, ip=ip, ready=ready, node="n1"))  # type: ignore[arg-type]


def test_endpoints_split_ready_from_not_ready_and_resolve_named_ports() -> None:
    service = svc("web", "10.43.0.10", ports=[ServicePort(port=80, target_port="http", name="web"),
                                              ServicePort(port=81, target_port="missing", name="other")])
    spec = desired_endpoints(service, [
        _container("a", "10.88.0.5"),
        _container("b", "10.88.0.6", ready=False),
        _container("c", "10.88.0.7", deleting=True),  # terminating: out of the ready set at once
        _container("d", "", ready=False),  # no IP yet: nowhere to send traffic
        _container("e", "10.88.0.8", phase="Succeeded"),
    ])
    assert [a.ip for a in spec.addresses] == ["10.88.0.5"]
    assert [a.ip for a in spec.not_ready_addresses] == ["10.88.0.6", "10.88.0.7"]
    assert spec.addresses[0].ports == [EndpointPort(port=8080, name="web")]


def test_an_endpoint_change_is_a_delta_of_elements_and_a_new_chain_is_not() -> None:
    from corral.network.services import rules_delta, service_rules

    old = service_rules([svc("web", "10.43.0.10")], {("default", "web"): eps("web", "10.88.0.5", "10.88.0.6")})
    moved = service_rules([svc("web", "10.43.0.10")], {("default", "web"): eps("web", "10.88.0.5", "10.88.0.7")})
    delta = rules_delta(old, moved)
    assert delta is not None
    assert delta["svc_backends"] == (["10.43.0.10 . tcp . 80 . 1"], ["10.43.0.10 . tcp . 80 . 1 : 10.88.0.7 . 8080"])
    assert rules_delta(old, old) == {}
    three = service_rules([svc("web", "10.43.0.10")],
                          {("default", "web"): eps("web", "10.88.0.5", "10.88.0.6", "10.88.0.7")})
    assert rules_delta(old, three) is None  # svc_pick_3 is a new chain


async def test_a_delta_loaded_over_the_old_table_gives_the_new_elements(tmp_path: Path) -> None:
    from corral.network.services import rules_delta, service_rules

    old = service_rules([svc("web", "10.43.0.10"), svc("db", "10.43.0.11")],
                        {("default", "web"): eps("web", "10.88.0.5", "10.88.0.6")})
    new = service_rules([svc("web", "10.43.0.10"), svc("db", "10.43.0.11")],
                        {("default", "web"): eps("web", "10.88.0.5", "10.88.0.9"),
                         ("default", "db"): eps("db", "10.88.0.8", "10.88.0.2")})
    changes = rules_delta(old, new)
    assert changes
    delta = "".join(f"delete element inet svc_delta_check {name} {{ {', '.join(gone)} }}\n" for name, (gone, _) in
                    changes.items() if gone)
    delta += "".join(f"add element inet svc_delta_check {name} {{ {', '.join(added)} }}\n" for name, (_, added) in
                     changes.items() if added)
    (tmp_path / "old.nft").write_text(render_table("inet", "svc_delta_check", [old.part()]))
    (tmp_path / "delta.nft").write_text(delta)
    proc = await asyncio.create_subprocess_exec(
        "unshare", "-n", "sh", "-c", f"nft -f {tmp_path}/old.nft && nft -f {tmp_path}/delta.nft && "
                                     "nft list table inet svc_delta_check",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 0, text + delta
    assert "10.88.0.9 . 8080" in text and "10.88.0.6 . 8080" not in text
    assert "10.43.0.11 . tcp . 80 : goto svc_pick_2" in text and "10.43.0.11 . tcp . 80 }" not in text
