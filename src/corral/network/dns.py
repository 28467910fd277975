"""The agent's DNS server: cluster names answered from memory, everything else forwarded.

``ClusterDNS`` listens on UDP and TCP (two-byte length prefix, RFC 1035 4.2.2) at one address —
the agent puts it on its bridge's gateway address, port 53, the only resolver its containers know.
Wire format is dnslib's. Names under the cluster domain are answered from ``Records`` (what the
agent's watches keep in memory, so answers go on when the API is unreachable):

- ``<service>.<ns>.svc.<domain>`` A → the cluster IP; a headless Service's ready endpoint IPs;
- ``_<port>._<proto>.<service>.<ns>.svc.<domain>`` SRV → the named port, target the service name;
- ``<container>.<ns>.ctr.<domain>`` A → the container's IP.

A name that exists but has no record of the asked type (AAAA of a service, the namespace's own
``<ns>.svc.<domain>``) is NODATA (NOERROR, no answer, the zone's SOA in authority); a name under the
domain that does not exist is NXDOMAIN — as CoreDNS's kubernetes plugin answers, so resolvers walk
their search path correctly. Cluster answers have TTL ``CLUSTER_TTL``.

Anything else goes to the upstream resolvers in order (UDP, then TCP when the answer is truncated),
and the answer is cached for its smallest TTL (at most ``MAX_CACHE_TTL``; failures for
``NEGATIVE_TTL``), keyed by name, type and class. The cache is small and bounded (``CACHE_SIZE``).

Cluster answers are memoized too, by the query's bytes after its ID (question, flags, EDNS), for as
long as ``Records.version()`` is unchanged and at most ``LOCAL_MEMO_SECONDS``: a repeated question
costs a dict lookup and a copy of its ID instead of a parse and a pack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from dnslib import QTYPE, RCODE, RR, SOA, SRV, A, DNSRecord

log = logging.getLogger(__name__)

CLUSTER_TTL = 5
MAX_CACHE_TTL = 300
NEGATIVE_TTL = 5
CACHE_SIZE = 4096
UPSTREAM_TIMEOUT = 2.0
LOCAL_MEMO_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class SrvPort:
    name: str
    protocol: str  # "tcp" | "udp"
    port: int

@dataclass(frozen=True, slots=True)
class ServiceRecord:
    ips: tuple[str, ...]  # the cluster IP, or a headless Service's ready endpoint IPs
    ports: tuple[SrvPort, ...] = ()

class Records(Protocol):
    """What DNS needs from the agent's in-memory state."""

    def service(self, namespace: str, name: str) -> ServiceRecord | None: ...

    def container_ip(self, namespace: str, name: str) -> str | None: ...

    def has_namespace(self, namespace: str) -> bool: ...

    def version(self) -> int:
        """A number that changes whenever any answer may have (memoized answers are dropped)."""
        ...

def parse_upstream(text: str) -> tuple[str, int]:
    """``ADDR`` or ``ADDR:PORT`` (IPv4) → (address, port)."""
    host, sep, port = text.rpartition(":")
    if sep and host and "." in host:
        return host, int(port)
    return text, 53

def host_nameservers(path: str = "/etc/resolv.conf") -> list[tuple[str, int]]:
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver" and ":" not in parts[1]:
            out.append((parts[1], 53))
    return out

class _Cache:
    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, int, int], tuple[float, bytes]] = OrderedDict()

    def get(self, key: tuple[str, int, int]) -> bytes | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] < time.monotonic():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return item[1]

    def put(self, key: tuple[str, int, int], ttl: float, packet: bytes) -> None:
        self._items[key] = (time.monotonic() + ttl, packet)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

