"""POST → Running as a watch sees it, a burst of 100 beside ``ctr run -d`` x100, and a delete of 100
containers that ignore SIGTERM — on one host with a warm image.

Starts ``corral serve --all`` (embedded etcd and containerd, one agent) as a child process under a
temporary data dir with its own bridge and pod subnet, imports the busybox test image on the node,
then measures from this process:

- one container at a time: the time from the POST to the watch event that shows it Running
  (p50/p99 over N, default 30), each deleted before the next;
- a burst of 100 created at once: the time until the last is Running, with where the time went per
  container (from the watch: POST answered = API, ``spec.node`` set = scheduled, ``status.startedAt``
  = the task started, Running seen), and — the floor, in the same run — ``ctr run -d`` x100 in
  parallel on the same containerd (its own containerd namespace, no network), once before and once
  after the burst;
- a delete of 100 containers running ``sh -c 'trap "" TERM; sleep 1000'`` with a 10 s grace: from the
  DELETEs to the watch showing each one gone (the floor is the grace period itself, plus what ctr
  takes to tear 100 down at once: ``ctr task delete --force`` and ``ctr containers rm`` of the ctr
  burst's containers, in parallel, timed in the same run).

Prints the figures (with the load average) and writes benchmarks/results/bench_e2e.json. Traffic
stays on 127.0.0.1 and the containers it created.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.fixtures

from bench_runtime_start import clean as clean_ctr
from harness import pct, trust, wait_file, wait_node

from corral.api.client import ApiClient
from corral.model.lifecycle import parse_time
from corral.model.resources import Container, ContainerSpec, ObjectMeta
from corral.network.masq import remove_subnet_masquerade
from corral.runtime.archive import import_archive
from corral.runtime.client import Client
from corral.runtime.imagebuild import build_busybox_image
from corral.runtime.logpipes import LogCollector
from corral.store.embedded import free_port
from tests.fixtures.cluster import TEST_CLUSTER_CIDR, private_network

IMAGE = "corral.test/busybox:1"
CTR_NAMESPACE = "bench-ctr"  # the floor's containers live apart from the agent's
GRACE = 10


def sleeper(name: str) -> Container:
    return Container(metadata=ObjectMeta(name=name, labels={"bench": "e2e"}),
                     spec=ContainerSpec(image=IMAGE, command=["sleep", "3600"], termination_grace_period_seconds=0))


def stubborn(name: str) -> Container:
    return Container(metadata=ObjectMeta(name=name, labels={"bench": "e2e"}),
                     spec=ContainerSpec(image=IMAGE, command=["sh", "-c", "trap '' TERM; sleep 1000"],
                                        termination_grace_period_seconds=GRACE))


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def clear(api: ApiClient) -> None:
    items, _ = await api.list(Container, label_selector="bench=e2e")
    await asyncio.gather(*(api.delete(Container, c.metadata.name, grace_period=0) for c in items))
    while (await api.list(Container, label_selector="bench=e2e"))[0]:
        await asyncio.sleep(0.1)


async def measure(api: ApiClient, names: list[str], make: Callable[[str], Container] = sleeper,
                  stages: dict[str, dict[str, float]] | None = None) -> dict[str, float]:
    """Create ``names`` at once; seconds from each POST to the watch event showing it Running. With
    ``stages``, per container the seconds from its POST to: the API's answer (``api``), the watch
    showing it bound (``scheduled``), the task started by the agent's clock (``started``), Running."""
    _, rv = await api.list(Container, label_selector="bench=e2e")
    sent: dict[str, float] = {}
    sent_wall: dict[str, float] = {}
    took: dict[str, float] = {}
    done = asyncio.Event()

    async def watch() -> None:
        async for ev in api.watch(Container, resource_version=rv, label_selector="bench=e2e"):
            c = ev.object
            n = c.metadata.name
            if n not in sent:
                continue
            if stages is not None and c.spec.node and "scheduled" not in stages.setdefault(n, {}):
                stages[n]["scheduled"] = time.perf_counter() - sent[n]
            if c.status.phase == "Running" and n not in took:
                took[n] = time.perf_counter() - sent[n]
                if stages is not None and (started := parse_time(c.status.started_at)) is not None:
                    stages[n]["started"] = started.timestamp() - sent_wall[n]
                if len(took) == len(names):
                    done.set()
                    return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.2)

    async def post(n: str) -> None:
        sent[n] = time.perf_counter()
        sent_wall[n] = time.time()
        await api.create(make(n))
        if stages is not None:
            stages.setdefault(n, {})["api"] = time.perf_counter() - sent[n]

    await asyncio.gather(*(post(n) for n in names))
    await asyncio.wait_for(done.wait(), 300)
    watcher.cancel()
    if stages is not None:
        for n, t in took.items():
            stages[n]["running"] = t
    return took


