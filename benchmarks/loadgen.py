"""A cheap closed-loop load generator in processes of its own, for the API and for raw etcd.

``run_load`` starts ``procs`` processes (spawned, so none inherits the caller's event loop); each
opens its share of ``clients`` concurrent clients, warms them up (connections made, TLS handshakes
done), reports ready and waits for the common start. Then every client sends requests back to back
until its process's share of ``total`` is done, timing each. The parent gathers the samples:
requests/s over the span from the first start to the last end (CLOCK_MONOTONIC is one clock for
every process), p50 and p99.

Two targets, the same shape:

- ``api``: POST a container to ``{url}/namespaces/{namespace}/containers`` over HTTPS (aiohttp,
  keep-alive: one connection per client, reused), trusting the cluster CA file (the body from
  ``template`` in the spec when given, see ``container_body``); with ``rate`` in the
  spec, paced to that many requests/s in all (to compare CPU per request at the same offered load);
- ``etcd``: ``EtcdStore.put`` of a value the size of a stored container — the client library the
  API itself uses (aetcd stubs on grpc.aio), one channel per process, against the same etcd.

The load comes from processes of its own so that its CPU is not the API process's; how many is a
trade: a second process adds client capacity but takes CPU from the API and etcd. On the 2-core
machine of docs/benchmarks.md one process gave the most (the API stayed the bottleneck), so the
figures say how many were used.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import ssl
import statistics
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any


@dataclass
class LoadResult:
    rate: float  # requests/s, all processes together
    p50_ms: float
    p99_ms: float
    count: int
    procs: int
    clients: int


def request_names(tag: str, total: int, procs: int) -> list[str]:
    """The names ``run_load(..., tag=tag)`` gives the objects it creates, in all its processes."""
    return [f"{tag}{p}-{i}" for p in range(procs) for i in range(total // procs + (1 if p < total % procs else 0))]


def container_body(name: str, template: str = "") -> bytes:
    """The body of a create: ``template`` (JSON with ``__NAME__`` where the name goes) or a small default."""
    if template:
        return template.replace("__NAME__", name).encode()
    return json.dumps({"metadata": {"name": name, "labels": {"app": "bench"}},
                       "spec": {"image": "busybox", "resources": {"requests": {"cpu": "10m", "memory": "8Mi"}}}}).encode()


# a stored Container of the body above is ~480 bytes of JSON; the raw puts carry the same size
STORED_SIZE = 480


async def _api_load(spec: dict[str, Any], n: int, clients: int, tag: str, ready: Connection,
                    go: Any) -> tuple[list[float], float, float]:
    import aiohttp

    tls: ssl.SSLContext | bool = False
    if spec.get("ca"):
        tls = ssl.create_default_context(cadata=Path(spec["ca"]).read_text())
    url = f"{spec['url']}/namespaces/{spec['namespace']}/containers"
    headers = {"Authorization": f"Bearer {spec['token']}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=clients, ssl=tls)) as s:
        async def warm() -> None:
            async with s.get(spec["url"] + "/healthz") as r:
                await r.read()

        await asyncio.gather(*(warm() for _ in range(clients)))
        samples: list[float] = []
        counter = iter(range(n))
        gap = clients / spec["rate"] if spec.get("rate") else 0.0  # each client's pace (0: back to back)

        async def client() -> None:
            due = time.perf_counter()
            for i in counter:
                if gap:
                    due += gap
                    if (wait := due - time.perf_counter()) > 0:
                        await asyncio.sleep(wait)
                body = container_body(f"{tag}-{i}", spec.get("template", ""))
                t = time.perf_counter()
                async with s.post(url, data=body) as r:
                    await r.read()
                    if r.status != 201:
                        raise SystemExit(f"create failed: {r.status} {await r.text()}")
                samples.append(time.perf_counter() - t)

        return await _run_clients(client, clients, ready, go, samples)


async def _etcd_load(spec: dict[str, Any], n: int, clients: int, tag: str, ready: Connection,
                     go: Any) -> tuple[list[float], float, float]:
    from corral.store.etcd import EtcdStore, EtcdTls

    tls = EtcdTls(*(Path(spec[k]) for k in ("ca", "cert", "key"))) if spec.get("ca") else None
    store = EtcdStore([spec["endpoint"]], tls=tls)
    value = b"x" * STORED_SIZE
    try:
        await asyncio.gather(*(store.put(f"/bench-raw/warm/{tag}/{i}", b"") for i in range(clients)))
        samples: list[float] = []
        counter = iter(range(n))

        async def client() -> None:
            for i in counter:
                t = time.perf_counter()
                await store.put(f"/bench-raw/{tag}/{i}", value)
                samples.append(time.perf_counter() - t)

        return await _run_clients(client, clients, ready, go, samples)
    finally:
        await store.close()


async def _run_clients(client: Any, clients: int, ready: Connection, go: Any,
                       samples: list[float]) -> tuple[list[float], float, float]:
    ready.send("ready")
    await asyncio.to_thread(go.wait)
    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return samples, start, time.perf_counter()


def _child(target: str, spec: dict[str, Any], n: int, clients: int, tag: str, out: Connection, go: Any) -> None:
    load = _api_load if target == "api" else _etcd_load
    try:
        out.send(asyncio.run(load(spec, n, clients, tag, out, go)))
    except BaseException as e:  # the parent reports it
        out.send(("error", repr(e)))
        raise


def run_load(target: str, spec: dict[str, Any], *, total: int, clients: int = 64, procs: int = 2,
             tag: str = "c") -> LoadResult:
    """``total`` requests from ``clients`` concurrent clients spread over ``procs`` processes (blocking:
    call it in a thread from async code)."""
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    children = []
    for p in range(procs):
        mine, theirs = ctx.Pipe()
        share = total // procs + (1 if p < total % procs else 0)
        per = clients // procs + (1 if p < clients % procs else 0)
        mine_spec = {**spec, "rate": spec["rate"] / procs} if spec.get("rate") else spec
        proc = ctx.Process(target=_child, args=(target, mine_spec, share, per, f"{tag}{p}", theirs, go), daemon=True)
        proc.start()
        children.append((proc, mine))
    try:
        for _, pipe in children:
            msg = pipe.recv()
            if msg != "ready":
                raise SystemExit(f"load process failed: {msg}")
        go.set()
        results = [pipe.recv() for _, pipe in children]
    finally:
        for proc, _ in children:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    for r in results:
        if r[0] == "error":
            raise SystemExit(f"load process failed: {r[1]}")
    samples = sorted(s for r in results for s in r[0])
    span = max(r[2] for r in results) - min(r[1] for r in results)
    return LoadResult(rate=len(samples) / span, p50_ms=statistics.median(samples) * 1000,
                      p99_ms=samples[max(0, int(len(samples) * 0.99) - 1)] * 1000, count=len(samples),
                      procs=procs, clients=clients)
