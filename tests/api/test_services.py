"""Services through the API: validation naming every bad field, cluster IPs and node ports allocated in etcd."""

from __future__ import annotations

import ipaddress
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

from corral.model.cluster import CLUSTER_CONFIG_KEY, ClusterConfig
from corral.model.errors import Invalid
from corral.model.resources import ObjectMeta, Service, ServicePort, ServiceSpec
from corral.store.allocation import ServiceAllocator
from corral.store.embedded import EmbeddedEtcd
from corral.store.etcd import EtcdStore
from tests.api.conftest import Api
from tests.api.test_contract import call

S = "/namespaces/default/services"


def service(name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}], **spec}}


def unique(prefix: str = "svc") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def fields(body: Any) -> set[str]:
    return {d["field"] for d in body["error"]["details"]}


async def test_a_service_gets_a_cluster_ip_from_the_service_cidr(api: Api) -> None:
    status, body = await call(api, "POST", S, service(unique()))
    assert status == 201, body
    assert ipaddress.IPv4Address(body["spec"]["clusterIP"]) in ipaddress.IPv4Network("10.43.0.0/16")


async def test_an_invalid_service_is_refused_naming_every_bad_field(api: Api) -> None:
    bad = {"metadata": {"name": unique()}, "spec": {
        "selector": {}, "clusterIP": "10.99.0.1",
        "ports": [{"name": "web", "port": 0, "targetPort": 70000, "nodePort": 30001},
                  {"name": "web", "port": 81, "targetPort": "Not_A_Name"}]}}
    status, body = await call(api, "POST", S, bad)
    assert status == 422, body
    assert {"spec.selector", "spec.ports[0].port", "spec.ports[0].targetPort", "spec.ports[0].nodePort",
            "spec.ports[1].name", "spec.ports[1].targetPort"} <= fields(body)


async def test_a_cluster_ip_outside_the_service_cidr_is_refused(api: Api) -> None:
    status, body = await call(api, "POST", S, service(unique(), clusterIP="10.99.0.1"))
    assert status == 422 and fields(body) == {"spec.clusterIP"}, body


async def test_a_node_port_outside_the_range_is_refused(api: Api) -> None:
    status, body = await call(api, "POST", S, service(unique(), type="NodePort", ports=[{"port": 80, "nodePort": 80}]))
    assert status == 422 and fields(body) == {"spec.ports[0].nodePort"}, body


async def test_two_services_never_share_a_cluster_ip_or_node_port_and_delete_gives_them_back(api: Api) -> None:
    a, b = unique(), unique()
    status, first = await call(api, "POST", S, service(a, type="NodePort"))
    assert status == 201, first
    ip, port = first["spec"]["clusterIP"], first["spec"]["ports"][0]["nodePort"]
    assert 30000 <= port <= 32767
    status, body = await call(api, "POST", S, service(b, clusterIP=ip))
    assert status == 422 and fields(body) == {"spec.clusterIP"}, body
    status, body = await call(api, "POST", S, service(b, type="NodePort", ports=[{"port": 80, "nodePort": port}]))
    assert status == 422 and fields(body) == {"spec.ports[0].nodePort"}, body
    status, _ = await call(api, "DELETE", f"{S}/{a}")
    assert status == 200
    status, body = await call(api, "POST", S, service(b, clusterIP=ip, type="NodePort",
                                                      ports=[{"port": 80, "nodePort": port}]))
    assert status == 201, body
    assert body["spec"]["clusterIP"] == ip and body["spec"]["ports"][0]["nodePort"] == port


async def test_the_cluster_ip_is_immutable_and_node_ports_are_kept_on_update(api: Api) -> None:
    name = unique()
    status, created = await call(api, "POST", S, service(name, type="NodePort"))
    assert status == 201
    changed = {**created, "spec": {**created["spec"], "clusterIP": "10.43.250.250"}}
    status, body = await call(api, "PUT", f"{S}/{name}", changed)
    assert status == 422 and fields(body) == {"spec.clusterIP"}, body
    again = {**created, "spec": {**created["spec"], "clusterIP": "", "ports": [{"port": 80}, ]}}
    status, body = await call(api, "PUT", f"{S}/{name}", again)
    assert status == 200, body
    assert body["spec"]["clusterIP"] == created["spec"]["clusterIP"]
    assert body["spec"]["ports"][0]["nodePort"] == created["spec"]["ports"][0]["nodePort"]


async def test_a_headless_service_gets_no_cluster_ip(api: Api) -> None:
    status, body = await call(api, "POST", S, service(unique(), clusterIP="None"))
    assert status == 201 and body["spec"]["clusterIP"] == "None", body


async def test_a_full_service_cidr_is_a_clear_422(tmp_path: Path) -> None:
    etcd = EmbeddedEtcd(data_dir=tmp_path / "etcd")
    await etcd.start()
    store = EtcdStore([etcd.endpoint])
    try:
        await store.create(CLUSTER_CONFIG_KEY, msgspec.json.encode(ClusterConfig(service_cidr="10.43.7.0/30")))
        allocator = ServiceAllocator(store)
        got = []
        for i in range(2):  # a /30 has two usable addresses
            svc = Service(metadata=ObjectMeta(name=f"s{i}", namespace="default", uid=f"u{i}"),
                          spec=ServiceSpec(selector={"a": "b"}, ports=[ServicePort(port=80)]))
            finish = await allocator.before_create(svc)
            await finish(True)
            got.append(svc.spec.cluster_ip)
        assert sorted(got) == ["10.43.7.1", "10.43.7.2"]
        third = Service(metadata=ObjectMeta(name="s3", namespace="default", uid="u3"),
                        spec=ServiceSpec(selector={"a": "b"}, ports=[ServicePort(port=80)]))
        with pytest.raises(Invalid) as e:
            await allocator.before_create(third)
        assert e.value.details[0].field == "spec.clusterIP" and "full" in e.value.details[0].message
    finally:
        await store.close()
        await etcd.stop()
