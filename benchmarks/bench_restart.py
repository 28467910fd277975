"""Restarts after crashes, on one host: ``serve --all`` SIGKILLed with N containers, and its embedded etcd SIGKILLed.

Starts ``corral serve --all`` (embedded etcd and containerd, one agent) as a child process under a
temporary data dir with its own bridge, pod subnet and nft table, imports the busybox test image on
the node, creates N sleeping containers (default 100, ``BENCH_RESTART_N``) and waits until they run.
Then:

- **serve --all killed**: SIGKILL the serve process (its etcd, containerd and leader die with it),
  start it again, and time until it has converged: the API answers, the new agent has registered,
  and every one of the N is Running with exactly one running containerd task, the same task as
  before the kill (adopted, nothing restarted or duplicated). Repeated ``BENCH_RESTART_TRIALS`` times (default 3).
- **embedded etcd killed**: SIGKILL the etcd child alone and time until ``/readyz`` answers 200 and
  a list succeeds; afterwards every container still runs the same task. Repeated 5 times, 11 s apart
  (the supervisor's back-off starts over after 10 s up; closer crashes wait longer, by design).

Prints the figures (goals from issue 15: converged <= 10 s; API back <= 5 s) and writes
benchmarks/results/bench_restart.json. Traffic stays on 127.0.0.1.
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

import aiohttp
from harness import wait_file, wait_node

from corral.api.client import ApiClient
from corral.cli.connection import client_from_config
from corral.model.resources import Container, ContainerSpec, ObjectMeta
from corral.runtime.archive import import_archive
from corral.runtime.client import Client
from corral.runtime.containers import list_containers
from corral.runtime.embedded import EmbeddedContainerd
from corral.runtime.imagebuild import build_busybox_image
from corral.runtime.tasks import Task
from corral.store.embedded import free_port
from tests.fixtures.cluster import TEST_CLUSTER_CIDR, Worker, private_network, scrub

IMAGE = "corral.test/busybox:1"
N = int(os.environ.get("BENCH_RESTART_N", "100"))
TRIALS = int(os.environ.get("BENCH_RESTART_TRIALS", "3"))
ETCD_TRIALS = 5


def sleeper(name: str) -> Container:
    return Container(metadata=ObjectMeta(name=name, labels={"bench": "restart"}),
                     spec=ContainerSpec(image=IMAGE, command=["sleep", "3600"], termination_grace_period_seconds=0))


class Serve:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = free_port()
        self.bridge, self.subnet = private_network("crr")
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with open(self.data / "serve.log", "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "corral.cli.main", "serve", "--all", "--data-dir", str(self.data),
                "--listen", f"127.0.0.1:{self.port}", "--node-name", "bench", "--bridge", self.bridge,
                "--nft-table", self.bridge, "--pod-cidr", self.subnet, "--cluster-cidr", TEST_CLUSTER_CIDR,
                "--containerd-socket", str(self.data / "no-such.sock"),
                stdout=asyncio.subprocess.DEVNULL, stderr=log,
                env={**os.environ, "XDG_CONFIG_HOME": str(self.data / "xdg")},
            )

    def api(self) -> ApiClient:
        return client_from_config(self.data / "config.json")  # its server, admin token and CA

    @property
    def socket(self) -> str:
        return EmbeddedContainerd(self.data / "containerd").socket


async def tasks_by_name(socket: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    async with Client(socket) as client:
        for info in await list_containers(client, {"corral/node": "bench"}):
            try:
                if (await Task(client, info.id).status()).state != "running":
                    continue
            except Exception:
                continue
            out.setdefault(info.labels["corral/name"], []).append(info.id)
    return out


async def converged(serve: Serve, names: list[str], before: dict[str, list[str]] | None) -> dict[str, list[str]]:
    """Poll until every name is Running once in the API and in containerd; the tasks by name."""
    while True:
        try:
            async with serve.api() as api:
                items, _ = await api.list(Container, label_selector="bench=restart")
            if len(items) == len(names) and all(c.status.phase == "Running" for c in items):
                tasks = await tasks_by_name(serve.socket)
                if sorted(tasks) == sorted(names) and all(len(v) == 1 for v in tasks.values()):
                    if before is not None and tasks != before:
                        raise SystemExit(f"tasks changed across the restart: {len(tasks)} names")
                    return tasks
        except Exception:  # not up yet, or mid-restart: poll again
            pass
        await asyncio.sleep(0.05)


async def api_back(serve: Serve) -> None:
    async with serve.api() as api:
        while True:
            try:
                async with api.session().get(f"{api.server}/readyz", timeout=aiohttp.ClientTimeout(total=1),
                                             ssl=api.ssl_option) as r:
                    if r.status == 200:
                        await api.list(Container, label_selector="bench=restart")
                        return
            except Exception:
                pass
            await asyncio.sleep(0.02)


async def run(serve: Serve) -> dict[str, object]:
    await wait_file(serve.data / "admin.token")
    await wait_file(serve.data / "containerd" / "c.sock")
    archive = await asyncio.to_thread(build_busybox_image, serve.data / "busybox.tar")
    async with Client(serve.socket) as ctr:
        await import_archive(ctr, archive)
    names = [f"r-{i:03d}" for i in range(N)]
    async with serve.api() as api:
        await wait_node(api, "bench")
        for i in range(0, N, 20):
            await asyncio.gather(*(api.create(sleeper(n)) for n in names[i:i + 20]))
    tasks = await asyncio.wait_for(converged(serve, names, None), 300)

    restarts: list[float] = []
    for _ in range(TRIALS):
        assert serve.proc is not None
        serve.proc.send_signal(signal.SIGKILL)
        await serve.proc.wait()
        started = time.perf_counter()
        back = (serve.data / "serve.log").read_text(errors="replace").count("node bench is back")
        await serve.start()
        await asyncio.wait_for(converged(serve, names, tasks), 120)
        while (serve.data / "serve.log").read_text(errors="replace").count("node bench is back") <= back:
            await asyncio.sleep(0.05)  # and the new agent has registered (the API's status may be the old one's)
        restarts.append(time.perf_counter() - started)
        print(f"serve --all SIGKILLed with {N} containers: converged {restarts[-1]:.2f} s after the start")

    etcd_back: list[float] = []
    for _ in range(ETCD_TRIALS):
        pid = int((serve.data / "etcd.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        killed = time.perf_counter()
        await asyncio.wait_for(api_back(serve), 60)
        etcd_back.append(time.perf_counter() - killed)
        print(f"embedded etcd SIGKILLed: API answering again after {etcd_back[-1]:.2f} s")
        await asyncio.sleep(11)  # independent crashes: the supervisor's back-off starts over after 10 s up
    await asyncio.sleep(6)  # past the fence: nothing was fenced or released meanwhile
    if await tasks_by_name(serve.socket) != tasks:
        raise SystemExit("containers changed after the etcd kills")
    return {"containers": N, "restart_converged_s": [round(x, 3) for x in restarts],
            "etcd_api_back_s": [round(x, 3) for x in etcd_back]}


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="corral-restart-") as tmp:
        serve = Serve(Path(tmp))
        await serve.start()
        try:
            result = await run(serve)
        except BaseException:
            print((serve.data / "serve.log").read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            if serve.proc is not None and serve.proc.returncode is None:
                serve.proc.send_signal(signal.SIGTERM)
                await serve.proc.wait()
            ctrd = EmbeddedContainerd(serve.data / "containerd")  # the containers go with the benchmark
            await ctrd.start()
            await scrub(Worker(name="bench", data_dir=serve.data, containerd=ctrd, bridge=serve.bridge,
                               pod_cidr=serve.subnet, args=[], log=serve.data / "serve.log"))
            await ctrd.stop(cleanup=True)
    restarts = result["restart_converged_s"]
    backs = result["etcd_api_back_s"]
    assert isinstance(restarts, list) and isinstance(backs, list)
    print(f"restart after SIGKILL of serve --all with {N} containers: converged p50 {statistics.median(restarts):.2f} s, "
          f"max {max(restarts):.2f} s   goal <= 10 s, nothing duplicated")
    print(f"killed embedded etcd: API back p50 {statistics.median(backs):.2f} s, max {max(backs):.2f} s   goal <= 5 s")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_restart.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
