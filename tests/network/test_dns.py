"""The agent's DNS server: cluster answers (A, SRV, NXDOMAIN vs NODATA), forwarding and its cache, over real sockets on loopback."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

import pytest_asyncio
from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from corral.network.dns import ClusterDNS, ServiceRecord, SrvPort, parse_upstream
from corral.store.embedded import free_port


class FakeRecords:
    def __init__(self) -> None:
        self.services = {("default", "web"): ServiceRecord(("10.43.0.10",), (SrvPort("http", "tcp", 80),)),
                         ("default", "db"): ServiceRecord(("10.0.0.5", "10.0.0.6"))}
        self.containers = {("default", "web-abcde"): "10.88.0.7"}

    def service(self, namespace: str, name: str) -> ServiceRecord | None:
        return self.services.get((namespace, name))

    def container_ip(self, namespace: str, name: str) -> str | None:
        return self.containers.get((namespace, name))

    def has_namespace(self, namespace: str) -> bool:
        return namespace == "default"

    def version(self) -> int:
        return self.changes

    changes = 0


class Upstream(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.asked = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.asked += 1
        request = DNSRecord.parse(data)
        reply = request.reply()
        if str(request.q.qname) == "example.test.":
            reply.add_answer(RR("example.test.", QTYPE.A, ttl=60, rdata=A("192.0.2.9")))
        else:
            reply.header.rcode = RCODE.NXDOMAIN
        self.transport.sendto(reply.pack(), addr)  # type: ignore[attr-defined]


@pytest_asyncio.fixture
async def dns() -> AsyncIterator[tuple[ClusterDNS, int, Upstream]]:
    loop = asyncio.get_running_loop()
    up_port = free_port()
    transport, upstream = await loop.create_datagram_endpoint(Upstream, local_addr=("127.0.0.1", up_port))
    server = ClusterDNS(domain="cluster.local", records=FakeRecords(), upstreams=[("127.0.0.1", up_port)])
    port = free_port()
    await server.start("127.0.0.1", port)
    try:
        yield server, port, upstream
    finally:
        await server.close()
        transport.close()


async def udp_query(port: int, name: str, qtype: str = "A") -> DNSRecord:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            done.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", port))
    try:
        transport.sendto(DNSRecord.question(name, qtype).pack())
        return DNSRecord.parse(await asyncio.wait_for(done, 5))
    finally:
        transport.close()


def addresses(reply: DNSRecord) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A)


async def test_a_service_name_resolves_to_its_cluster_ip(dns: tuple[ClusterDNS, int, Upstream]) -> None:
    _, port, _ = dns
    reply = await udp_query(port, "web.default.svc.cluster.local")
    assert reply.header.rcode == RCODE.NOERROR and addresses(reply) == ["10.43.0.10"]


async def test_a_headless_service_name_resolves_to_every_endpoint(dns: tuple[ClusterDNS, int, Upstream]) -> None:
    _, port, _ = dns
    assert addresses(await udp_query(port, "db.default.svc.cluster.local")) == ["10.0.0.5", "10.0.0.6"]


async def test_a_named_port_has_an_srv_record(dns: tuple[ClusterDNS, int, Upstream]) -> None:
    _, port, _ = dns
    reply = await udp_query(port, "_http._tcp.web.default.svc.cluster.local", "SRV")
    assert [(rr.rdata.port, str(rr.rdata.target)) for rr in reply.rr] == [(80, "web.default.svc.cluster.local.")]


async def test_a_container_name_resolves_to_its_ip(dns: tuple[ClusterDNS, int, Upstream]) -> None:
    _, port, _ = dns
    assert addresses(await udp_query(port, "web-abcde.default.ctr.cluster.local")) == ["10.88.0.7"]


async def test_a_missing_name_is_nxdomain_and_a_missing_type_is_nodata(dns: tuple[ClusterDNS, int, Upstream]) -> None:
    _, port, upstream = dns
    missing = await udp_query(port, "nope.default.svc.cluster.local")
    assert missing.header.rcode == RCODE.NXDOMAIN and not missing.rr and missing.auth
    nodata = await udp_query(port, "web.default.svc.cluster.local", "AAAA")
    assert nodata.header.rcode == RCODE.NOERROR and not nodata.rr and nodata.auth
    namespace = await udp_query(port, "default.svc.cluster.local")
    assert namespace.header.rcode == RCODE.NOERROR and not namespace.rr
    assert (await udp_query(port, "other.svc.cluster.local")).header.rcode == RCODE.NXDOMAIN
    assert upstream.asked == 0  # cluster names never leave the node


async def test_other_names_are_forwarded_and_cached(dns: tuple[ClusterDNS, int, Upstream]) -> None:
    _, port, upstream = dns
    for _ in range(3):
        assert addresses(await udp_query(port, "example.test")) == ["192.0.2.9"]
    assert upstream.asked == 1
    assert (await udp_query(port, "unknown.test")).header.rcode == RCODE.NXDOMAIN


async def test_tcp_queries_are_answered(dns: tuple[ClusterDNS, int, Upstream]) -> None:
    _, port, _ = dns
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        packet = DNSRecord.question("web.default.svc.cluster.local").pack()
        writer.write(struct.pack("!H", len(packet)) + packet)
        size = struct.unpack("!H", await reader.readexactly(2))[0]
        assert addresses(DNSRecord.parse(await reader.readexactly(size))) == ["10.43.0.10"]
    finally:
        writer.close()


async def test_a_changed_record_is_answered_anew(dns: tuple[ClusterDNS, int, Upstream]) -> None:
    server, port, _ = dns
    assert addresses(await udp_query(port, "web.default.svc.cluster.local")) == ["10.43.0.10"]
    records = server.records
    assert isinstance(records, FakeRecords)
    records.services[("default", "web")] = ServiceRecord(("10.43.0.99",))
    records.changes += 1
    assert addresses(await udp_query(port, "web.default.svc.cluster.local")) == ["10.43.0.99"]


def test_upstreams_are_read_with_or_without_a_port() -> None:
    assert parse_upstream("127.0.0.1") == ("127.0.0.1", 53)
    assert parse_upstream("127.0.0.1:5353") == ("127.0.0.1", 5353)