class ClusterDNS:
    def __init__(self, *, domain: str, records: Records, upstreams: Sequence[tuple[str, int]]) -> None:
        self.domain = domain.lower().strip(".")
        self.records = records
        self.upstreams = list(upstreams)
        self.cache = _Cache()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.answered = 0
        self.forwarded = 0
        self._memo: dict[bytes, bytes] = {}
        self._memo_version = -1
        self._memo_until = 0.0

    # --- answering ----------------------------------------------------------------------------

    def _soa(self) -> RR:
        return RR(self.domain + ".", QTYPE.SOA, ttl=CLUSTER_TTL,
                  rdata=SOA(f"ns.dns.{self.domain}.", f"hostmaster.{self.domain}.", (1, 7200, 1800, 86400, CLUSTER_TTL)))

    def local_answer(self, request: DNSRecord) -> DNSRecord | None:
        """The answer for a cluster name; None when the name is not ours (forward it)."""
        q = request.q
        qname = str(q.qname).lower().rstrip(".")
        if qname != self.domain and not qname.endswith("." + self.domain):
            return None
        reply = request.reply()
        reply.header.aa = 1
        labels = qname[: -len(self.domain)].rstrip(".").split(".") if qname != self.domain else []
        found = self._fill(reply, labels, q.qtype, qname)
        if not found:
            reply.header.rcode = RCODE.NXDOMAIN
        if not reply.rr:
            reply.add_auth(self._soa())
        return reply

    def _fill(self, reply: DNSRecord, labels: list[str], qtype: int, qname: str) -> bool:
        """Add the answers for ``labels`` (the name left of the domain); False if the name does not exist."""
        if not labels:
            if qtype == QTYPE.SOA:
                reply.add_answer(self._soa())
            return True
        kind = labels[-1]
        if kind not in ("svc", "ctr"):
            return False
        rest = labels[:-1]
        if not rest:
            return True  # svc.<domain>: exists (it has names under it), no records
        ns = rest[-1]
        if len(rest) == 1:
            return self.records.has_namespace(ns)
        if kind == "ctr":
            if len(rest) != 2:
                return False
            ip = self.records.container_ip(ns, rest[0])
            if ip is None:
                return False
            if qtype in (QTYPE.A, QTYPE.ANY):
                reply.add_answer(RR(qname + ".", QTYPE.A, ttl=CLUSTER_TTL, rdata=A(ip)))
            return True
        if len(rest) == 2:
            record = self.records.service(ns, rest[0])
            if record is None:
                return False
            if qtype in (QTYPE.A, QTYPE.ANY):
                for ip in record.ips:
                    reply.add_answer(RR(qname + ".", QTYPE.A, ttl=CLUSTER_TTL, rdata=A(ip)))
            return True
        if len(rest) == 4 and rest[0].startswith("_") and rest[1].startswith("_"):
            record = self.records.service(ns, rest[2])
            if record is None:
                return False
            port_name, proto = rest[0][1:], rest[1][1:]
            ports = [p for p in record.ports if p.name == port_name and p.protocol == proto]
            if not ports:
                return False
            if qtype in (QTYPE.SRV, QTYPE.ANY):
                target = f"{rest[2]}.{ns}.svc.{self.domain}."
                for p in ports:
                    reply.add_answer(RR(qname + ".", QTYPE.SRV, ttl=CLUSTER_TTL, rdata=SRV(0, 100, p.port, target)))
            return True
        return False

    async def resolve(self, packet: bytes) -> bytes | None:
        try:
            request = DNSRecord.parse(packet)
        except Exception:
            return None
        if not request.questions:
            reply = request.reply()
            reply.header.rcode = RCODE.FORMERR
            return bytes(reply.pack())
        local = self.local_answer(request)
        if local is not None:
            self.answered += 1
            return bytes(local.pack())
        return await self.forward(request, packet)

    async def forward(self, request: DNSRecord, packet: bytes) -> bytes:
        q = request.q
        key = (str(q.qname).lower(), int(q.qtype), int(q.qclass))
        cached = self.cache.get(key)
        if cached is not None:
            return struct.pack("!H", request.header.id) + cached[2:]
        self.forwarded += 1
        for host, port in self.upstreams:
            try:
                answer = await self._ask(packet, host, port)
            except (OSError, TimeoutError) as e:
                log.debug("upstream %s:%s: %s", host, port, e)
                continue
            try:
                parsed = DNSRecord.parse(answer)
            except Exception:
                continue
            ttls = [rr.ttl for rr in parsed.rr]
            ttl = min([*ttls, MAX_CACHE_TTL]) if ttls else NEGATIVE_TTL
            if ttl > 0 and not parsed.header.tc:
                self.cache.put(key, ttl, answer)
            return answer
        reply = request.reply()
        reply.header.rcode = RCODE.SERVFAIL
        return bytes(reply.pack())

    async def _ask(self, packet: bytes, host: str, port: int) -> bytes:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bytes] = loop.create_future()

        class _Client(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                if not done.done():
                    done.set_result(data)

            def error_received(self, exc: Exception) -> None:
                if not done.done():
                    done.set_exception(exc)

        transport, _ = await loop.create_datagram_endpoint(_Client, remote_addr=(host, port))
        try:
            transport.sendto(packet)
            answer = await asyncio.wait_for(done, UPSTREAM_TIMEOUT)
        finally:
            transport.close()
        if DNSRecord.parse(answer).header.tc:  # truncated: ask again over TCP
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), UPSTREAM_TIMEOUT)
            try:
                writer.write(struct.pack("!H", len(packet)) + packet)
                size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), UPSTREAM_TIMEOUT))[0]
                answer = await asyncio.wait_for(reader.readexactly(size), UPSTREAM_TIMEOUT)
            finally:
                writer.close()
        return answer

    # --- serving ------------------------------------------------------------------------------

    async def start(self, host: str, port: int = 53) -> None:
        loop = asyncio.get_running_loop()
        server = self

        class _Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: Any) -> None:
                local = server._answer_now(data)
                if local is not None:
                    self.transport.sendto(local, addr)  # type: ignore[attr-defined]
                    return
                task = loop.create_task(server._udp_reply(self.transport, data, addr))  # type: ignore[arg-type]
                server._tasks.add(task)
                task.add_done_callback(server._tasks.discard)

        transport, _ = await loop.create_datagram_endpoint(_Udp, local_addr=(host, port), reuse_port=False)
        self._udp = transport
        self._tcp = await asyncio.start_server(self._serve_tcp, host, port, reuse_address=True)

    def _answer_now(self, data: bytes) -> bytes | None:
        """A cluster answer without a task (the fast path); None when the query must be forwarded."""
        version, now = self.records.version(), time.monotonic()
        if version != self._memo_version or now > self._memo_until or len(self._memo) > CACHE_SIZE:
            self._memo.clear()
            self._memo_version, self._memo_until = version, now + LOCAL_MEMO_SECONDS
        key = data[2:]
        known = self._memo.get(key)
        if known is not None:
            self.answered += 1
            return data[:2] + known
        try:
            request = DNSRecord.parse(data)
        except Exception:
            return None
        if not request.questions:
            return None
        local = self.local_answer(request)
        if local is None:
            return None
        self.answered += 1
        packed = bytes(local.pack())
        self._memo[key] = packed[2:]
        return packed

    async def _udp_reply(self, transport: asyncio.DatagramTransport, data: bytes, addr: Any) -> None:
        answer = await self.resolve(data)
        if answer is not None and not transport.is_closing():
            transport.sendto(answer, addr)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readexactly(2)
                packet = await reader.readexactly(struct.unpack("!H", head)[0])
                answer = await self.resolve(packet)
                if answer is None:
                    break
                writer.write(struct.pack("!H", len(answer)) + answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(Exception):
                await self._tcp.wait_closed()
        for task in list(self._tasks):
            task.cancel()
