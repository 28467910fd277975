"""Services at size: rule propagation, connections through a cluster IP, and DNS answers per second.

Runs itself again inside a scratch network namespace (``unshare -n``), so every nft table, address
and socket it makes goes with the namespace. Inside it starts an embedded etcd, the API server, and
the agent's ``ServiceProxy`` (its reflectors, the real renderer, the real ``NftTable``); it creates
1,000 Services with 10 hollow endpoints each (Endpoints written straight through the API: no
containers, no Endpoints controller), then measures:

1. **propagation** — an Endpoints change written to the API → the agent's nft transaction holding it
   has returned (rules live in the kernel): p50/p99 over ``CHANGES`` changes, one at a time;
2. **connections/s** — TCP connect + one byte + close from ``CLIENTS`` concurrent asyncio clients,
   to a server on a local address, straight (the floor) and through a cluster IP whose DNAT (output
   hook, with the 1,000-service table loaded) leads there, alternated over ``ROUNDS`` rounds;
3. **DNS answers/s** — the agent's DNS server (``network/dns.py``, records from the same proxy)
   queried for service names by a separate process keeping ``WINDOW`` queries in flight.

Prints figures beside their floors or goals and writes benchmarks/results/bench_services.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import pct

from corral.api.auth import Identity
from corral.api.client import ApiClient
from corral.api.server import ApiServer
from corral.model.resources import (
    EndpointAddress,
    EndpointPort,
    Endpoints,
    EndpointsSpec,
    ObjectMeta,
    Service,
    ServicePort,
    ServiceSpec,
)
from corral.network.nftables import NftTable
from corral.roles.services import ServiceProxy, start_dns
from corral.store.embedded import EmbeddedEtcd, free_port
from corral.store.etcd import EtcdStore

SERVICES = int(os.environ.get("BENCH_SERVICES", "1000"))
ENDPOINTS = int(os.environ.get("BENCH_ENDPOINTS", "10"))
CHANGES = int(os.environ.get("BENCH_CHANGES", "50"))
CLIENTS = 32
CONNECT_SECONDS = 2.0
ROUNDS = 4
DNS_SECONDS = 5.0
WINDOW = 64
BACKEND = "10.251.0.2"
BACKEND_PORT = 8080
VIP_BACKEND_PORT = 8081  # the cluster IP's endpoint: its own port, so the two runs never share a conntrack tuple


def say(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


def hollow(i: int, generation: int = 0) -> EndpointsSpec:
    return EndpointsSpec(addresses=[EndpointAddress(ip=f"10.{100 + (i >> 8) % 100}.{i & 255}.{j + 10 + generation}", node="other",
                                                    ports=[EndpointPort(port=8080, name="http")])
                                    for j in range(ENDPOINTS)])


async def sh(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(*argv)
    if await proc.wait() != 0:
        raise RuntimeError(f"{argv} failed")


async def populate(api: ApiClient) -> list[Service]:
    sem = asyncio.Semaphore(32)
    made: list[Service] = []

    async def one(i: int) -> None:
        async with sem:
            svc = await api.create(Service(metadata=ObjectMeta(name=f"s{i}", namespace="default"),
                                           spec=ServiceSpec(selector={"app": f"s{i}"},
                                                            ports=[ServicePort(port=80, name="http")])))
            await api.create(Endpoints(metadata=ObjectMeta(name=f"s{i}", namespace="default"), spec=hollow(i)))
            made.append(svc)

    await asyncio.gather(*(one(i) for i in range(SERVICES)))
    return made


async def propagation(api: ApiClient, proxy: ServiceProxy, nft: NftTable) -> tuple[list[float], list[float]]:
    """Per change: seconds until the rules are live, and until the agent's reflector had the change."""
    times, seen_times = [], []
    for n in range(CHANGES):
        i = random.randrange(SERVICES)
        ep = await api.get(Endpoints, f"s{i}")
        marker = f"10.250.{n // 200}.{n % 200 + 1}"
        ep.spec.addresses[0].ip = marker
        t0 = time.perf_counter()
        await api.update(ep)
        seen = 0.0
        while marker not in (nft._applied or ""):
            if not seen and proxy.endpoints.objects[("default", f"s{i}")].spec.addresses[0].ip == marker:
                seen = time.perf_counter() - t0
            await asyncio.sleep(0.0005)
        times.append(time.perf_counter() - t0)
        seen_times.append(seen or times[-1])
        if n % 10 == 9:
            say(f"{n + 1} changes, last {times[-1] * 1000:.0f} ms")
    return times, seen_times


