"""API benchmark: creates/s from 64 concurrent clients beside raw etcd puts/s on the same etcd, create
latency at low load, watch fan-out.

Starts ``corral serve --role=control`` (with its embedded etcd) as a child process on a free port, then:

- raw etcd puts/s: 64 concurrent ``EtcdStore.put`` calls (the client library the API uses) against
  the control plane's own etcd (its endpoint and client certificate from the data dir) — the floor;
- creates/s with p50/p99: 64 concurrent clients POST containers over HTTPS with keep-alive; the
  load comes from ``--load-procs`` processes of their own (benchmarks/loadgen.py), so the client is
  not the bottleneck, and the API process's CPU per create is read from /proc meanwhile;
  printed with the ratio to the raw puts/s of the same run;
- p50/p99 create latency at low load: one client, sequential creates;
- watch fan-out: 100 watchers on one namespace; a writer creates N containers; events/s delivered
  (sum over watchers) from the first create to the last event received.

Prints figures (with the load average) and writes JSON to benchmarks/results/bench_api.json.
Traffic stays on 127.0.0.1, over HTTPS (the API serves nothing else) trusting the CA the control
plane made; ``TLS`` is the client context every in-process session uses (bench_tls.py sets it to
False to measure plain HTTP).
"""

from __future__ import annotations

import argparse
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
from harness import cpu_seconds, trust, wait_ready
from loadgen import LoadResult, run_load

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


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def raw_etcd_puts(data_dir: Path, *, total: int, procs: int) -> LoadResult:
    """Puts/s of 64 concurrent clients straight to the control plane's etcd (the floor)."""
    endpoint = json.loads((data_dir / "etcd.endpoints").read_text())[0]
    files = data_dir / "tls" / "etcd"
    spec = {"endpoint": endpoint}
    if endpoint.startswith("https"):
        spec |= {"ca": str(files / "ca.crt"), "cert": str(files / "client.crt"), "key": str(files / "client.key")}
    return await asyncio.to_thread(run_load, "etcd", spec, total=total, clients=64, procs=procs)


async def api_creates(url: str, data_dir: Path, headers: dict[str, str], pid: int, *, total: int, procs: int,
                      tls: bool = True, rate: float = 0.0, namespace: str = "tput") -> tuple[LoadResult, float]:
    """Creates/s, p50/p99 of 64 concurrent clients in ``procs`` processes; and the API process's CPU
    milliseconds per create meanwhile (etcd and the leader are processes of their own)."""
    async with aiohttp.ClientSession(headers=headers, connector=connector()) as s:
        await create_ns(s, url, namespace)
    spec = {"url": url, "namespace": namespace, "token": headers["Authorization"].removeprefix("Bearer "),
            "ca": str(data_dir / "tls" / "ca.crt") if tls else "", "rate": rate}
    cpu0 = cpu_seconds(pid)
    result = await asyncio.to_thread(run_load, "api", spec, total=total, clients=64, procs=procs, tag=namespace)
    return result, (cpu_seconds(pid) - cpu0) * 1000 / result.count


async def main(args: argparse.Namespace) -> None:
    global TLS
    total = args.creates
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
            load_before = loadavg()
            raw = await raw_etcd_puts(Path(tmp), total=total, procs=args.load_procs)
            api, cpu_ms = await api_creates(url, Path(tmp), headers, proc.pid, total=total, procs=args.load_procs)
            events_per_s = 0.0 if args.no_fanout else await fanout(url, headers, watchers=100, events=1000)
            load_after = loadavg()
        finally:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
    ratio = api.rate / raw.rate
    results = {"creates_per_s_64_clients": round(api.rate), "creates_p50_ms_64_clients": round(api.p50_ms, 2),
               "creates_p99_ms_64_clients": round(api.p99_ms, 2), "raw_etcd_puts_per_s_64_clients": round(raw.rate),
               "raw_etcd_put_p50_ms": round(raw.p50_ms, 2), "raw_etcd_put_p99_ms": round(raw.p99_ms, 2),
               "ratio_to_raw_etcd": round(ratio, 3), "api_cpu_ms_per_create": round(cpu_ms, 3),
               "load_processes": args.load_procs, "create_p50_ms": round(p50 * 1000, 2),
               "create_p99_ms": round(p99 * 1000, 2), "watch_events_per_s_100_watchers": round(events_per_s),
               "loadavg_before": load_before, "loadavg_after": load_after}
    print(f"load average before/after: {load_before} / {load_after}; load generator: {args.load_procs} processes")
    print(f"raw etcd puts/s (64 clients, same etcd, EtcdStore): {raw.rate:,.0f}  p50 {raw.p50_ms:.2f} ms, "
          f"p99 {raw.p99_ms:.2f} ms   (the floor)")
    print(f"API creates/s (64 clients, {total} creates): {api.rate:,.0f}  p50 {api.p50_ms:.2f} ms, "
          f"p99 {api.p99_ms:.2f} ms   = {ratio:.3f}x raw etcd   goal p99 <= 20 ms at ~0.28x")
    print(f"API process CPU per create: {cpu_ms:.3f} ms")
    print(f"create latency at low load: p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms   goal p99 <= 20 ms")
    if not args.no_fanout:
        print(f"watch fan-out (100 watchers, 1,000 events each): {events_per_s:,.0f} events/s delivered   goal >= 20,000")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_api.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--creates", type=int, default=int(os.environ.get("BENCH_CREATES", "20000")))
    parser.add_argument("--load-procs", type=int, default=1,
                        help="load generator processes (64 clients in all); on 2 cores 1 gives the most")
    parser.add_argument("--no-fanout", action="store_true", help="skip the watch fan-out")
    asyncio.run(main(parser.parse_args()))
