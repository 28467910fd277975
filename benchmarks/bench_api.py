"""API benchmark: creates/s from 64 concurrent clients, create latency at low load, watch fan-out.

Starts ``corral serve --role=control`` (with its embedded etcd) as a child process on a free port,
then drives it from this process (the load generator is a separate process from the server):

- creates/s: 64 concurrent clients POST containers for a fixed count;
- p50/p99 create latency at low load: one client, sequential creates;
- watch fan-out: 100 watchers on one namespace; a writer creates N containers; events/s delivered
  (sum over watchers) from the first create to the last event received.

Prints figures and writes JSON to benchmarks/results/bench_api.json. Traffic stays on 127.0.0.1,
over HTTPS (the API serves nothing else) trusting the CA the control plane made; ``TLS`` is the
client context every session uses (bench_tls.py sets it to False to measure plain HTTP).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from harness import trust, wait_ready

from corral.store.embedded import free_port

TLS: ssl.SSLContext | bool = False  # set once the control plane has written its CA


def connector(limit: int = 100) -> aiohttp.TCPConnector:
    return aiohttp.TCPConnector(limit=limit, ssl=TLS)


def body(name: str) -> bytes:
    return json.dumps({"metadata": {"name": name, "labels": {"app": "bench"}},
                       "spec": {"image": "busybox", "resources": {"requests": {"cpu": "10m", "memory": "8Mi"}}}}).encode()


async def create_ns(s: aiohttp.ClientSession, url: str, ns: str) -> None:
    async with s.post(f"{url}/namespaces", data=json.dumps({"metadata": {"name": ns}})) as r:
        assert r.status == 201, await r.text()


async def throughput(url: str, headers: dict[str, str], *, clients: int, total: int) -> float:
    async with aiohttp.ClientSession(headers=headers, connector=connector(clients)) as s:
        await create_ns(s, url, "tput")
        counter = iter(range(total))

        async def worker() -> None:
            for i in counter:
                async with s.post(f"{url}/namespaces/tput/containers", data=body(f"c{i}")) as r:
                    if r.status != 201:
                        raise SystemExit(f"create failed: {r.status} {await r.text()}")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return total / (time.perf_counter() - start)


async def latency(url: str, headers: dict[str, str], *, n: int) -> tuple[float, float]:
    samples = []
    async with aiohttp.ClientSession(headers=headers, connector=connector()) as s:
        await create_ns(s, url, "lat")
        for i in range(n):
            t = time.perf_counter()
            async with s.post(f"{url}/namespaces/lat/containers", data=body(f"c{i}")) as r:
                assert r.status == 201
                await r.read()
            samples.append(time.perf_counter() - t)
            await asyncio.sleep(0.005)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


async def fanout(url: str, headers: dict[str, str], *, watchers: int, events: int) -> float:
    async with aiohttp.ClientSession(headers=headers, connector=connector(watchers + 8)) as s:
        await create_ns(s, url, "fan")
        async with s.get(f"{url}/namespaces/fan/containers") as r:
            rv = (await r.json())["metadata"]["resourceVersion"]
        received = [0] * watchers
        done = asyncio.Event()
        finished = 0

        async def watch(i: int) -> None:
            nonlocal finished
            async with s.get(f"{url}/namespaces/fan/containers",
                             params={"watch": "1", "resourceVersion": rv},
                             timeout=aiohttp.ClientTimeout(total=None)) as r:
                async for line in r.content:
                    if b'"ADDED"' in line:
                        received[i] += 1
                        if received[i] == events:
                            finished += 1
                            if finished == watchers:
                                done.set()
                            return

        tasks = [asyncio.create_task(watch(i)) for i in range(watchers)]
        await asyncio.sleep(1.0)
        start = time.perf_counter()
        counter = iter(range(events))

        async def writer() -> None:
            for i in counter:
                async with s.post(f"{url}/namespaces/fan/containers", data=body(f"c{i}")) as r:
                    assert r.status == 201

        await asyncio.gather(*(writer() for _ in range(16)))
        await asyncio.wait_for(done.wait(), 120)
        elapsed = time.perf_counter() - start
        for t in tasks:
            t.cancel()
        return sum(received) / elapsed


async def main() -> None:
    global TLS
    total = int(os.environ.get("BENCH_CREATES", "10000"))
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        port = free_port()
        url = f"https://127.0.0.1:{port}"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "corral.cli.main", "serve", "--role=control", "--data-dir", tmp,
            "--listen", f"127.0.0.1:{port}", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "XDG_CONFIG_HOME": tmp},
        )
        try:
            await wait_ready(url, data_dir=Path(tmp))
            TLS = trust(Path(tmp))
            headers = {"Authorization": f"Bearer {(Path(tmp) / 'admin.token').read_text().strip()}"}
            p50, p99 = await latency(url, headers, n=500)
            rate = await throughput(url, headers, clients=64, total=total)
            events_per_s = await fanout(url, headers, watchers=100, events=1000)
        finally:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
    results = {"creates_per_s_64_clients": round(rate), "create_p50_ms": round(p50 * 1000, 2),
               "create_p99_ms": round(p99 * 1000, 2), "watch_events_per_s_100_watchers": round(events_per_s)}
    print(f"creates/s (64 clients, {total} creates): {rate:,.0f}   goal >= 2,000")
    print(f"create latency at low load: p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms   goal p99 <= 20 ms")
    print(f"watch fan-out (100 watchers, 1,000 events each): {events_per_s:,.0f} events/s delivered   goal >= 20,000")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_api.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
