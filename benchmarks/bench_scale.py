"""Control-plane scale: hollow nodes x containers through the real API, as separate processes.

Three processes, like a real cluster: the control plane (``corral serve --role=control`` with its
embedded etcd, a grandchild), the simulator (``corral sim``: N hollow nodes, each with its own join,
node token, heartbeat and watch), and this script, which acts as the user. Phases:

1. idle  — every node registered and watching; control-plane CPU over ``--idle-seconds`` divided by
   the heartbeats the sim sent meanwhile = CPU per heartbeat.
2. burst — N x per containers POSTed (``--concurrency`` writers); time until the last is Running
   (seen through one admin watch), with the create rate on the way. The writers are
   ``--load-procs`` processes of their own (benchmarks/loadgen.py: raw JSON bodies over keep-alive
   HTTPS, as a load generator would send them) and the watch reads only each event's name and
   phase; ``--load-procs 0`` is the earlier way: typed ``ApiClient.create`` calls from this process,
   beside a typed watch decoding every event in the same process.
3. steady — all Running, heartbeats continuing: ``--writes`` single-object writes (PUT of a
   container's labels) from 4 writers: p50/p99 latency.
4. list  — GET of every container in one response, and paged (limit=5000); one node's list from etcd
   and from the watch cache.
Then peak RSS (VmHWM) of the control-plane processes and of etcd, and (unless ``--no-restart``):
5. restart — the control plane (API, leader, etcd) stopped and started again on its data under the
   full load; then one new container per node: time until the API is ready and until the new ones
   are Running, NodeNotReady events, and how many containers are still Running. Figures are printed and written to
benchmarks/results/bench_scale.json. Everything runs on 127.0.0.1 and stops by itself.

    .venv/bin/python benchmarks/bench_scale.py --nodes 1000 --per-node 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import resource
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from harness import cpu_seconds, pct, rss_mib, trust, wait_ready
from loadgen import request_names, run_load

from corral.api.client import ApiClient
from corral.model import errors
from corral.model.lifecycle import NODE_EVENT_NAMESPACE as EVENT_NAMESPACE
from corral.model.resources import (
    Container,
    ContainerSpec,
    Event,
    Namespace,
    ObjectMeta,
    ResourceList,
    ResourceRequirements,
)
from corral.store.embedded import free_port

RESULTS = Path(__file__).parent / "results" / "bench_scale.json"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])
NS = "scale"


def children_of(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out += [int(p) for p in (task / "children").read_text().split()]
    return out


class Child:
    def __init__(self, name: str, args: list[str], *, env: dict[str, str], log: Path) -> None:
        self.name, self.args, self.env, self.log = name, args, env, log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, *, stdout_pipe: bool = False) -> None:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "corral.cli.main", *self.args, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if stdout_pipe else out, stderr=out, env=self.env)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


class SimStats:
    """The sim's JSON lines, read as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.last: dict[str, Any] = {}
        self.ready = asyncio.Event()

    async def follow(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                data = json.loads(line)
                self.last = data
                if data.get("event") == "ready":
                    self.ready.set()

    async def fresh(self, every: float) -> dict[str, Any]:
        await asyncio.sleep(every + 0.2)
        return dict(self.last)


def container(i: int) -> Container:
    return Container(metadata=ObjectMeta(name=f"c-{i:06}", namespace=NS, labels={"app": f"a{i % 50}"}),
                     spec=ContainerSpec(image="127.0.0.1:5000/busybox:1", command=["sleep", "3600"],
                                        resources=ResourceRequirements(requests=ResourceList(cpu="10m", memory="16Mi"))))


class _Meta(msgspec.Struct):
    name: str = ""
    resourceVersion: str = ""  # the wire's name


class _Status(msgspec.Struct):
    phase: str = ""


class _Seen(msgspec.Struct):
    metadata: _Meta = msgspec.field(default_factory=_Meta)
    status: _Status = msgspec.field(default_factory=_Status)


class _Line(msgspec.Struct):
    type: str
    object: _Seen = msgspec.field(default_factory=_Seen)


_line = msgspec.json.Decoder(_Line)


async def watch_phases(api: ApiClient, rv: str, seen: Any) -> None:
    """Follow the namespace's containers from ``rv``, calling ``seen(name, phase)`` per event; reads
    only the name and phase of each (a load generator's watch, not a client's typed one)."""
    while True:
        try:
            async with api.session().get(
                    f"{api.server}/namespaces/{NS}/containers", ssl=api.ssl_option,
                    params={"watch": "1", "resourceVersion": rv},
                    timeout=aiohttp.ClientTimeout(total=None, sock_read=60)) as r:
                if r.status == 410:
                    rv = ""
                    continue
                async for raw in r.content:
                    ev = _line.decode(raw)
                    if ev.object.metadata.resourceVersion:
                        rv = ev.object.metadata.resourceVersion
                    seen(ev.object.metadata.name, ev.object.status.phase)
        except (aiohttp.ClientError, msgspec.DecodeError):
            await asyncio.sleep(0.5)


async def until_all_running(all_running: asyncio.Event, running: set[str], total: int, timeout: float,
                            watcher: asyncio.Task[None], t0: float) -> float:
    """Seconds from ``t0`` until every container is Running (or ``timeout``); the watcher is stopped."""
    try:
        await asyncio.wait_for(all_running.wait(), timeout)
    except TimeoutError:
        print(f"  only {len(running)}/{total} Running within {timeout:.0f}s", flush=True)
    t_all = time.monotonic() - t0
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    return t_all


async def burst_from_processes(api: ApiClient, admin_token: str, ca: Path, total: int, concurrency: int, procs: int,
                               timeout: float) -> dict[str, Any]:
    """The burst with the POSTs from ``procs`` load processes (``concurrency`` clients in all)."""
    tag = "p"
    wanted = set(request_names(tag, total, procs))
    running: set[str] = set()
    all_running = asyncio.Event()

    def seen(name: str, phase: str) -> None:
        if phase == "Running" and name in wanted and name not in running:
            running.add(name)
            if len(running) == total:
                all_running.set()

    _, rv = await api.list(Container, namespace=NS, page_size=1)
    watcher = asyncio.create_task(watch_phases(api, rv, seen))
    await asyncio.sleep(0.2)
    template = msgspec.json.encode(container(0)).decode().replace("c-000000", "__NAME__")
    spec = {"url": api.server, "namespace": NS, "token": admin_token, "ca": str(ca), "template": template}
    t0 = time.monotonic()
    load = asyncio.create_task(asyncio.to_thread(run_load, "api", spec, total=total, clients=concurrency,
                                                 procs=procs, tag=tag))
    result = await load
    t_created = time.monotonic() - t0  # includes the load processes' start (~1 s), so a bound
    print(f"  created {total} in {t_created:.1f}s ({result.rate:.0f}/s while sending, p50 {result.p50_ms:.1f} ms, "
          f"p99 {result.p99_ms:.1f} ms); Running so far: {len(running)}", flush=True)
    t_all = await until_all_running(all_running, running, total, timeout, watcher, t0)
    return {"created_seconds": round(t_created, 2), "create_rate_per_s": round(result.rate),
            "create_p50_ms": round(result.p50_ms, 2), "create_p99_ms": round(result.p99_ms, 2),
            "all_running_seconds": round(t_all, 2), "running": len(running), "load_processes": procs,
            "names": sorted(wanted)}


async def burst(api: ApiClient, total: int, concurrency: int, timeout: float, *, first: int = 0) -> dict[str, float]:
    running: set[str] = set()
    wanted: set[str] = set()  # only this burst's containers count (a watch starts with what exists)
    all_running = asyncio.Event()
    created_at: dict[str, float] = {}
    first_running = 0.0

    async def watch() -> None:
        nonlocal first_running
        rv = ""
        while True:
            try:
                async for ev in api.watch(Container, namespace=NS, resource_version=rv):
                    rv = ev.object.metadata.resource_version
                    name = ev.object.metadata.name
                    if ev.object.status.phase == "Running" and name in wanted and name not in running:
                        running.add(name)
                        first_running = first_running or time.monotonic()
                        if len(running) == total:
                            all_running.set()
            except errors.CorralError:
                await asyncio.sleep(0.5)

    _, rv0 = await api.list(Container, namespace=NS, page_size=1)
    watcher = asyncio.create_task(watch())
    queue = list(range(first, first + total))
    wanted.update(container(i).metadata.name for i in queue)
    t0 = time.monotonic()

    async def writer() -> None:
        while queue:
            i = queue.pop()
            c = container(i)
            for _ in range(5):
                try:
                    await api.create(c)
                    break
                except (errors.Unavailable, errors.Timeout):
                    await asyncio.sleep(0.5)
            created_at[c.metadata.name] = time.monotonic()

    await asyncio.gather(*(writer() for _ in range(concurrency)))
    t_created = time.monotonic() - t0
    print(f"  created {total} in {t_created:.1f}s ({total / t_created:.0f}/s); Running so far: {len(running)}",
          flush=True)
    t_all = await until_all_running(all_running, running, total, timeout, watcher, t0)
    del rv0
    return {"created_seconds": round(t_created, 2), "create_rate_per_s": round(total / t_created),
            "all_running_seconds": round(t_all, 2), "running": len(running)}


async def steady_writes(api: ApiClient, names: list[str], count: int) -> dict[str, float]:
    latencies: list[float] = []
    names = random.Random(3).sample(names, min(count, len(names)))

    async def writer(mine: list[str]) -> None:
        for name in mine:
            c = await api.get(Container, name, namespace=NS)
            c.metadata.labels = {**c.metadata.labels, "touched": "yes"}
            t = time.perf_counter()
            await api.update(c)
            latencies.append((time.perf_counter() - t) * 1000)

    await asyncio.gather(*(writer(names[k::4]) for k in range(4)))
    return {"writes": len(latencies), "p50_ms": round(pct(latencies, 0.5), 2),
            "p99_ms": round(pct(latencies, 0.99), 2), "mean_ms": round(statistics.fmean(latencies), 2)}


async def restart(control: Child, url: str, api: ApiClient, nodes: int, total: int, concurrency: int,
                  timeout: float, sim: SimStats) -> dict[str, Any]:
    """Stop the control plane (API, leader, etcd) and start it again on the same data; then one new
    container per node. Did any node look lost, did any container stop running, how long until the
    cluster takes work again?"""
    before = await sim.fresh(1.0)
    t0 = time.monotonic()
    await control.stop()
    stopped = time.monotonic() - t0
    await control.start()
    await wait_ready(url, timeout=120)
    ready = time.monotonic() - t0
    fresh = await burst(api, nodes, concurrency, timeout, first=total)
    after = await sim.fresh(1.0)
    items, _ = await api.list(Container, namespace=NS, any_version=True)
    running = sum(1 for c in items if c.status.phase == "Running")
    events, _ = await api.list(Event, namespace=EVENT_NAMESPACE)
    not_ready = sum(1 for e in events if e.spec.reason == "NodeNotReady")
    return {"stop_seconds": round(stopped, 2), "ready_seconds": round(ready, 2),
            "new_containers": nodes, "new_all_running_after_ready_seconds": fresh["all_running_seconds"],
            "running_after": running, "of": total + nodes, "node_not_ready_events": not_ready,
            "heartbeat_errors": after["heartbeat_errors"] - before["heartbeat_errors"],
            "released_by_sim": after["released"] - before["released"]}


async def list_all(api: ApiClient) -> dict[str, Any]:
    t = time.perf_counter()
    body = await api.request("GET", f"/namespaces/{NS}/containers", timeout=120)
    one = time.perf_counter() - t
    count = len(msgspec.json.decode(body)["items"])
    t = time.perf_counter()
    items, _ = await api.list(Container, namespace=NS, page_size=5000)
    paged = time.perf_counter() - t
    # one node's list, as its agent relists: from etcd (consistent) and from the watch cache (any version)
    node = items[0].spec.node if items else "hollow-00000"
    t = time.perf_counter()
    mine, _ = await api.list(Container, namespace=None, field_selector=f"spec.node={node}")
    node_etcd = time.perf_counter() - t
    t = time.perf_counter()
    cached, _ = await api.list(Container, namespace=None, field_selector=f"spec.node={node}", any_version=True)
    node_cache = time.perf_counter() - t
    return {"objects": count, "one_response_seconds": round(one, 3), "bytes": len(body),
            "paged_5000_typed_seconds": round(paged, 3), "paged_objects": len(items),
            "one_node_from_etcd_seconds": round(node_etcd, 4), "one_node_from_cache_seconds": round(node_cache, 4),
            "one_node_objects": [len(mine), len(cached)]}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "XDG_CONFIG_HOME": str(base / "xdg")}
    control = Child("control", ["serve", "--role=control", "--data-dir", str(base / "control"),
                                "--listen", f"127.0.0.1:{port}"], env=env, log=base / "control.log")
    total = args.nodes * args.per_node
    result: dict[str, Any] = {"nodes": args.nodes, "per_node": args.per_node, "containers": total,
                              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                          "kernel": platform.release()}}
    sim: Child | None = None
    follower: asyncio.Task[None] | None = None
    try:
        await control.start()
        await wait_ready(url, data_dir=base / "control")
        admin_token = (base / "control" / "admin.token").read_text().strip()
        join_token = (base / "control" / "join.token").read_text().strip()
        for _ in range(50):  # the leader child starts right after the API
            kids = children_of(control.pid)
            if len(kids) > 1:
                break
            await asyncio.sleep(0.1)
        etcd_pids = [p for p in kids if Path(f"/proc/{p}/comm").read_text().strip() == "etcd"]
        # the control plane is the API process and its leader child (scheduler and controllers)
        control_pids = [control.pid, *(p for p in kids if p not in etcd_pids)]
        sim = Child("sim", ["sim", "--server", url, "--token", join_token, "--nodes", str(args.nodes),
                            "--start-delay", "50ms", "--heartbeat", f"{args.heartbeat}s", "--report-every", "1s",
                            "--max-containers", str(max(110, args.per_node * 3))],
                    env=env, log=base / "sim.log")
        t0 = time.monotonic()
        await sim.start(stdout_pipe=True)
        assert sim.proc is not None
        stats = SimStats(sim.proc)
        follower = asyncio.create_task(stats.follow())
        await asyncio.wait_for(stats.ready.wait(), 600)
        result["register_seconds"] = round(time.monotonic() - t0, 2)
        print(f"{args.nodes} hollow nodes registered and watching in {result['register_seconds']}s", flush=True)

        # 1. idle: CPU per heartbeat
        await asyncio.sleep(args.heartbeat)  # let the jittered start spread out
        s0, c0, t0 = await stats.fresh(1.0), sum(cpu_seconds(p) for p in control_pids), time.monotonic()
        e0 = sum(cpu_seconds(p) for p in etcd_pids)
        await asyncio.sleep(args.idle_seconds)
        s1, c1, dt = await stats.fresh(1.0), sum(cpu_seconds(p) for p in control_pids), time.monotonic() - t0
        e1 = sum(cpu_seconds(p) for p in etcd_pids)
        beats = s1["heartbeats"] - s0["heartbeats"]
        result["idle"] = {"seconds": round(dt, 1), "heartbeats": beats, "heartbeats_per_s": round(beats / dt, 1),
                          "control_cpu_ms_per_heartbeat": round((c1 - c0) * 1000 / max(beats, 1), 3),
                          "etcd_cpu_ms_per_heartbeat": round((e1 - e0) * 1000 / max(beats, 1), 3),
                          "control_cpu_percent": round((c1 - c0) * 100 / dt, 1)}
        print("idle:", result["idle"], flush=True)

        async with ApiClient(url, admin_token, timeout=60, ssl_context=trust(base / "control")) as api:
            await api.create(Namespace(metadata=ObjectMeta(name=NS)))
            # 2. burst
            who = {"api": [control.pid], "leader": control_pids[1:], "etcd": etcd_pids, "sim": [sim.pid],
                   "bench": [os.getpid()]}
            c0 = sum(cpu_seconds(p) for p in control_pids)
            before = {k: sum(cpu_seconds(p) for p in pids) for k, pids in who.items()}
            waited0 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the load processes, once they end
            result["loadavg_before_burst"] = loadavg()
            if args.load_procs:
                result["burst"] = await burst_from_processes(api, admin_token, base / "control" / "tls" / "ca.crt", total,
                                                             args.concurrency, args.load_procs, args.timeout)
                names = result["burst"].pop("names")
            else:
                result["burst"] = await burst(api, total, args.concurrency, args.timeout)
                names = [f"c-{i:06}" for i in range(total)]
            result["loadavg_after_burst"] = loadavg()
            result["burst"]["control_cpu_seconds"] = round(sum(cpu_seconds(p) for p in control_pids) - c0, 1)
            result["burst"]["cpu_seconds_by_process"] = {
                k: round(sum(cpu_seconds(p) for p in pids) - before[k], 1) for k, pids in who.items()}
            waited1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            result["burst"]["cpu_seconds_by_process"]["load processes"] = round(
                waited1.ru_utime + waited1.ru_stime - waited0.ru_utime - waited0.ru_stime, 1)
            print("burst:", result["burst"], flush=True)
            # 3. steady state writes
            await asyncio.sleep(2)
            result["steady_writes"] = await steady_writes(api, names, args.writes)
            print("steady writes:", result["steady_writes"], flush=True)
            # 4. list everything
            result["list"] = await list_all(api)
            print("list:", result["list"], flush=True)
        result["sim"] = (await stats.fresh(1.0))
        result["peak_rss_mib"] = {"control": round(sum(rss_mib(p, "VmHWM") for p in control_pids), 1),
                                  "api": round(rss_mib(control.pid, "VmHWM"), 1),
                                  "leader": round(sum(rss_mib(p, "VmHWM") for p in control_pids[1:]), 1),
                                  "etcd": round(sum(rss_mib(p, "VmHWM") for p in etcd_pids), 1),
                                  "sim": round(rss_mib(sim.pid, "VmHWM"), 1)}
        print("peak RSS MiB:", result["peak_rss_mib"], flush=True)
        if args.restart:  # 5. the control plane restarts under the full load
            async with ApiClient(url, admin_token, timeout=60, ssl_context=trust(base / "control")) as api:
                result["restart"] = await restart(control, url, api, args.nodes, total, args.concurrency,
                                                  args.timeout, stats)
            print("restart:", result["restart"], flush=True)
    finally:
        if sim is not None:
            await sim.stop()
        if follower is not None:
            follower.cancel()
        await control.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(base, ignore_errors=True)
        else:
            print("kept", base)
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--per-node", type=int, default=30)
    p.add_argument("--heartbeat", type=float, default=2.0)
    p.add_argument("--idle-seconds", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--load-procs", type=int, default=2,
                   help="Processes the burst's POSTs come from (0: typed writers and a typed watch in this process).")
    p.add_argument("--writes", type=int, default=1000)
    p.add_argument("--timeout", type=float, default=300.0, help="Give up waiting for Running after this long.")
    p.add_argument("--keep", action="store_true", help="Keep the temporary directory (logs).")
    p.add_argument("--no-restart", dest="restart", action="store_false",
                   help="Skip the last phase (stop and start the control plane, then one new container per node).")
    a = p.parse_args()
    res = asyncio.run(main(a))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {RESULTS}")