async def delete_all(api: ApiClient, names: list[str]) -> list[float]:
    """DELETE ``names`` at once (their own grace period); per container the seconds until the watch
    showed it gone, in the order they went."""
    _, rv = await api.list(Container, label_selector="bench=e2e")
    gone: dict[str, float] = {}
    done = asyncio.Event()
    start = 0.0

    async def watch() -> None:
        async for ev in api.watch(Container, resource_version=rv, label_selector="bench=e2e"):
            if ev.type == "DELETED" and ev.object.metadata.name in names:
                gone[ev.object.metadata.name] = time.perf_counter() - start
                if len(gone) == len(names):
                    done.set()
                    return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.2)
    start = time.perf_counter()
    await asyncio.gather(*(api.delete(Container, n) for n in names))
    await asyncio.wait_for(done.wait(), 600)
    watcher.cancel()
    return sorted(gone.values())


async def ctr_burst(socket: str, n: int) -> tuple[float, float]:
    """``ctr run -d`` x n in parallel on the node's containerd (namespace CTR_NAMESPACE); then, also in
    parallel, ``ctr task delete --force`` and ``ctr containers rm`` of each (SIGKILL, runc delete, the
    shim's exit, the snapshot's removal: a teardown without network). Seconds for each."""
    async def ctr(*args: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            "ctr", "-a", socket, "-n", CTR_NAMESPACE, *args, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"ctr {args[0]} failed: {err.decode().strip()}")

    async def remove(i: int) -> None:
        await ctr("task", "delete", "--force", f"ctr-{i}")
        await ctr("containers", "rm", f"ctr-{i}")

    start = time.perf_counter()
    await asyncio.gather(*(ctr("run", "-d", "--label", "bench=1", IMAGE, f"ctr-{i}", "sleep", "3600")
                           for i in range(n)))
    took = time.perf_counter() - start
    await asyncio.sleep(1.0)
    start = time.perf_counter()
    await asyncio.gather(*(remove(i) for i in range(n)))
    removed = time.perf_counter() - start
    async with Client(socket, CTR_NAMESPACE) as client:
        await clean_ctr(client)  # anything a failed removal left
    return took, removed


def stage_summary(stages: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """p50 and max of each stage's share: API, API → scheduled, scheduled → started, started → Running."""
    spans: dict[str, list[float]] = {"API (POST answered)": [], "scheduling (answered → bound)": [],
                                     "agent (bound → task started)": [], "status (started → Running seen)": []}
    for t in stages.values():
        if not {"api", "scheduled", "started", "running"} <= t.keys():
            continue
        spans["API (POST answered)"].append(t["api"])
        spans["scheduling (answered → bound)"].append(t["scheduled"] - t["api"])
        spans["agent (bound → task started)"].append(t["started"] - t["scheduled"])
        spans["status (started → Running seen)"].append(t["running"] - t["started"])
    return {k: {"p50_s": round(pct(v, 0.5), 3), "max_s": round(max(v), 3) if v else float("nan")}
            for k, v in spans.items()}


N_SINGLE = int(os.environ.get("BENCH_SINGLE", "30"))
BURST = int(os.environ.get("BENCH_BURST", "100"))


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="corral-e2e-") as tmp:
        data = Path(tmp)
        port = free_port()
        bridge, subnet = private_network("crb")  # a /24: room for the burst
        with open(data / "serve.log", "wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "corral.cli.main", "serve", "--all", "--data-dir", str(data),
                "--listen", f"127.0.0.1:{port}", "--node-name", "bench", "--bridge", bridge, "--nft-table", bridge,
                "--pod-cidr", subnet, "--cluster-cidr", TEST_CLUSTER_CIDR,
                "--containerd-socket", str(data / "no-such.sock"),
                stdout=asyncio.subprocess.DEVNULL, stderr=log, env={**os.environ, "XDG_CONFIG_HOME": tmp},
            )
        try:
            r = await run(data, port)
        except BaseException:
            print((data / "serve.log").read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            await proc.wait()
            await remove_subnet_masquerade(bridge=bridge)
            await LogCollector(data / "agent").stop()  # it outlives a serve stopped with containers left
            nft = await asyncio.create_subprocess_exec("nft", "delete", "table", "inet", bridge,
                                                       stderr=asyncio.subprocess.DEVNULL)
            await nft.wait()
            ip = await asyncio.create_subprocess_exec("ip", "link", "del", bridge,
                                                      stderr=asyncio.subprocess.DEVNULL)
            await ip.wait()
    singles = sorted(r["singles"])
    p50 = statistics.median(singles)
    p99 = singles[max(0, int(len(singles) * 0.99) - 1)]
    floor = (r["ctr_before_s"] + r["ctr_after_s"]) / 2
    print(f"POST → Running (watch), one at a time over {N_SINGLE}: p50 {p50:.3f} s, p99 {p99:.3f} s"
          "   goal p50 <= 0.20 s, p99 <= 0.5 s")
    print(f"burst of {BURST} created at once: all Running after {r['burst_s']:.2f} s (load {r['burst_load']}); "
          f"ctr run -d x{BURST} in parallel: {r['ctr_before_s']:.2f} s before, {r['ctr_after_s']:.2f} s after "
          f"= {r['burst_s'] / floor:.2f}x ctr   goal <= 1.1x")
    for stage, v in r["stages"].items():
        print(f"    {stage:<34} p50 {v['p50_s']:.3f} s, max {v['max_s']:.3f} s")
    print(f"delete of {BURST} containers ignoring SIGTERM, grace {GRACE} s: all gone after {r['delete_s']:.2f} s "
          f"(load {r['delete_load']}; floor: the grace, {GRACE} s)   goal <= 12 s")
    print(f"    the first gone after {r['delete_first_s']:.2f} s, half after {r['delete_p50_s']:.2f} s; "
          f"ctr task delete --force + containers rm x{BURST} in parallel (no grace, no network): "
          f"{r['ctr_teardown_before_s']:.2f} s / {r['ctr_teardown_after_s']:.2f} s")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_e2e.json").write_text(json.dumps(
        {"single_p50_s": round(p50, 4), "single_p99_s": round(p99, 4), "burst": BURST, "burst_s": round(r["burst_s"], 3),
         "ctr_before_s": round(r["ctr_before_s"], 3), "ctr_after_s": round(r["ctr_after_s"], 3),
         "burst_vs_ctr": round(r["burst_s"] / floor, 3), "burst_stages": r["stages"], "burst_load": r["burst_load"],
         "delete_s": round(r["delete_s"], 3), "delete_first_s": round(r["delete_first_s"], 3),
         "delete_p50_s": round(r["delete_p50_s"], 3), "delete_grace_s": GRACE,
         "ctr_teardown_before_s": round(r["ctr_teardown_before_s"], 3),
         "ctr_teardown_after_s": round(r["ctr_teardown_after_s"], 3), "delete_load": r["delete_load"]},
        indent=2) + "\n")