async def connections(target: str) -> float:
    stop = time.perf_counter() + CONNECT_SECONDS
    count = 0

    async def client() -> None:
        nonlocal count
        while time.perf_counter() < stop:
            reader, writer = await asyncio.open_connection(target, 80 if target != BACKEND else BACKEND_PORT)
            await reader.readexactly(1)
            writer.close()
            count += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return count / (time.perf_counter() - t0)


DNS_CLIENT = r"""
import socket, sys, time
from dnslib import DNSRecord
port, seconds, window, services = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
queries = [DNSRecord.question(f"s{i}.default.svc.cluster.local", "A").pack() for i in range(services)]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("127.0.0.1", port))
s.settimeout(1.0)
answered, i, stop = 0, 0, time.perf_counter() + seconds
t0 = time.perf_counter()
while time.perf_counter() < stop:
    for _ in range(window):
        s.send(queries[i % services]); i += 1
    for _ in range(window):
        try:
            s.recv(512); answered += 1
        except socket.timeout:
            break
print(answered / (time.perf_counter() - t0))
"""


async def inner() -> dict[str, object]:
    await sh("ip", "link", "set", "lo", "up")
    # tens of thousands of short connections a run: reuse TIME_WAIT ports (this namespace only)
    await sh("sysctl", "-q", "-w", "net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=1024 65000")
    await sh("ip", "link", "add", "bench0", "type", "bridge")  # no dummy module here
    await sh("ip", "addr", "add", f"{BACKEND}/32", "dev", "bench0")
    await sh("ip", "link", "set", "bench0", "up")
    await sh("ip", "route", "add", "default", "dev", "bench0")  # cluster IPs need a route to be tried at all
    with tempfile.TemporaryDirectory(prefix="corral-bench-svc-") as tmp:
        etcd = EmbeddedEtcd(data_dir=Path(tmp) / "etcd")
        await etcd.start()
        store = EtcdStore([etcd.endpoint])
        server = ApiServer(store)
        await server.ensure_default_namespace()
        token = await server.tokens.issue(Identity("admin"))
        caches = asyncio.create_task(server.run_caches())
        from aiohttp import web
        runner = web.AppRunner(server.app(), access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        api = ApiClient(f"http://127.0.0.1:{port}", token)
        nft = NftTable("benchsvc")
        proxy = ServiceProxy(api, nft, node="bench")  # the hollow endpoints are on no node: no hairpin pairs
        proxy_task = asyncio.create_task(proxy.run())
        try:
            t0 = time.perf_counter()
            services = await populate(api)
            made = time.perf_counter() - t0
            say(f"created {SERVICES} services and their endpoints in {made:.1f} s")
            await proxy.applied.wait()
            while sum(len(e.spec.addresses) for e in proxy.endpoints.objects.values()) < SERVICES * ENDPOINTS:
                await asyncio.sleep(0.05)
            say("the agent has them all; measuring propagation")
            times, seen_times = await propagation(api, proxy, nft)
            say("measuring connections")
            script = nft.render()
            t_render = time.perf_counter()
            for _ in range(5):
                from corral.network.services import render_services
                render_services(proxy.services.objects.values(), proxy.endpoints.objects)
            render_ms = (time.perf_counter() - t_render) / 5 * 1000

            # connections: one service's only endpoint is the local backend
            target = services[0]
            ep = await api.get(Endpoints, target.metadata.name)
            ep.spec = EndpointsSpec(addresses=[EndpointAddress(ip=BACKEND, ports=[EndpointPort(port=VIP_BACKEND_PORT,
                                                                                               name="http")])])
            await api.update(ep)
            while f"{BACKEND} . {VIP_BACKEND_PORT}" not in (nft._applied or ""):
                await asyncio.sleep(0.01)

            async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                writer.write(b"x")
                await writer.drain()
                writer.close()

            backends = [await asyncio.start_server(serve, BACKEND, port, backlog=1024)
                        for port in (BACKEND_PORT, VIP_BACKEND_PORT)]
            floors, vips = [], []
            for _ in range(ROUNDS):  # alternated, so a busy moment of the machine hits both alike
                floors.append(await connections(BACKEND))
                vips.append(await connections(target.spec.cluster_ip))
            for b in backends:
                b.close()

            say("measuring DNS")
            dns_port = free_port()
            dns = await start_dns(proxy, domain="cluster.local", host="127.0.0.1", port=dns_port, upstreams=[])
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", DNS_CLIENT, str(dns_port), str(DNS_SECONDS), str(WINDOW), str(SERVICES),
                stdout=asyncio.subprocess.PIPE)
            out, _ = await proc.communicate()
            dns_rate = float(out.decode().strip() or 0)
            await dns.close()
        finally:
            proxy_task.cancel()
            await api.close()
            await runner.cleanup()
            caches.cancel()
            await store.close()
            await etcd.stop()
            await nft.remove()
    return {
        "services": SERVICES, "endpoints_per_service": ENDPOINTS, "populate_seconds": round(made, 1),
        "table_bytes": len(script), "render_ms": round(render_ms, 1),
        "propagation_p50_ms": round(pct(times, 0.5) * 1000, 1), "propagation_p99_ms": round(pct(times, 0.99) * 1000, 1),
        "watch_p50_ms": round(pct(seen_times, 0.5) * 1000, 1), "watch_p99_ms": round(pct(seen_times, 0.99) * 1000, 1),
        "connections_per_s_direct": round(sum(floors) / ROUNDS), "connections_per_s_cluster_ip": round(sum(vips) / ROUNDS),
        "dns_answers_per_s": round(dns_rate),
    }


