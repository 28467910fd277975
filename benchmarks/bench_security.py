"""What the security pieces cost: the audit log on the write path, sealing Secrets, revocation's reach.

1. **Audit log.** ``AuditLog.record`` alone (what the event loop pays per audited request), then API
   creates/s and p99 with ``--audit-log`` off and on — rounds interleaved (off, on, off, on, …) on one
   private etcd, so both see the same machine; medians reported.
2. **Sealing.** AES-256-GCM seal + open of a 2 KB Secret (``store/sealing.py``), and Secret creates/s
   through the API beside Container creates/s (the same body size class).
3. **Revocation.** Two API instances on one etcd; a token revoked through one, and the time until the
   other refuses it (polling as fast as requests go), over ``--trials``.

    .venv/bin/python benchmarks/bench_security.py [--rounds 3] [--creates 1500] [--trials 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
from aiohttp import web

from benchmarks.harness import pct
from corral.api.audit import AuditLog
from corral.api.auth import Identity
from corral.api.server import ApiServer
from corral.store.embedded import EmbeddedEtcd, free_port
from corral.store.etcd import EtcdStore
from corral.store.sealing import Keyring

CONCURRENCY = 32
KEYRING = Keyring.ephemeral()  # every API instance of the run seals and opens with the same key


class Running:
    def __init__(self, server: ApiServer, runner: web.AppRunner, caches: asyncio.Task[None], url: str) -> None:
        self.server, self.runner, self.caches, self.url = server, runner, caches, url

    async def stop(self) -> None:
        await self.runner.cleanup()
        self.caches.cancel()
        await asyncio.gather(self.caches, return_exceptions=True)


async def start(store: EtcdStore, **kw: object) -> Running:
    server = ApiServer(store, keyring=KEYRING, **kw)  # type: ignore[arg-type]
    await server.ensure_default_namespace()
    caches = asyncio.create_task(server.run_caches())
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    for cache in server.caches.values():
        await cache.wait_ready()
    await server.tokens.index.ready.wait()
    return Running(server, runner, caches, f"http://127.0.0.1:{port}")


async def creates(api: Running, token: str, *, n: int, prefix: str, plural: str = "containers") -> tuple[float, float]:
    """(creates/s, p99 ms) of ``n`` POSTs from CONCURRENCY clients."""
    url = f"{api.url}/namespaces/default/{plural}"
    latencies: list[float] = []
    todo = iter(range(n))
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async def client() -> None:
            for i in todo:
                body: dict[str, object] = {"metadata": {"name": f"{prefix}{i}"}}
                if plural == "containers":
                    body["spec"] = {"image": "busybox", "env": [{"name": "PAD", "value": "x" * 1500}]}
                else:
                    body["stringData"] = {"password": "x" * 1500}
                t = time.perf_counter()
                async with http.post(url, json=body) as r:
                    assert r.status == 201, await r.text()
                latencies.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
        wall = time.perf_counter() - t0
    return n / wall, pct(latencies, 0.99) * 1e3


def audit_record_cost(tmp: Path, n: int = 100_000) -> float:
    log = AuditLog(tmp / "record-cost.log")
    log.start()
    entry = {"time": "2026-11-29T21:00:00.123456Z", "requestId": "9f2c0a1b2c4d5e6f", "identity": "edit:3f9c0a1b2c4d",
             "verb": "POST", "kind": "containers", "namespace": "team-a", "name": "web", "code": 201,
             "sourceIP": "127.0.0.1", "path": "/namespaces/team-a/containers"}
    t = time.perf_counter()
    for _ in range(n):
        log.record(dict(entry))
    cost = (time.perf_counter() - t) / n * 1e6
    log.close(60)
    return cost


def seal_cost(n: int = 20_000) -> float:
    ring, value, key = Keyring.ephemeral(), b"x" * 2048, "/corral/secrets/default/s"
    t = time.perf_counter()
    for _ in range(n):
        ring.open(key, ring.seal(key, value))
    return (time.perf_counter() - t) / n * 1e6


async def revocation(store: EtcdStore, trials: int) -> list[float]:
    a, b = await start(store), await start(store)
    admin = await a.server.tokens.issue(Identity("admin"))
    out: list[float] = []
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(trials):
                async with http.post(a.url + "/tokens", json={"role": "view"},
                                     headers={"Authorization": f"Bearer {admin}"}) as r:
                    made = await r.json()
                h = {"Authorization": f"Bearer {made['token']}"}
                async with http.get(b.url + "/namespaces", headers=h) as r:
                    assert r.status == 200
                async with http.delete(a.url + f"/tokens/{made['id']}", headers={"Authorization": f"Bearer {admin}"}) as r:
                    assert r.status == 200
                t0 = time.perf_counter()
                while True:
                    async with http.get(b.url + "/namespaces", headers=h) as r:
                        if r.status == 401:
                            break
                out.append((time.perf_counter() - t0) * 1e3)
    finally:
        await a.stop()
        await b.stop()
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--creates", type=int, default=1500)
    ap.add_argument("--trials", type=int, default=20)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-security-"))
    results: dict[str, object] = {}
    results["audit_record_us"] = round(audit_record_cost(tmp), 2)
    results["seal_open_2kb_us"] = round(seal_cost(), 1)
    print(f"audit record(): {results['audit_record_us']} µs on the caller; seal+open 2 KB: {results['seal_open_2kb_us']} µs")
    etcd = EmbeddedEtcd(data_dir=tmp / "etcd")
    await etcd.start()
    store = EtcdStore([etcd.endpoint])
    try:
        runs: dict[str, list[tuple[float, float]]] = {"off": [], "on": [], "secrets": []}
        for rnd in range(args.rounds):
            for mode in ("off", "on"):
                log = AuditLog(tmp / f"audit-{rnd}.log") if mode == "on" else None
                api = await start(store, audit_log=log)
                token = await api.server.tokens.issue(Identity("admin"))
                runs[mode].append(await creates(api, token, n=args.creates, prefix=f"{mode}{rnd}-"))
                if mode == "on":
                    api2 = api
                    runs["secrets"].append(await creates(api2, token, n=args.creates, prefix=f"s{rnd}-",
                                                         plural="secrets"))
                await api.stop()
                if log is not None:
                    log.close()
            print(f"round {rnd + 1}: " + ", ".join(f"{k} {v[-1][0]:.0f}/s p99 {v[-1][1]:.1f} ms"
                                                    for k, v in runs.items() if v))
        for k, v in runs.items():
            results[f"creates_{k}"] = {"per_s_median": round(statistics.median(r for r, _ in v)),
                                       "p99_ms_median": round(statistics.median(p for _, p in v), 1),
                                       "rounds": [[round(r), round(p, 1)] for r, p in v]}
        lat = await revocation(store, args.trials)
        results["revocation_ms"] = {"median": round(statistics.median(lat), 1), "max": round(max(lat), 1),
                                    "trials": len(lat)}
    finally:
        await store.close()
        await etcd.stop()
    print(json.dumps(results, indent=2))
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_security.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