async def run(data: Path, port: int) -> dict[str, Any]:
    await wait_file(data / "admin.token")
    socket = str(data / "containerd" / "c.sock")
    await wait_file(Path(socket))
    archive = await asyncio.to_thread(build_busybox_image, data / "busybox.tar")
    async with Client(socket) as ctr:
        await import_archive(ctr, archive)
    imported = await asyncio.create_subprocess_exec(  # the floor's copy of the image, imported by ctr itself
        "ctr", "-a", socket, "-n", CTR_NAMESPACE, "images", "import", str(archive),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await imported.communicate()
    if imported.returncode != 0:
        raise SystemExit(f"ctr images import failed: {err.decode().strip()}")
    token = (data / "admin.token").read_text().strip()
    r: dict[str, Any] = {}
    async with ApiClient(f"https://127.0.0.1:{port}", token, ssl_context=trust(data)) as api:
        await wait_node(api, "bench")
        await measure(api, ["warmup"])
        await clear(api)
        await ctr_burst(socket, 5)  # warm: ctr's first runs pay for the page cache
        singles: list[float] = []
        for i in range(N_SINGLE):
            took = await measure(api, [f"one-{i}"])
            singles.append(took[f"one-{i}"])
            await clear(api)
        r["singles"] = singles
        r["ctr_before_s"], r["ctr_teardown_before_s"] = await ctr_burst(socket, BURST)
        r["burst_load"] = loadavg()
        stages: dict[str, dict[str, float]] = {}
        start = time.perf_counter()
        await measure(api, [f"burst-{i}" for i in range(BURST)], stages=stages)
        r["burst_s"] = time.perf_counter() - start
        r["stages"] = stage_summary(stages)
        await clear(api)
        r["ctr_after_s"], r["ctr_teardown_after_s"] = await ctr_burst(socket, BURST)
        names = [f"stubborn-{i}" for i in range(BURST)]
        await measure(api, names, make=stubborn)
        await asyncio.sleep(1.0)  # their shells have set the trap
        r["delete_load"] = loadavg()
        gone = await delete_all(api, names)
        r["delete_s"], r["delete_first_s"], r["delete_p50_s"] = gone[-1], gone[0], pct(gone, 0.5)
        await clear(api)
    return r


if __name__ == "__main__":
    asyncio.run(main())
