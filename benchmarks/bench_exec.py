"""Benchmark of exec round trips and port-forward throughput, against a real one-worker cluster.

Starts a private registry and cluster (``tests/fixtures``: etcd, control plane, one agent with its
own containerd, bridge and subnet; all removed at the end), runs one busybox container that serves a
file of ``--mib`` MiB with httpd on port 8080 (published nowhere on the host), then measures:

- exec round trip, command to output (``cat /etc/hostname``), p50/p99 over ``--runs``:
  * ``corral exec`` path in-process: WebSocket through the API to the agent, FIFOs, runc exec, the
    output and the status frame back (what the CLI does once it has started);
  * ``corral exec`` as a CLI process (adds the Python interpreter's start and imports);
  * the floor: ``ctr --address SOCK -n corral task exec`` on the same containerd (a Go process
    start, one gRPC exec with FIFOs, the same runc exec).
- port-forward throughput: ``curl`` fetching ``/big`` through ``corral port-forward`` (local listener → WebSocket
  → API → WebSocket → agent → socket in the container's netns) vs straight to the container's IP.

Run: ``.venv/bin/python benchmarks/bench_exec.py [--runs 50] [--mib 200]``. Prints figures and writes ``benchmarks/results/bench_exec.json``;
asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import cpu_seconds

from corral.cli.streaming import open_stream, run_session
from corral.model.resources import Container, ContainerSpec, ObjectMeta
from corral.store.embedded import free_port
from tests.fixtures.cluster import Cluster, start_cluster
from tests.fixtures.registry import _busybox_archive, push_oci_archive, run_registry


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(label: str, seconds: list[float]) -> float:
    ms = [s * 1000 for s in seconds]
    p50 = statistics.median(ms)
    print(f"{label:>34}: n={len(ms)} p50={p50:.1f} ms p99={pct(ms, 0.99):.1f} ms max={max(ms):.1f} ms")
    return p50


async def run_process(*args: str, env: dict[str, str] | None = None) -> bytes:
    proc = await asyncio.create_subprocess_exec(*args, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{args[:4]} failed ({proc.returncode}): {err.decode()}")
    return out


async def curl_rate(url: str, expected: int) -> float:
    """MB/s of one download by curl (a separate C process, so the client costs the same both ways and
    does not share this process — which also runs the API — with the data)."""
    out = await run_process("curl", "-s", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", url)
    size, seconds = out.decode().split()
    assert int(size) >= expected, (url, size)
    return int(size) / float(seconds) / 1e6


async def fetch(host: str, port: int, path: str) -> int:
    """Bytes of the body of one HTTP/1.0 GET, read as fast as they come."""
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n".encode())
    await writer.drain()
    total = 0
    while chunk := await reader.read(1 << 20):
        total += len(chunk)
    writer.close()
    return total


async def bench_exec(cluster: Cluster, box: Container, runs: int, env: dict[str, str]) -> dict[str, float]:
    cmd = ["cat", "/etc/hostname"]
    api_t: list[float] = []
    for _ in range(runs + 2):
        t0 = time.perf_counter()
        ws = await open_stream(cluster.api, namespace="default", name="box", verb="exec",
                               params=[("command", c) for c in cmd] + [("stdin", "0")])
        out = bytearray()
        result = await run_session(ws, stdin=None, stdout=out.extend, stderr=out.extend)
        api_t.append(time.perf_counter() - t0)
        assert result.exit_code == 0 and out == b"box\n", (result, out)
    api_p50 = report("corral exec (in-process, via API)", api_t[2:])

    cli_t: list[float] = []
    for _ in range(max(5, runs // 5)):
        t0 = time.perf_counter()
        out = bytearray(await run_process(sys.executable, "-m", "corral.cli.main", "exec", "box", "--", *cmd, env=env))
        cli_t.append(time.perf_counter() - t0)
        assert out == b"box\n"
    cli_p50 = report("corral exec (CLI process)", cli_t)

    ctr_t: list[float] = []
    for i in range(runs + 2):
        t0 = time.perf_counter()
        out = bytearray(await run_process("ctr", "--address", cluster.worker.containerd.socket, "-n", "corral",
                                          "task", "exec", "--exec-id", f"bench-{i}", box.status.container_id, *cmd))
        ctr_t.append(time.perf_counter() - t0)
        assert out == b"box\n"
    ctr_p50 = report("ctr task exec (floor)", ctr_t[2:])
    print(f"{'ratio p50 (in-process / ctr)':>34}: {api_p50 / ctr_p50:.2f}x   (goal <= 1.5x)")
    print(f"{'ratio p50 (CLI process / ctr)':>34}: {cli_p50 / ctr_p50:.2f}x")
    return {"exec_api_p50_ms": round(api_p50, 1), "exec_api_p99_ms": round(pct(api_t[2:], 0.99) * 1000, 1),
            "exec_cli_p50_ms": round(cli_p50, 1), "ctr_exec_p50_ms": round(ctr_p50, 1),
            "ctr_exec_p99_ms": round(pct(ctr_t[2:], 0.99) * 1000, 1)}


async def bench_forward(cluster: Cluster, box: Container, mib: int, env: dict[str, str]) -> dict[str, float]:
    expected = mib * 1024 * 1024
    direct: list[float] = []
    for _ in range(3):
        direct.append(await curl_rate(f"http://{box.status.ip}:8080/big", expected))
    local = free_port()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "corral.cli.main", "port-forward", "box",
                                                f"{local}:8080", env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL)
    forwarded: list[float] = []
    try:
        assert proc.stdout is not None
        await asyncio.wait_for(proc.stdout.readline(), 60)
        pids = {"cli": proc.pid, "api (this process)": os.getpid()}
        if cluster.worker.proc is not None:
            pids["agent"] = cluster.worker.proc.pid
        before = {k: cpu_seconds(p) for k, p in pids.items()}
        t0 = time.perf_counter()
        for _ in range(3):
            forwarded.append(await curl_rate(f"http://127.0.0.1:{local}/big", expected))
        wall = time.perf_counter() - t0
        cpu = {k: cpu_seconds(p) - before[k] for k, p in pids.items()}
        print(f"{'CPU per process during the 3 runs':>34}: "
              + ", ".join(f"{k} {v:.2f} s" for k, v in cpu.items()) + f" (wall {wall:.2f} s)")
    finally:
        proc.kill()
        await proc.wait()
    d, f = statistics.median(direct), statistics.median(forwarded)
    print(f"{'direct to the container IP':>34}: {d:.0f} MB/s (median of 3 x {mib} MiB)")
    print(f"{'through corral port-forward':>34}: {f:.0f} MB/s")
    print(f"{'ratio':>34}: {f / d:.2f}x   (goal >= 0.5x)")
    return {"direct_mb_s": round(d), "port_forward_mb_s": round(f)}


async def main(runs: int, mib: int) -> None:
    with tempfile.TemporaryDirectory(prefix="corral-bench-exec-") as tmp:
        base = Path(tmp)
        (base / "registry").mkdir()
        async with run_registry(base / "registry") as registry:
            await push_oci_archive(registry, await _busybox_archive(base / "registry"), ref=registry.ref)
            async with start_cluster(base, registry, workers=1) as cluster:
                await measure(cluster, runs, mib)


async def measure(cluster: Cluster, runs: int, mib: int) -> None:
    await cluster.api.create(Container(
        metadata=ObjectMeta(name="box"),
        spec=ContainerSpec(image=cluster.image, command=[
            "sh", "-c", f"dd if=/dev/zero of=/tmp/big bs=1M count={mib} 2>/dev/null; "
                        "exec httpd -f -p 8080 -h /tmp"]),
    ))
    box = await cluster.wait_for("box", lambda c: c.status.phase == "Running" and bool(c.status.ip),
                                 timeout=120)
    env = {**os.environ, "CORRAL_SERVER": cluster.plane.url, "CORRAL_TOKEN": cluster.plane.admin_token,
           "CORRAL_CA": str(cluster.plane.ca_file)}
    for _ in range(600):  # httpd starts once the file is written
        try:
            if await fetch(box.status.ip, 8080, "/big") >= mib * 1024 * 1024:
                break
        except OSError:
            pass
        await asyncio.sleep(0.2)
    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f}")
    figures = {"load": round(os.getloadavg()[0], 1), **await bench_exec(cluster, box, runs, env),
               **await bench_forward(cluster, box, mib, env)}
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_exec.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--mib", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.mib))
