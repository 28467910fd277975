"""TLS on the API and node identities: HTTPS only, the CA pinned by clients, node certificates
from /join, mutual TLS, and what NodeRestriction lets a node's certificate do."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from corral.api.auth import Identity
from corral.api.client import ApiClient, UntrustedServer
from corral.api.noderestriction import EventAdmission
from corral.model.errors import Forbidden
from corral.model.resources import Container, Event, EventSource, EventSpec, ObjectMeta, ObjectReference
from corral.tls import pki
from corral.tls.contexts import client_context, server_context
from tests.api.conftest import Api
from tests.api.test_contract import call, container, unique


@dataclass
class NodeCert:
    name: str
    http: aiohttp.ClientSession  # presents the node's certificate, no token

    async def call(self, api: Api, method: str, path: str, body: Any = None,
                   params: dict[str, str] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        async with self.http.request(method, api.url + path, data=data, params=params) as r:
            text = await r.read()
            try:
                return r.status, json.loads(text)
            except ValueError:
                return r.status, text.decode()


async def join(api: Api, tmp: Path, name: str, *, ip: str = "127.0.0.1", token: str | None = None) -> tuple[int, Any, Path]:
    key = pki.new_key()
    csr = pki.make_csr(key, pki.NODE_PREFIX + name)
    token = token or await api.server.tokens.issue(Identity("join"))
    status, body = await call(api, "POST", "/join", {"node": name, "csr": csr.decode(), "nodeIP": ip}, token=token)
    d = tmp / name
    if status == 201:
        pki.write_private(d / "node.key", pki.key_pem(key))
        pki.write_private(d / "node.crt", body["certificate"].encode())
    return status, body, d


@pytest.fixture
async def node(api: Api, tmp_path: Path) -> Any:
    name = unique("n")
    status, body, d = await join(api, tmp_path, name)
    assert status == 201, body
    ctx = client_context(api.authority.cert_pem, cert_file=d / "node.crt", key_file=d / "node.key")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http:
        yield NodeCert(name, http)


async def test_a_plain_http_request_to_the_api_fails(api: Api) -> None:
    plain = api.url.replace("https://", "http://")
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientError):
            async with http.get(plain + "/healthz", timeout=aiohttp.ClientTimeout(total=5)) as r:
                await r.read()


async def test_a_client_with_the_wrong_ca_fails_naming_the_server_and_where_its_ca_came_from(api: Api) -> None:
    other = pki.Authority.generate("someone-else")
    async with ApiClient(api.url, api.token, ssl_context=client_context(other.cert_pem),
                         trust_source="/home/me/.config/corral/config.json") as client:
        with pytest.raises(UntrustedServer) as e:
            await client.list(Container)
    message = str(e.value)
    assert api.url in message and "not signed by the cluster CA" in message
    assert "/home/me/.config/corral/config.json" in message


async def test_the_ca_is_served_without_a_token(api: Api) -> None:
    async with api.http.get(api.url + "/cacerts") as r:
        assert r.status == 200 and await r.read() == api.authority.cert_pem


async def test_a_node_certificate_from_join_names_the_node_and_authenticates_without_a_token(api: Api, node: NodeCert) -> None:
    mine = unique()
    await call(api, "POST", "/namespaces/default/containers", container(mine, node=node.name))
    status, body = await node.call(api, "GET", "/containers", params={"fieldSelector": f"spec.node={node.name}"})
    assert status == 200 and [i["metadata"]["name"] for i in body["items"]] == [mine]
    status, body = await node.call(api, "POST", "/namespaces/default/containers", container(unique()))
    assert status == 403 and f"node:{node.name}" in body["error"]["message"]


async def test_a_certificate_from_another_ca_does_not_get_past_the_handshake(api: Api, tmp_path: Path) -> None:
    other = pki.Authority.generate("impostor")
    cert, key = other.issue_pair(cn="node:impostor", client=True)
    pki.write_private(tmp_path / "c.crt", cert)
    pki.write_private(tmp_path / "c.key", key)
    ctx = client_context(api.authority.cert_pem, cert_file=tmp_path / "c.crt", key_file=tmp_path / "c.key")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http:
        with pytest.raises(aiohttp.ClientError):
            async with http.get(api.url + "/nodes", timeout=aiohttp.ClientTimeout(total=5)) as r:
                await r.read()


async def test_joining_under_an_existing_nodes_name_is_refused_but_that_node_may_renew(api: Api, node: NodeCert,
                                                                                   tmp_path: Path) -> None:
    status, body = await node.call(api, "POST", "/nodes", {"metadata": {"name": node.name}})
    assert status == 201, body
    status, body, _ = await join(api, tmp_path, node.name)
    assert status == 403 and "already exists" in body["error"]["message"]
    key = pki.new_key()  # the node itself (its certificate, no token) gets a new certificate
    csr = pki.make_csr(key, pki.NODE_PREFIX + node.name)
    status, body = await node.call(api, "POST", "/join", {"node": node.name, "csr": csr.decode(), "nodeIP": "127.0.0.1"})
    assert status == 201 and "BEGIN CERTIFICATE" in body["certificate"]
    other = pki.make_csr(key, pki.NODE_PREFIX + "someone-else")
    status, _ = await node.call(api, "POST", "/join", {"node": "someone-else", "csr": other.decode()})
    assert status == 403


async def test_a_csr_for_another_name_than_the_one_asked_for_is_refused(api: Api) -> None:
    key = pki.new_key()
    token = await api.server.tokens.issue(Identity("join"))
    csr = pki.make_csr(key, "node:victim")
    status, body = await call(api, "POST", "/join", {"node": unique("n"), "csr": csr.decode()}, token=token)
    assert status == 422 and "node:victim" in body["error"]["message"]


async def test_a_node_cannot_change_its_taints_unschedulable_podcidr_or_foreign_labels(api: Api, node: NodeCert) -> None:
    status, obj = await node.call(api, "POST", "/nodes", {"metadata": {"name": node.name, "labels": {"disk": "ssd"}},
                                                          "spec": {"podCidr": "10.42.7.0/24"}})
    assert status == 201, obj
    for field, change in (("spec.taints", {"taints": [{"key": "x", "effect": "NoSchedule"}]}),
                          ("spec.unschedulable", {"unschedulable": True}),
                          ("spec.podCidr", {"podCidr": "10.42.8.0/24"})):
        status, body = await node.call(api, "PUT", f"/nodes/{node.name}", {**obj, "spec": {**obj["spec"], **change}})
        assert status == 403 and body["error"]["details"][0]["field"] == field, body
    status, body = await node.call(api, "PUT", f"/nodes/{node.name}",
                                   {**obj, "metadata": {**obj["metadata"], "labels": {"disk": "hdd"}}})
    assert status == 403 and "disk" in body["error"]["message"]
    labels = {"disk": "ssd", "node.corral.io/zone": "a"}
    status, body = await node.call(api, "PUT", f"/nodes/{node.name}", {**obj, "metadata": {**obj["metadata"], "labels": labels}})
    assert status == 200 and body["metadata"]["labels"] == labels
    status, body = await node.call(api, "POST", "/nodes", {"metadata": {"name": unique("n")}})
    assert status == 403


async def test_a_node_cannot_register_with_labels_reserved_for_admins(api: Api, node: NodeCert) -> None:
    status, body = await node.call(api, "POST", "/nodes", {"metadata": {"name": node.name,
                                                                        "labels": {"node-restriction.corral.io/pci": "yes"}}})
    assert status == 403 and "reserved" in body["error"]["message"]


async def test_a_node_cannot_point_its_agent_endpoint_anywhere_but_its_internal_ip(api: Api, node: NodeCert) -> None:
    status, obj = await node.call(api, "POST", "/nodes", {"metadata": {"name": node.name}})
    assert status == 201
    addresses = [{"type": "InternalIP", "address": "127.0.0.1"}]
    for bad in ("https://169.254.169.254:80", "http://127.0.0.1:8080", "https://127.0.0.1:1/x?y", "https://evil.example:443"):
        status, body = await node.call(api, "PUT", f"/nodes/{node.name}/status",
                                       {**obj, "status": {"addresses": addresses, "agentEndpoint": bad}})
        assert status == 403 and body["error"]["details"][0]["field"] == "status.agentEndpoint", (bad, body)
    status, body = await node.call(api, "PUT", f"/nodes/{node.name}/status",
                                   {**obj, "status": {"addresses": addresses, "agentEndpoint": "https://127.0.0.1:10250"}})
    assert status == 200 and body["status"]["agentEndpoint"] == "https://127.0.0.1:10250"


async def test_a_node_cannot_read_or_touch_another_nodes_containers(api: Api, node: NodeCert) -> None:
    theirs = unique()
    status, obj = await call(api, "POST", "/namespaces/default/containers", container(theirs, node=unique("n")))
    assert status == 201
    status, _ = await node.call(api, "GET", f"/namespaces/default/containers/{theirs}")
    assert status == 403
    # (listing every container is allowed: a node's network policy enforcer needs its peers' labels)
    status, _ = await node.call(api, "PUT", f"/namespaces/default/containers/{theirs}/status",
                                   {**obj, "status": {"phase": "Failed"}})
    assert status == 403


async def test_a_node_only_drops_its_finalizer_from_its_containers(api: Api, node: NodeCert) -> None:
    mine = unique()
    status, obj = await call(api, "POST", "/namespaces/default/containers", container(mine, node=node.name))
    assert status == 201 and "corral.io/agent" in obj["metadata"]["finalizers"]
    relabelled = {**obj, "metadata": {**obj["metadata"], "labels": {"app": "hijacked"}}}
    status, body = await node.call(api, "PUT", f"/namespaces/default/containers/{mine}", relabelled)
    assert status == 403
    released = {**obj, "metadata": {**obj["metadata"], "finalizers": []}}
    status, body = await node.call(api, "PUT", f"/namespaces/default/containers/{mine}", released)
    assert status == 200 and not body["metadata"].get("finalizers")


def event(name: str, *, node: str, kind: str, about: str, message: str = "hi") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"involvedObject": {"kind": kind, "namespace": "default", "name": about},
                     "reason": "Test", "message": message, "source": {"component": "agent", "node": node}}}


async def test_a_node_writes_small_events_about_what_is_bound_to_it_only(api: Api, node: NodeCert) -> None:
    mine, theirs = unique(), unique()
    await call(api, "POST", "/namespaces/default/containers", container(mine, node=node.name))
    await call(api, "POST", "/namespaces/default/containers", container(theirs, node=unique("n")))
    await api.server.caches["Container"].wait_ready()
    ok = event(unique("e"), node=node.name, kind="Container", about=mine)
    for _ in range(50):  # the cache sees the container a moment after its create
        status, body = await node.call(api, "POST", "/namespaces/default/events", ok)
        if status == 201:
            break
    assert status == 201, body
    cases = [event(unique("e"), node=node.name, kind="Container", about=theirs),
             event(unique("e"), node="someone-else", kind="Container", about=mine),
             event(unique("e"), node=node.name, kind="Node", about="someone-else"),
             event(unique("e"), node=node.name, kind="Container", about=mine, message="x" * 1025)]
    for bad in cases:
        status, body = await node.call(api, "POST", "/namespaces/default/events", bad)
        assert status == 403, (bad, body)


def test_a_node_that_floods_events_is_slowed_down_by_its_own_token_bucket() -> None:
    now = [0.0]
    admission = EventAdmission(lambda ns, name: None, rate=20, burst=100, clock=lambda: now[0])
    flood = Event(metadata=ObjectMeta(name="e", namespace="default"),
                  spec=EventSpec(involved_object=ObjectReference(kind="Node", name="n1"),
                                 source=EventSource(node="n1")))
    for _ in range(100):
        admission.admit(Identity("node", "n1"), flood)
    with pytest.raises(Forbidden, match="faster than 20/s"):
        admission.admit(Identity("node", "n1"), flood)
    other = msgspec.structs.replace(flood, spec=msgspec.structs.replace(
        flood.spec, involved_object=ObjectReference(kind="Node", name="n2"), source=EventSource(node="n2")))
    admission.admit(Identity("node", "n2"), other)  # each node has its own bucket
    now[0] += 0.5  # half a second refills 10
    for _ in range(10):
        admission.admit(Identity("node", "n1"), flood)
    with pytest.raises(Forbidden):
        admission.admit(Identity("node", "n1"), flood)


async def test_a_server_context_without_the_ca_cannot_ask_for_client_certificates(tmp_path: Path) -> None:
    ca = pki.Authority.generate()
    cert, key = ca.issue_pair(cn="x", server=True, ips=("127.0.0.1",))
    pki.write_private(tmp_path / "s.crt", cert)
    pki.write_private(tmp_path / "s.key", key)
    with pytest.raises(ValueError):
        server_context(tmp_path / "s.crt", tmp_path / "s.key", client_certs="required")


async def test_a_node_sets_its_zone_label(api: Api, node: NodeCert) -> None:
    status, obj = await node.call(api, "POST", "/nodes", {"metadata": {"name": node.name,
                                                                       "labels": {"topology.corral.io/zone": "a"}}})
    assert status == 201, obj
    meta = {**obj["metadata"], "labels": {"topology.corral.io/zone": "b"}}
    status, obj = await node.call(api, "PUT", f"/nodes/{node.name}", {**obj, "metadata": meta})
    assert status == 200 and obj["metadata"]["labels"] == {"topology.corral.io/zone": "b"}, obj


async def test_a_node_writes_annotations_under_node_corral_io_on_its_node_only(api: Api, node: NodeCert) -> None:
    """The agent publishes its VXLAN MAC as ``node.corral.io/vxlan-mac``; other annotations stay the admins'."""
    status, obj = await node.call(api, "POST", "/nodes", {"metadata": {"name": node.name}})
    assert status == 201, obj
    mine = {"node.corral.io/vxlan-mac": "0a:00:00:00:00:01"}
    status, body = await node.call(api, "PUT", f"/nodes/{node.name}",
                                   {**obj, "metadata": {**obj["metadata"], "annotations": mine}})
    assert status == 200 and body["metadata"]["annotations"] == mine, body
    status, body = await node.call(api, "PUT", f"/nodes/{node.name}",
                                   {**body, "metadata": {**body["metadata"], "annotations": {**mine, "owner": "me"}}})
    assert status == 403 and body["error"]["details"][0]["field"] == "metadata.annotations.owner", body