def main() -> None:
    if os.environ.get("CORRAL_BENCH_INNER") != "1":  # run again in a scratch network namespace
        env = {**os.environ, "CORRAL_BENCH_INNER": "1"}
        sys.exit(subprocess.call(["unshare", "-n", sys.executable, __file__, *sys.argv[1:]], env=env))
    result = asyncio.run(inner())
    print(f"{SERVICES} services x {ENDPOINTS} endpoints: table {result['table_bytes']:,} bytes, "
          f"render {result['render_ms']} ms (populated in {result['populate_seconds']} s)")
    print(f"service change -> rules live: p50 {result['propagation_p50_ms']} ms, p99 {result['propagation_p99_ms']} ms"
          f"   (goal: p99 <= 1000 ms; of which API -> agent's watch p50 {result['watch_p50_ms']} ms, "
          f"p99 {result['watch_p99_ms']} ms)")
    ratio = result["connections_per_s_cluster_ip"] / max(1, result["connections_per_s_direct"])  # type: ignore[operator]
    print(f"connections/s: via cluster IP {result['connections_per_s_cluster_ip']}, straight to the backend "
          f"{result['connections_per_s_direct']} (floor) = {ratio:.2f}x   (goal: >= 0.9x)")
    print(f"DNS answers/s from one agent: {result['dns_answers_per_s']}   (goal: >= 10,000)")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_services.json").write_text(json.dumps({**result, "ratio": round(ratio, 3)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
