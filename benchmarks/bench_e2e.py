"""POST → Running, as a watch sees it, on one host with a warm image.

Starts ``corral serve --all`` (embedded etcd and containerd, one agent) as a child process under a
temporary data dir with its own bridge and pod subnet, imports the busybox test image on the node,
then measures from this process:

- one container at a time: the time from the POST to the watch event that shows it Running
  (p50/p99 over N, default 30), each deleted before the next;
- a burst of 100 created at once: the time until the last is Running.

Prints the figures and writes benchmarks/results/bench_e2e.json. Traffic stays on 127.0.0.1 and
the containers it created.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.fixtures

from harness import trust, wait_file, wait_node

from corral.api.client import ApiClient
from corral.model.resources import Container, ContainerSpec, ObjectMeta
from corral.network.masq import remove_subnet_masquerade
from corral.runtime.archive import import_archive
from corral.runtime.client import Client
from corral.runtime.imagebuild import build_busybox_image
from corral.store.embedded import free_port
from tests.fixtures.cluster import TEST_CLUSTER_CIDR, private_network

IMAGE = "corral.test/busybox:1"


def sleeper(name: str) -> Container:
    return Container(metadata=ObjectMeta(name=name, labels={"bench": "e2e"}),
                     spec=ContainerSpec(image=IMAGE, command=["sleep", "3600"], termination_grace_period_seconds=0))


async def clear(api: ApiClient) -> None:
    items, _ = await api.list(Container, label_selector="bench=e2e")
    await asyncio.gather(*(api.delete(Container, c.metadata.name, grace_period=0) for c in items))
    while (await api.list(Container, label_selector="bench=e2e"))[0]:
        await asyncio.sleep(0.1)


async def measure(api: ApiClient, names: list[str]) -> dict[str, float]:
    """Create ``names`` at once; seconds from each POST to the watch event showing it Running."""
    _, rv = await api.list(Container, label_selector="bench=e2e")
    sent: dict[str, float] = {}
    took: dict[str, float] = {}
    done = asyncio.Event()

    async def watch() -> None:
        async for ev in api.watch(Container, resource_version=rv, label_selector="bench=e2e"):
            c = ev.object
            n = c.metadata.name
            if c.status.phase == "Running" and n in sent and n not in took:
                took[n] = time.perf_counter() - sent[n]
                if len(took) == len(names):
                    done.set()
                    return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.2)

    async def post(n: str) -> None:
        sent[n] = time.perf_counter()
        await api.create(sleeper(n))

    await asyncio.gather(*(post(n) for n in names))
    await asyncio.wait_for(done.wait(), 300)
    watcher.cancel()
    return took


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
                "--listen", f"127.0.0.1:{port}", "--node-name", "bench", "--bridge", bridge,
                "--pod-cidr", subnet, "--cluster-cidr", TEST_CLUSTER_CIDR,
                "--containerd-socket", str(data / "no-such.sock"),
                stdout=asyncio.subprocess.DEVNULL, stderr=log, env={**os.environ, "XDG_CONFIG_HOME": tmp},
            )
        try:
            singles, burst_s = await run(data, port)
        except BaseException:
            print((data / "serve.log").read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            await proc.wait()
            await remove_subnet_masquerade(bridge=bridge)
            ip = await asyncio.create_subprocess_exec("ip", "link", "del", bridge,
                                                      stderr=asyncio.subprocess.DEVNULL)
            await ip.wait()
    singles.sort()
    p50 = statistics.median(singles)
    p99 = singles[max(0, int(len(singles) * 0.99) - 1)]
    print(f"POST → Running (watch), one at a time over {N_SINGLE}: p50 {p50:.3f} s, p99 {p99:.3f} s"
          "   goal p50 <= 0.20 s, p99 <= 0.5 s")
    print(f"burst of {BURST} created at once: all Running after {burst_s:.2f} s   goal <= 6 s")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_e2e.json").write_text(json.dumps(
        {"single_p50_s": round(p50, 4), "single_p99_s": round(p99, 4), "burst": BURST, "burst_s": round(burst_s, 3)},
        indent=2) + "\n")


async def run(data: Path, port: int) -> tuple[list[float], float]:
    await wait_file(data / "admin.token")
    await wait_file(data / "containerd" / "c.sock")
    archive = await asyncio.to_thread(build_busybox_image, data / "busybox.tar")
    async with Client(str(data / "containerd" / "c.sock")) as ctr:
        await import_archive(ctr, archive)
    token = (data / "admin.token").read_text().strip()
    async with ApiClient(f"https://127.0.0.1:{port}", token, ssl_context=trust(data)) as api:
        await wait_node(api, "bench")
        await measure(api, ["warmup"])
        await clear(api)
        singles: list[float] = []
        for i in range(N_SINGLE):
            took = await measure(api, [f"one-{i}"])
            singles.append(took[f"one-{i}"])
            await clear(api)
        start = time.perf_counter()
        await measure(api, [f"burst-{i}" for i in range(BURST)])
        burst_s = time.perf_counter() - start
        await clear(api)
    return singles, burst_s


if __name__ == "__main__":
    asyncio.run(main())
