"""Container start latency: corral's runtime handles against ``ctr run -d`` on the same containerd.

Starts a private containerd (``EmbeddedContainerd`` in a temp dir), imports the busybox test image,
then measures, for ``sleep 600`` containers:

- sequential: create (snapshot + record) + task create + start, until Tasks.Start returns (the
  process runs), over ``N_SEQ`` containers: p50 / p99 in ms;
- concurrent: ``N_PAR`` such starts at once: total seconds (the median of the rounds).

The variants run interleaved, in ``ROUNDS`` rounds (each a third of the sequential starts and one
concurrent batch), so that a change in the machine's load weighs on each alike.

Each is run for corral with null IO, corral with FIFO logs (what the agent does: the container's
stdout/stderr FIFOs made and held, read by the node's one log collector — no process per
container), and ``ctr run -d`` (the floor; ctr appears only in this benchmark). Everything is
deleted between rounds and at the end. Prints the figures and writes them to
benchmarks/results/bench_runtime_start.json.

Run: ``.venv/bin/python benchmarks/bench_runtime_start.py [N_SEQ] [N_PAR]``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from harness import pct

from corral.runtime import logpipes
from corral.runtime.archive import import_archive
from corral.runtime.client import Client
from corral.runtime.containers import create_container, delete_container, list_containers
from corral.runtime.embedded import EmbeddedContainerd
from corral.runtime.imagebuild import build_busybox_image
from corral.runtime.images import Image
from corral.runtime.spec import build_spec
from corral.runtime.tasks import Stdio, create_task

NAMESPACE = "corral"
RESULTS = Path(__file__).parent / "results" / "bench_runtime_start.json"
ROUNDS = 3


async def corral_start(client: Client, image: Image, cid: str, stdio: Stdio | None = None) -> None:
    spec = build_spec(container_id=cid, image_config=image.config, command=["sleep", "600"])
    await create_container(client, id=cid, image=image, spec=spec, labels={"bench": "1"})
    task = await create_task(client, cid, stdio=stdio)
    exit_ = await task.start()
    await exit_.cancel()  # the benchmark does not wait for the exit


async def ctr_start(socket: str, image: Image, cid: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "ctr", "-a", socket, "-n", NAMESPACE, "run", "-d", "--label", "bench=1", image.name, cid, "sleep", "600",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"ctr run failed: {err.decode().strip()}")


async def clean(client: Client) -> None:
    left = await list_containers(client, {"bench": "1"})
    sem = asyncio.Semaphore(16)

    async def one(cid: str) -> None:
        async with sem:
            await delete_container(client, cid)

    await asyncio.gather(*(one(c.id) for c in left))


async def measure_round(
    name: str, start: Callable[[str], Awaitable[None]], client: Client, *, n_seq: int, n_par: int, round_: int
) -> tuple[list[float], float]:
    """One round of one variant: ``n_seq`` starts one after another (their ms), then ``n_par`` at once (s)."""
    latencies: list[float] = []
    for i in range(n_seq):
        t0 = time.perf_counter()
        await start(f"{name}-r{round_}-s{i}")
        latencies.append((time.perf_counter() - t0) * 1000)
    await clean(client)
    t0 = time.perf_counter()
    await asyncio.gather(*(start(f"{name}-r{round_}-p{i}") for i in range(n_par)))
    total = time.perf_counter() - t0
    await clean(client)
    return latencies, total


def summary(name: str, latencies: list[float], totals: list[float], n_par: int) -> dict[str, float]:
    out = {
        "p50_ms": statistics.median(latencies),
        "p99_ms": pct(latencies, 0.99),
        "mean_ms": statistics.fmean(latencies),
        f"parallel_{n_par}_s": statistics.median(totals),
    }
    print(
        f"{name:>18}: sequential p50 {out['p50_ms']:6.1f} ms  p99 {out['p99_ms']:6.1f} ms"
        f"  | {n_par} concurrent: {out[f'parallel_{n_par}_s']:5.2f} s (median of {len(totals)}: "
        + ", ".join(f"{t:.2f}" for t in totals) + ")",
        flush=True,
    )
    return out


async def main(n_seq: int, n_par: int) -> None:
    if shutil.which("ctr") is None or shutil.which("containerd") is None:
        raise SystemExit("containerd/ctr missing: run scripts/install-deps.sh")
    base = Path(tempfile.mkdtemp(prefix="corral-bench-rt-"))
    daemon = EmbeddedContainerd(base / "containerd")
    await daemon.start()
    try:
        async with Client(daemon.socket, NAMESPACE) as client:
            archive = await asyncio.to_thread(build_busybox_image, base / "busybox.tar")
            (image,) = await import_archive(client, archive)
            collector = logpipes.LogCollector(base / "node")
            await collector.start()
            reads = logpipes.ReadEnds()

            async def with_fifo_logs(cid: str) -> None:
                """What the agent does for a container's output: its log dir and FIFOs, held; then the start."""
                (base / "node" / "logs" / cid).mkdir(parents=True, exist_ok=True)
                fifos = logpipes.ensure(base / "node", cid)
                reads.hold(cid, fifos)
                await corral_start(client, image, cid, Stdio(str(fifos[0]), str(fifos[1])))

            try:
                # warm up: the first shim and runc starts pay for page cache
                await with_fifo_logs("warm-1")
                await ctr_start(daemon.socket, image, "warm-2")
                await clean(client)
                variants: dict[str, Callable[[str], Awaitable[None]]] = {
                    "ctr run -d": lambda cid: ctr_start(daemon.socket, image, cid),
                    "corral null IO": lambda cid: corral_start(client, image, cid),
                    "corral + FIFO logs": with_fifo_logs,
                }
                # rounds interleave the variants, so a machine whose load changes meanwhile weighs on each alike
                latencies: dict[str, list[float]] = {name: [] for name in variants}
                totals: dict[str, list[float]] = {name: [] for name in variants}
                for round_ in range(ROUNDS):
                    for index, (name, start) in enumerate(variants.items()):
                        seq, total = await measure_round(f"v{index}", start, client,
                                                         n_seq=n_seq // ROUNDS, n_par=n_par, round_=round_)
                        latencies[name] += seq
                        totals[name].append(total)
                results = {name: summary(name, latencies[name], totals[name], n_par) for name in variants}
            finally:
                await clean(client)
                reads.release_all()
                await collector.stop()
        floor = results["ctr run -d"]
        for name in ("corral null IO", "corral + FIFO logs"):
            r = results[name]
            print(
                f"{name}: p50 {r['p50_ms'] / floor['p50_ms']:.2f}x ctr, "
                f"{n_par} concurrent {r[f'parallel_{n_par}_s'] / floor[f'parallel_{n_par}_s']:.2f}x ctr"
            )
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({"n_seq": n_seq, "n_par": n_par, "results": results}, indent=2))
    finally:
        await daemon.stop(cleanup=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    asyncio.run(main(*(args + [50, 100][len(args) :])))
