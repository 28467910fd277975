"""Benchmark of ``runtime.pull``: the busybox test image (~1 MB layer) from a local registry.

Starts its own ``docker-registry`` on 127.0.0.1 (the test fixture's runner, image pushed with skopeo)
and its own ``EmbeddedContainerd``, both in a temporary directory that is removed afterwards. Each
cold run uses a fresh ``Puller`` and starts from nothing: before it the image record is removed with
a synchronous GC, and the run checks that the layer blob is really gone. Prints p50/min/max of cold
pulls (resolve + fetch + unpack + record) and of no-op re-pulls; asserts nothing. Goal: cold p50 ≤ 0.3 s.

Run: ``.venv/bin/python benchmarks/bench_pull.py [--runs 10] [--json benchmarks/results/bench_pull.json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.fixtures.registry

from corral.runtime.client import Client
from corral.runtime.content import info
from corral.runtime.embedded import EmbeddedContainerd
from corral.runtime.imagebuild import build_busybox_image
from corral.runtime.images import remove_image
from corral.runtime.pull import Puller
from tests.fixtures.registry import push_oci_archive, run_registry


def _summary(label: str, times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    return f"{label}: n={len(ms)} p50={statistics.median(ms):.1f} ms min={ms[0]:.1f} ms max={ms[-1]:.1f} ms"


async def bench(runs: int, *, json_out: Path | None) -> None:
    base = Path(tempfile.mkdtemp(prefix="corral-bench-pull-"))
    try:
        archive = await asyncio.to_thread(build_busybox_image, base / "busybox.tar")
        size = archive.stat().st_size
        (base / "registry").mkdir()
        async with run_registry(base / "registry") as registry:
            await push_oci_archive(registry, archive, ref=registry.ref)
            daemon = EmbeddedContainerd(base / "containerd")
            await daemon.start()
            try:
                async with Client(daemon.socket) as client:
                    cold, warm = [], []
                    for _ in range(runs):
                        puller = Puller(client)
                        t0 = time.perf_counter()
                        image = await puller.pull(registry.ref)
                        cold.append(time.perf_counter() - t0)
                        assert puller.stats.blobs_fetched == 1 + len(image.layers), puller.stats
                        t0 = time.perf_counter()
                        await puller.pull(registry.ref)
                        warm.append(time.perf_counter() - t0)
                        await remove_image(client, image.name, sync=True)
                        assert await info(client, image.layers[0].digest) is None, "GC kept the layer"
                    layer_kib = sum(layer.size for layer in image.layers) / 1024
                    print(f"image {registry.ref}: archive {size / 1024:.0f} KiB, layers {layer_kib:.0f} KiB")
                    print(_summary("cold pull (resolve+fetch+unpack+record)", cold))
                    print(_summary("no-op re-pull (one manifest GET)", warm))
                    print(f"goal cold p50 <= 300 ms: {'met' if statistics.median(cold) <= 0.3 else 'MISSED'}")
                    if json_out is not None:
                        figures = {
                            "layers_kib": round(layer_kib),
                            "cold_pull_p50_ms": round(statistics.median(cold) * 1000, 1),
                            "cold_pull_min_ms": round(min(cold) * 1000, 1),
                            "cold_pull_max_ms": round(max(cold) * 1000, 1),
                            "noop_pull_p50_ms": round(statistics.median(warm) * 1000, 1),
                            "runs": runs,
                        }
                        json_out.write_text(json.dumps(figures, indent=2) + "\n")
            finally:
                await daemon.stop(cleanup=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    asyncio.run(bench(args.runs, json_out=args.json))


if __name__ == "__main__":
    main()
