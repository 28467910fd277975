"""The agent's own footprint, and the node's memory per container: a real worker running 30 real containers, idle.

Starts ``corral serve --role=control`` and ``corral serve --role=worker`` (with its embedded
containerd) as child processes under a temporary directory, imports the busybox test image on the
node, creates 30 sleeping containers, waits until all are Running, then measures

- the agent process alone (not containerd, shims or the log collector): its resident memory, and
  its CPU over an idle minute (heartbeats, watch, periodic resync);
- the node's memory per running container: each container's runc shim (the floor: what containerd
  itself costs a container) plus its share of the node's one log collector, as RSS and as PSS
  (``smaps_rollup``: shared pages divided among the processes sharing them, what the node really
  pays). Before the collector, a Python log shipper per container added ~10 MiB RSS each.

Prints figures and writes benchmarks/results/bench_agent.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.fixtures

from harness import cpu_seconds, rss_mib, trust, wait_file, wait_node

from corral.api.client import ApiClient
from corral.model.resources import Container, ContainerSpec, ObjectMeta
from corral.network.masq import remove_subnet_masquerade
from corral.network.nftables import nft_command
from corral.runtime.archive import import_archive
from corral.runtime.client import Client
from corral.runtime.imagebuild import build_busybox_image
from corral.store.embedded import free_port
from tests.fixtures.cluster import TEST_CLUSTER_CIDR, private_network

COUNT = int(os.environ.get("BENCH_CONTAINERS", "30"))
SHIM = "containerd-shim-runc-v2"


def pss_mib(pid: int) -> float:
    """Proportional set size (shared pages divided among their sharers), in MiB."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def shims_of(containerd_socket: Path) -> list[int]:
    """The runc shims of the containerd at ``containerd_socket`` (one per running container)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(SHIM.encode()) and str(containerd_socket).encode() in argv:
                pids.append(int(entry.name))
    return pids


def node_memory(containerd_socket: Path, collector_pid: int, count: int) -> dict[str, float]:
    """Per running container, MiB: the shim alone, and the shim plus a share of the log collector."""
    shims = shims_of(containerd_socket)
    if len(shims) != count:
        raise RuntimeError(f"{len(shims)} shims for {count} containers")
    shim_rss = sum(rss_mib(p) for p in shims) / count
    shim_pss = sum(pss_mib(p) for p in shims) / count
    collector_rss, collector_pss = rss_mib(collector_pid), pss_mib(collector_pid)
    return {"shim_rss_mib": round(shim_rss, 2), "shim_pss_mib": round(shim_pss, 2),
            "collector_rss_mib": round(collector_rss, 2), "collector_pss_mib": round(collector_pss, 2),
            "per_container_rss_mib": round(shim_rss + collector_rss / count, 2),
            "per_container_pss_mib": round(shim_pss + collector_pss / count, 2)}
IDLE = float(os.environ.get("BENCH_IDLE_SECONDS", "60"))


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="corral-agent-") as tmp:
        base = Path(tmp)
        port = free_port()
        bridge, subnet = private_network("cra")
        env = {**os.environ, "XDG_CONFIG_HOME": tmp}
        with open(base / "control.log", "wb") as log:
            control = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "corral.cli.main", "serve", "--role=control", "--data-dir", str(base / "control"),
                "--listen", f"127.0.0.1:{port}", "--cluster-cidr", TEST_CLUSTER_CIDR, stdout=log, stderr=log, env=env)
        worker = None
        try:
            await wait_file(base / "control" / "join.token")
            join = (base / "control" / "join.token").read_text().strip()
            with open(base / "worker.log", "wb") as log:
                worker = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "corral.cli.main", "serve", "--role=worker", "--server", f"https://127.0.0.1:{port}",
                    "--join-token", join, "--node-name", "footprint", "--data-dir", str(base / "worker"),
                    "--containerd-socket", str(base / "none.sock"), "--bridge", bridge, "--nft-table", bridge,
                    "--pod-cidr", subnet,
                    stdout=log, stderr=log, env=env)
            sock = base / "worker" / "containerd" / "c.sock"
            await wait_file(sock)
            archive = await asyncio.to_thread(build_busybox_image, base / "busybox.tar")
            async with Client(str(sock)) as ctr:
                await import_archive(ctr, archive)
            token = (base / "control" / "admin.token").read_text().strip()
            async with ApiClient(f"https://127.0.0.1:{port}", token, ssl_context=trust(base / "control")) as api:
                await wait_node(api, "footprint")
                await asyncio.gather(*(api.create(Container(
                    metadata=ObjectMeta(name=f"idle-{i}", labels={"bench": "agent"}),
                    spec=ContainerSpec(image="corral.test/busybox:1", command=["sleep", "3600"],
                                       termination_grace_period_seconds=0))) for i in range(COUNT)))
                while True:
                    items, _ = await api.list(Container, label_selector="bench=agent")
                    if sum(c.status.phase == "Running" for c in items) == COUNT:
                        break
                    await asyncio.sleep(0.5)
                await asyncio.sleep(5)  # let the burst's work settle
                collector = int((base / "worker" / "agent" / "logpipes" / ".collector.pid").read_text())
                memory = node_memory(sock, collector, COUNT)
                c0, t0 = cpu_seconds(worker.pid), time.monotonic()
                await asyncio.sleep(IDLE)
                idle_cpu = (cpu_seconds(worker.pid) - c0) / (time.monotonic() - t0) * 100
                rss, peak = rss_mib(worker.pid), rss_mib(worker.pid, "VmHWM")
                anon, files = rss_mib(worker.pid, "RssAnon"), rss_mib(worker.pid, "RssFile")
                load = Path("/proc/loadavg").read_text().split()[:3]
                for c in items:
                    await api.delete(Container, c.metadata.name, grace_period=0)
                while (await api.list(Container, label_selector="bench=agent"))[0]:
                    await asyncio.sleep(0.5)
        finally:
            for proc in (worker, control):
                if proc is not None and proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                    await proc.wait()
            await remove_subnet_masquerade(bridge=bridge)
            ip = await asyncio.create_subprocess_exec("ip", "link", "del", bridge, stderr=asyncio.subprocess.DEVNULL)
            await ip.wait()
            await nft_command("delete", "table", "inet", bridge)  # the agent's own (named after its bridge)
    print(f"agent with {COUNT} running containers: RSS {rss:.1f} MiB = {rss * 1.048576:.1f} MB (peak {peak:.1f} MiB; "
          f"{anon:.1f} MiB anonymous, {files:.1f} MiB file-backed: libraries), "
          f"CPU idle {idle_cpu:.2f} % of a core over {IDLE:.0f} s   goal <= 60 MB, <= 1 %   (load average {' '.join(load)})")
    m = memory
    print(f"node memory per running container: shim + log collector share {m['per_container_rss_mib']:.2f} MiB RSS "
          f"({m['per_container_pss_mib']:.2f} MiB PSS); the shim alone (floor) {m['shim_rss_mib']:.2f} MiB RSS "
          f"({m['shim_pss_mib']:.2f} MiB PSS); the one collector {m['collector_rss_mib']:.1f} MiB RSS "
          f"({m['collector_pss_mib']:.1f} MiB PSS) for {COUNT}   goal <= shim + 1 MB")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_agent.json").write_text(json.dumps(
        {"containers": COUNT, "rss_mib": round(rss, 1), "peak_rss_mib": round(peak, 1),
         "rss_anon_mib": round(anon, 1), "rss_file_mib": round(files, 1), "load_average": load,
         "idle_cpu_percent": round(idle_cpu, 2), "idle_seconds": IDLE, "node_memory": memory}, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
