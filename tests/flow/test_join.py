"""A worker's trust, end to end: the K10 join token pins the CA, the node certificate it earns,
and an agent listener that only the API may call."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import stat
import time
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from corral.api.client import ApiClient, UntrustedServer
from corral.cli.connection import client_for, resolve
from corral.model import errors
from corral.model.resources import Container, ContainerSpec, Event, Node, ObjectMeta
from corral.roles.nodetls import node_credentials, node_credentials_in_child
from corral.tls import pki
from corral.tls.contexts import client_context
from corral.tls.tokens import JoinToken
from tests.fixtures.cluster import Cluster, eventually, start_cluster
from tests.fixtures.control import RunningControl
from tests.fixtures.registry import Registry
from tests.flow.test_nodes import Proxy


async def test_a_worker_whose_token_pins_another_ca_refuses_and_names_both_hashes(control_plane: RunningControl,
                                                                                   tmp_path: Path) -> None:
    real = JoinToken.parse(control_plane.join_token)
    wrong = JoinToken("0" * 64, real.secret)
    with pytest.raises(errors.Unauthorized) as e:
        await node_credentials(servers=[control_plane.url], data_dir=tmp_path, node="pinned-wrong",
                               node_ip="127.0.0.1", join_token=str(wrong))
    assert real.ca_hash in str(e.value) and wrong.ca_hash in str(e.value)
    assert not (tmp_path / "tls").exists()  # nothing was kept, nothing was sent


async def test_a_worker_refuses_a_join_token_without_the_ca_hash(control_plane: RunningControl, tmp_path: Path) -> None:
    with pytest.raises(errors.Unauthorized, match="K10"):
        await node_credentials(servers=[control_plane.url], data_dir=tmp_path, node="bare", node_ip="127.0.0.1",
                               join_token=JoinToken.parse(control_plane.join_token).secret)


async def test_a_worker_joins_once_keeps_its_key_private_and_reuses_its_certificate(control_plane: RunningControl,
                                                                                     tmp_path: Path) -> None:
    assert pki.ca_hash(control_plane.plane.ca_pem) == JoinToken.parse(control_plane.join_token).ca_hash
    creds = await node_credentials(servers=[control_plane.url], data_dir=tmp_path, node="joiner",
                                   node_ip="127.0.0.1", join_token=control_plane.join_token)
    assert creds.ca_pem == control_plane.plane.ca_pem
    assert stat.S_IMODE(os.stat(creds.key_file).st_mode) == 0o600
    cert = pki.load_cert(creds.cert_file.read_bytes())
    assert pki.common_name(cert) == "node:joiner" and pki.ip_sans(cert) == ["127.0.0.1"]
    first = creds.cert_file.read_bytes()
    again = await node_credentials(servers=[control_plane.url], data_dir=tmp_path, node="joiner",
                                   node_ip="127.0.0.1", join_token="")
    assert again.cert_file.read_bytes() == first  # valid for long enough: kept, no token needed
    moved = await node_credentials(servers=[control_plane.url], data_dir=tmp_path, node="joiner",
                                   node_ip="127.0.0.2", join_token="")  # a new node IP: renewed by the node itself
    assert pki.ip_sans(pki.load_cert(moved.cert_file.read_bytes())) == ["127.0.0.2"]


async def test_a_worker_prepares_its_credentials_in_a_child_process_with_the_same_result_and_errors(
        control_plane: RunningControl, tmp_path: Path) -> None:
    creds = await node_credentials_in_child(servers=[control_plane.url], data_dir=tmp_path, node="child-joiner",
                                            node_ip="127.0.0.1", join_token=control_plane.join_token, in_child=True)
    assert creds.ca_pem == control_plane.plane.ca_pem
    assert pki.common_name(pki.load_cert(creds.cert_file.read_bytes())) == "node:child-joiner"
    assert stat.S_IMODE(os.stat(creds.key_file).st_mode) == 0o600
    year = pki.LEAF_DAYS * 86400  # the child says when to renew it: with a third of its validity left
    assert abs(creds.expires_at - (time.time() + year)) < 120 and abs(creds.expires_at - creds.renew_at - year / 3) < 600
    async with ApiClient([control_plane.url], ssl_context=creds.api_context()) as api:  # they authenticate the node
        with pytest.raises(errors.NotFound):  # not Unauthorized: the node may read its Node, not yet registered
            await api.get(Node, "child-joiner")
    with pytest.raises(errors.Unauthorized, match="no --join-token"):
        await node_credentials_in_child(servers=[control_plane.url], data_dir=tmp_path / "bare", node="bare",
                                        node_ip="127.0.0.1", join_token="", in_child=True)


async def test_the_cli_with_a_config_whose_ca_is_wrong_says_so_and_where_the_config_is(control_plane: RunningControl,
                                                                                       tmp_path: Path) -> None:
    wrong = tmp_path / "other-ca.crt"
    wrong.write_bytes(pki.Authority.generate("other").cert_pem)
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"server": control_plane.url, "token": control_plane.admin_token, "caFile": str(wrong)}))
    conn = resolve(None, None, env={}, config_paths=[cfg])
    async with client_for(conn) as client:
        with pytest.raises(UntrustedServer) as e:
            await client.list(Container)
    assert control_plane.url in str(e.value) and str(cfg) in str(e.value) and str(wrong) in str(e.value)


async def test_the_agent_listener_serves_tls_and_admits_only_the_api(cluster: Cluster) -> None:
    node = await cluster.api.get(Node, cluster.worker.name)
    endpoint = node.status.agent_endpoint
    assert endpoint.startswith("https://127.0.0.1:")
    tls = cluster.worker.agent_dir / "tls"
    url = f"{endpoint}/logs/default/anything"
    no_cert = client_context(cluster.plane.ca_pem)
    own_cert = client_context(cluster.plane.ca_pem, cert_file=tls / "node.crt", key_file=tls / "node.key")
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientError):  # no client certificate: no handshake
            async with http.get(url, ssl=no_cert, server_hostname=pki.node_dns_name(cluster.worker.name)) as r:
                await r.read()
        async with http.get(url, ssl=own_cert, server_hostname=pki.node_dns_name(cluster.worker.name)) as r:
            body = await r.json()
            assert r.status == 403 and "only the API" in body["error"]["message"]
        with pytest.raises(aiohttp.ClientError):  # plain HTTP
            async with http.get(url.replace("https://", "http://")) as r:
                await r.read()


def node_certificate(ca: pki.Authority, key: ec.EllipticCurvePrivateKey, node: str, *,
                     valid: tuple[datetime.datetime, datetime.datetime]) -> x509.Certificate:
    """A node certificate as the API's join issues it (CN, usages, the node's DNS name and 127.0.0.1),
    valid for the times given."""
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, pki.NODE_PREFIX + node)]))
            .issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(valid[0]).not_valid_after(valid[1])
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(pki.node_dns_name(node)),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca.key, hashes.SHA256()))


async def test_a_node_certificate_with_less_than_a_third_of_its_life_left_is_renewed_by_the_node_itself(
        control_plane: RunningControl, tmp_path: Path) -> None:
    ca = control_plane.plane.tls.authority
    key = pki.new_key()
    now = datetime.datetime.now(datetime.UTC)
    ageing = node_certificate(ca, key, "renewer", valid=(now - datetime.timedelta(days=300),
                                                         now + datetime.timedelta(days=10)))
    tls = tmp_path / "tls"
    pki.write_private(tls / "ca.crt", ca.cert_pem)
    pki.write_private(tls / "node.key", pki.key_pem(key))
    pki.write_private(tls / "node.crt", pki.cert_pem(ageing))
    creds = await node_credentials(servers=[control_plane.url], data_dir=tmp_path, node="renewer",
                                   node_ip="127.0.0.1", join_token="")  # no token: the old certificate is the proof
    renewed = pki.load_cert(creds.cert_file.read_bytes())
    assert pki.remaining_fraction(renewed) > 0.99 and pki.common_name(renewed) == "node:renewer"
    assert renewed.public_key() != key.public_key()  # a new key too


async def test_a_running_agent_renews_its_certificate_and_its_new_connections_present_the_new_one(
        tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> None:
    """A certificate of 18 s: kept when the agent starts (most of it left), renewed by the running
    agent 12 s in, loaded into its listener and its API client; once the old one has expired, every
    connection to the API is cut and the node goes on working over new ones."""
    proxies: list[Proxy] = []

    async def server_for(_name: str, url: str) -> str:
        proxy = Proxy(url)
        await proxy.heal()
        proxies.append(proxy)
        return proxy.url

    try:
        async with start_cluster(tmp_path_factory.mktemp("renewal"), registry, server_for=server_for) as c:
            worker = c.worker
            await worker.stop()
            tls = worker.agent_dir / "tls"
            key = pki.new_key()
            now = datetime.datetime.now(datetime.UTC)
            short = node_certificate(c.plane.tls.authority, key, worker.name,
                                     valid=(now - datetime.timedelta(seconds=2), now + datetime.timedelta(seconds=16)))
            pki.write_private(tls / "node.key", pki.key_pem(key))
            pki.write_private(tls / "node.crt", pki.cert_pem(short))
            await worker.start()
            await c.wait_node_ready(worker)

            async def renewed() -> x509.Certificate:
                cert = pki.load_cert((tls / "node.crt").read_bytes())
                assert cert.serial_number != short.serial_number
                return cert

            new = await eventually(renewed, timeout=40, what="the running agent renews its certificate")
            assert pki.remaining_fraction(new) > 0.99 and pki.common_name(new) == pki.NODE_PREFIX + worker.name

            # its listener presents the new certificate
            endpoint = (await c.api.get(Node, worker.name)).status.agent_endpoint
            host, port = endpoint.removeprefix("https://").rsplit(":", 1)
            own = client_context(c.plane.ca_pem, cert_file=tls / "node.crt", key_file=tls / "node.key")

            async def served() -> None:
                _, writer = await asyncio.open_connection(host, int(port), ssl=own,
                                                          server_hostname=pki.node_dns_name(worker.name))
                try:
                    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
                finally:
                    writer.close()
                assert x509.load_der_x509_certificate(der).serial_number == new.serial_number

            await eventually(served, timeout=10, what="the listener serves the renewed certificate")

            # the old one expires; every connection to the API is cut: the new ones must present the new one
            await asyncio.sleep(max(0.0, short.not_valid_after_utc.timestamp() - time.time() + 1))
            await proxies[0].cut()
            await proxies[0].heal()
            await c.api.create(Container(metadata=ObjectMeta(name="after-renewal"),
                                         spec=ContainerSpec(image=c.image, command=["sleep", "600"],
                                                            termination_grace_period_seconds=1)))
            await c.wait_for("after-renewal", lambda o: o.status.phase == "Running", timeout=60)
            node = await c.api.get(Node, worker.name)
            assert any(cond.type == "Ready" and cond.status == "True" for cond in node.status.conditions)
            events, _ = await c.api.list(Event, field_selector="reason=CertificateRenewed")
            assert [e.spec.involved_object.name for e in events] == [worker.name]
    finally:
        for p in proxies:
            await p.cut()
