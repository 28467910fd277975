"""Benchmark of ``Network.ensure`` (netns + loopback + CNI ADD of bridge/host-local and portmap) and
``Network.remove`` (CNI DEL + netns delete), sequentially, with the real plugins.

Uses its own bridge ``crl<4 hex>``, a free 10.2xx.y.0/24 subnet, its own netns prefix and a temporary
data dir; every container is removed and the bridge deleted at the end, even on failure. Measured twice:
with a free host port mapped (bridge + portmap) and without ports (bridge only). Prints p50/p90/max; asserts nothing. A concurrent run (``--parallel N``) shows
how the plugins' iptables lock serialises.

Run: ``.venv/bin/python benchmarks/bench_network.py [--runs 20] [--parallel 0]``.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.network.conftest

from corral.network import Network, NetworkConfig, PortMapping
from corral.store.embedded import free_port
from tests.network.conftest import _free_subnet, run


def _report(label: str, seconds: list[float]) -> None:
    ms = sorted(s * 1000 for s in seconds)
    p90 = ms[max(0, int(len(ms) * 0.9) - 1)]
    print(f"{label:>20}: n={len(ms)} p50={statistics.median(ms):.0f} ms p90={p90:.0f} ms max={ms[-1]:.0f} ms")


async def main(runs: int, parallel: int) -> None:
    tag = secrets.token_hex(2)
    with tempfile.TemporaryDirectory(prefix="corral-bench-net-") as tmp:
        config = NetworkConfig(
            data_dir=Path(tmp),
            name=f"corral-bench-{tag}",
            bridge=f"crl{tag}",
            subnet=await _free_subnet(),
            netns_prefix=f"corral-bench-{tag}-",
        )
        network = Network(config)
        try:
            for with_port in (True, False):
                ensure_t: list[float] = []
                remove_t: list[float] = []
                for i in range(runs + 1):  # the first run may create the bridge; not counted
                    ports = [PortMapping(host_port=free_port(), container_port=8080)] if with_port else []
                    t0 = time.perf_counter()
                    await network.ensure(f"c{i}", ports)
                    t1 = time.perf_counter()
                    await network.remove(f"c{i}")
                    t2 = time.perf_counter()
                    if i:
                        ensure_t.append(t1 - t0)
                        remove_t.append(t2 - t1)
                what = "hostPort" if with_port else "no ports"
                _report(f"ensure ({what})", ensure_t)
                _report(f"remove ({what})", remove_t)
            if parallel:
                ids = [f"p{i}" for i in range(parallel)]
                t0 = time.perf_counter()
                await asyncio.gather(*(network.ensure(c) for c in ids))
                t1 = time.perf_counter()
                await asyncio.gather(*(network.remove(c) for c in ids))
                t2 = time.perf_counter()
                print(f"parallel: {parallel} ensures in {t1 - t0:.2f} s, {parallel} removes in {t2 - t1:.2f} s")
        finally:
            left = set(await network.list_attached()) | set(await network.list_netns())
            for cid in left:
                await network.remove(cid)
            await run("ip", "link", "del", config.bridge)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.parallel))
