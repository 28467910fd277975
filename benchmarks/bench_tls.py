"""What TLS costs the API: creates/s and latency over HTTPS vs plain HTTP, and the handshake cost
of a new agent connection (mutual TLS with a node certificate).

Starts ``corral serve --role=control`` (embedded etcd) twice per round — once serving HTTPS (the
product), once with the hidden testing flag ``--insecure-plain-http-loopback`` — and runs the same
load from this process against each (bench_api.py's load: 64 clients on reused connections for
creates/s; one sequential client for p50/p99), and the API process's CPU per create (the load
generator shares the machine's cores, and pays for TLS too). Rounds alternate the two so the machine's drift hits
both alike; the best round of each is kept. Then, on fresh connections each time
(``force_close``), GET /healthz: the time per request with a new TLS handshake (presenting a node
certificate, as an agent does) vs a new plain TCP connection.

Goal: TLS costs at most 10 % of creates/s with connections reused. Prints the figures and writes
benchmarks/results/bench_tls.json. Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import bench_api
from harness import cpu_seconds, trust, wait_ready

from corral.store.embedded import free_port
from corral.tls import pki
from corral.tls.contexts import client_context

ROUNDS = int(os.environ.get("BENCH_TLS_ROUNDS", "2"))
CREATES = int(os.environ.get("BENCH_CREATES", "6000"))
HANDSHAKES = int(os.environ.get("BENCH_HANDSHAKES", "300"))


async def new_connections(url: str, tls: Any, n: int) -> float:
    """Mean seconds per GET /healthz on a new connection each time."""
    samples = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, ssl=tls)) as s:
        for _ in range(n):
            t = time.perf_counter()
            async with s.get(url + "/healthz") as r:
                assert r.status == 200
                await r.read()
            samples.append(time.perf_counter() - t)
    return statistics.mean(samples[10:])


async def one_round(plain: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="corral-bench-tls-") as tmp:
        base = Path(tmp)
        port = free_port()
        url = f"{'http' if plain else 'https'}://127.0.0.1:{port}"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "corral.cli.main", "serve", "--role=control", "--data-dir", tmp,
            "--listen", f"127.0.0.1:{port}", *(["--insecure-plain-http-loopback"] if plain else []),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "XDG_CONFIG_HOME": tmp},
        )
        try:
            await wait_ready(url, data_dir=base)
            bench_api.TLS = False if plain else trust(base)
            headers = {"Authorization": f"Bearer {(base / 'admin.token').read_text().strip()}"}
            p50, p99 = await bench_api.latency(url, headers, n=300)
            cpu0 = cpu_seconds(proc.pid)  # the API process (etcd and the leader are its children)
            rate = await bench_api.throughput(url, headers, clients=64, total=CREATES)
            api_cpu_ms = (cpu_seconds(proc.pid) - cpu0) * 1000 / CREATES
            if plain:
                connect = await new_connections(url, False, HANDSHAKES)
            else:  # as an agent connects: its node certificate, the cluster CA
                ca = pki.Authority.from_pem((base / "tls" / "ca.crt").read_bytes(), (base / "tls" / "ca.key").read_bytes())
                cert, key = ca.issue_pair(cn="node:bench", client=True, server=True)
                pki.write_private(base / "node.crt", cert)
                pki.write_private(base / "node.key", key)
                tls = client_context(ca.cert_pem, cert_file=base / "node.crt", key_file=base / "node.key")
                connect = await new_connections(url, tls, HANDSHAKES)
        finally:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
    return {"creates_per_s": rate, "api_cpu_ms_per_create": api_cpu_ms, "p50_ms": p50 * 1000, "p99_ms": p99 * 1000,
            "new_connection_ms": connect * 1000}


async def main() -> None:
    runs: dict[str, list[dict[str, float]]] = {"https": [], "http": []}
    for i in range(ROUNDS):
        for mode in (("https", "http") if i % 2 == 0 else ("http", "https")):
            r = await one_round(plain=mode == "http")
            runs[mode].append(r)
            print(f"round {i + 1} {mode}: " + ", ".join(f"{k} {v:,.2f}" for k, v in r.items()), flush=True)
    best = {mode: {"creates_per_s": max(r["creates_per_s"] for r in rs),
                   "api_cpu_ms_per_create": min(r["api_cpu_ms_per_create"] for r in rs),
                   "p50_ms": min(r["p50_ms"] for r in rs), "p99_ms": min(r["p99_ms"] for r in rs),
                   "new_connection_ms": min(r["new_connection_ms"] for r in rs)} for mode, rs in runs.items()}
    cost = 1 - best["https"]["creates_per_s"] / best["http"]["creates_per_s"]
    handshake = best["https"]["new_connection_ms"] - best["http"]["new_connection_ms"]
    print(f"creates/s (64 clients, reused connections): HTTPS {best['https']['creates_per_s']:,.0f}, "
          f"HTTP {best['http']['creates_per_s']:,.0f}: TLS costs {cost * 100:.1f} %   goal <= 10 %")
    print(f"API process CPU per create: HTTPS {best['https']['api_cpu_ms_per_create']:.3f} ms, "
          f"HTTP {best['http']['api_cpu_ms_per_create']:.3f} ms")
    print(f"create latency at low load: HTTPS p50 {best['https']['p50_ms']:.2f} / p99 {best['https']['p99_ms']:.2f} ms, "
          f"HTTP p50 {best['http']['p50_ms']:.2f} / p99 {best['http']['p99_ms']:.2f} ms")
    print(f"a new connection + GET /healthz: mutual TLS (node certificate) {best['https']['new_connection_ms']:.2f} ms, "
          f"plain TCP {best['http']['new_connection_ms']:.2f} ms: the handshake costs {handshake:.2f} ms")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_tls.json").write_text(json.dumps(
        {"rounds": runs, "best": best, "tls_cost_fraction_creates": round(cost, 4),
         "handshake_ms": round(handshake, 3)}, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
