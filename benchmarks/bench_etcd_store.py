"""Benchmark of EtcdStore: creates/s from 64 concurrent tasks, sequential latency p50/p99, and more.

Also a 1,280-put batch, a full list and a watch replay. Starts its own EmbeddedEtcd in a temporary directory (stopped and removed afterwards) and prints
its figures; it asserts nothing. The watch replay reads history that is already written: etcd
feeds such an unsynced watcher about 1,000 revisions per 100 ms, so that figure is etcd's pace,
not the client's (a live watch gets each event as it is committed). Run: ``.venv/bin/python benchmarks/bench_etcd_store.py [--n 20000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

from harness import pct

from corral.store.base import Put
from corral.store.embedded import EmbeddedEtcd
from corral.store.etcd import EtcdStore


async def concurrent_creates(store: EtcdStore, *, n: int, tasks: int) -> float:
    per_task = n // tasks

    async def worker(t: int) -> None:
        for i in range(per_task):
            await store.create(f"/bench/conc/{t}/{i}", b'{"spec": {"image": "busybox"}}')

    start = time.perf_counter()
    await asyncio.gather(*(worker(t) for t in range(tasks)))
    return per_task * tasks / (time.perf_counter() - start)


async def sequential(store: EtcdStore, *, n: int) -> tuple[list[float], list[float]]:
    creates, updates = [], []
    for i in range(n):
        t0 = time.perf_counter()
        rev = await store.create(f"/bench/seq/{i}", b"x")
        t1 = time.perf_counter()
        await store.update(f"/bench/seq/{i}", b"y", expected_revision=rev)
        t2 = time.perf_counter()
        creates.append((t1 - t0) * 1000)
        updates.append((t2 - t1) * 1000)
    return creates, updates


async def main(n: int, tasks: int) -> None:
    base = Path(tempfile.mkdtemp(prefix="bench-etcd-"))
    etcd = EmbeddedEtcd(data_dir=base / "data")
    await etcd.start()
    store = EtcdStore([etcd.endpoint])
    try:
        first = await store.create("/bench/warmup", b"")
        rate = await concurrent_creates(store, n=n, tasks=tasks)
        print(f"creates/s, {tasks} concurrent tasks, {n} keys: {rate:,.0f}")
        creates, updates = await sequential(store, n=2000)
        print(f"sequential create: p50 {pct(creates, 0.5):.2f} ms  p99 {pct(creates, 0.99):.2f} ms")
        print(f"sequential update (CAS): p50 {pct(updates, 0.5):.2f} ms  p99 {pct(updates, 0.99):.2f} ms")
        start = time.perf_counter()
        results = await store.batch([Put(f"/bench/batch/{i}", b"x") for i in range(1280)])
        took = time.perf_counter() - start
        print(f"batch of 1280 creates: {took * 1000:.0f} ms ({len(results) / took:,.0f} puts/s)")
        start = time.perf_counter()
        page = await store.list("/bench/conc/")
        print(f"list of {len(page.items)} keys: {(time.perf_counter() - start) * 1000:.0f} ms")
        start = time.perf_counter()
        seen = 0
        async with store.watch("/bench/conc/", from_revision=first) as watch:
            async for _ in watch:
                seen += 1
                if seen == len(page.items):
                    break
        took = time.perf_counter() - start
        print(f"watch replay of {seen} events: {took * 1000:.0f} ms ({seen / took:,.0f} events/s)")
    finally:
        await store.close()
        await etcd.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--tasks", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.tasks))
