"""Container-to-container TCP throughput and round-trip latency: same node, across nodes with host-gw and
with VXLAN, beside host-to-host directly (the floor, measured in the same run).

Two clusters of two "hosts" each (tests/fixtures/hosts.py: network namespaces on one LAN bridge, a real
worker in each, the control plane in this process), one with ``--network-backend host-gw``, one with
``vxlan``. In each, three ``sleep`` containers run (two on host-1, one on host-2); the measuring
programs are this script itself, started by ``nsenter --net=<namespace>`` in a container's network
namespace (so the traffic takes the container's path: veth, bridge, route or VXLAN, the other node's
bridge and veth) or in a host's namespace (the floor).

- throughput: one TCP stream for ``--seconds`` (1 MiB writes; the receiver counts and reports);
- latency: ``--rtts`` round trips of one byte over one TCP connection (TCP_NODELAY), median and p99.

Goals (issue 11): across nodes host-gw at least 0.8 of the floor, VXLAN at least 0.6.

Each path is measured ``--repeats`` times, interleaved with the others; the medians are printed.

Run: ``python benchmarks/bench_overlay.py [--seconds 3] [--rtts 2000] [--repeats 3]`` (root; docker-registry and
skopeo for the image, as the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.fixtures

PORT = 5201
CHUNK = 1 << 20


# --- the measuring programs (run inside a namespace) --------------------------------------------


def serve(port: int) -> None:
    """Accept connections forever: a stream is counted and its byte count sent back when it ends;
    a one-byte ping is echoed."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(8)
    buf = bytearray(CHUNK)
    while True:
        conn, _ = srv.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        mode = conn.recv(1)
        if mode == b"S":
            total = 0
            while n := conn.recv_into(buf):
                total += n
            conn.sendall(str(total).encode())
        elif mode == b"P":
            while b := conn.recv(1):
                conn.sendall(b)
        conn.close()


def stream(host: str, port: int, seconds: float) -> None:
    s = socket.create_connection((host, port), timeout=30)
    s.sendall(b"S")
    data = bytes(CHUNK)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    total = int(s.recv(64))
    elapsed = time.perf_counter() - t0
    print(json.dumps({"gbit_s": total * 8 / elapsed / 1e9}))


def ping(host: str, port: int, count: int) -> None:
    s = socket.create_connection((host, port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(b"P")
    rtts = []
    for _ in range(count):
        t0 = time.perf_counter()
        s.sendall(b"x")
        s.recv(1)
        rtts.append((time.perf_counter() - t0) * 1e6)
    rtts.sort()
    print(json.dumps({"p50_us": statistics.median(rtts), "p99_us": rtts[int(len(rtts) * 0.99) - 1]}))


# --- the run ------------------------------------------------------------------------------------


async def _in_ns(path: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec("nsenter", f"--net={path}", sys.executable, __file__, *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def measure(server_ns: str, client_ns: str, server_ip: str, *, seconds: float, rtts: int) -> dict[str, float]:
    srv = await _in_ns(server_ns, "--serve", str(PORT))
    try:
        await asyncio.sleep(0.5)
        out: dict[str, float] = {}
        for args in (["--stream", server_ip, str(PORT), str(seconds)], ["--ping", server_ip, str(PORT), str(rtts)]):
            proc = await _in_ns(client_ns, *args)
            stdout, stderr = await asyncio.wait_for(proc.communicate(), seconds + 120)
            if proc.returncode != 0:
                raise RuntimeError(f"{args[0]} failed: {stderr.decode()[-2000:]}")
            out.update(json.loads(stdout))
        return out
    finally:
        srv.kill()
        await srv.wait()


async def run_backend(backend: str, base: Path, registry: object, *, seconds: float, rtts: int, repeats: int) -> dict[str, dict[str, float]]:
    from corral.model.resources import Container, ContainerSpec, ObjectMeta
    from corral.reconcile.naming import netns_prefix
    from tests.fixtures.hosts import start_hosts
    from tests.multihost.conftest import wait_running

    async with start_hosts(base, registry, count=2, backend=backend) as hosts:  # type: ignore[arg-type]
        placed = {"a": "host-1", "b": "host-1", "c": "host-2"}
        for name, node in placed.items():
            await hosts.api.create(Container(metadata=ObjectMeta(name=name), spec=ContainerSpec(
                image=hosts.image, command=["sleep", "3600"], node=node, termination_grace_period_seconds=0)))
        by_name = {h.name: h for h in hosts.hosts}
        ns: dict[str, str] = {}
        ip: dict[str, str] = {}
        for name, node in placed.items():
            c = await wait_running(hosts, name)
            ns[name] = f"/var/run/netns/{netns_prefix(by_name[node].worker.agent_dir)}{c.metadata.uid}"
            ip[name] = c.status.ip
        h1, h2 = hosts[0], hosts[1]
        paths = {  # name: (server namespace, client namespace, server address)
            "floor: host to host": (f"/var/run/netns/{h2.netns}", f"/var/run/netns/{h1.netns}", h2.ip),
            "same node": (ns["b"], ns["a"], ip["b"]),
            f"across nodes, {backend}": (ns["c"], ns["a"], ip["c"]),
        }
        runs: dict[str, list[dict[str, float]]] = {p: [] for p in paths}
        for _ in range(repeats):  # interleaved, so a busy moment of the machine hits every path alike
            for path, (server_ns, client_ns, server_ip) in paths.items():
                runs[path].append(await measure(server_ns, client_ns, server_ip, seconds=seconds, rtts=rtts))
        results = {path: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for path, rs in runs.items()}
        return results


async def main(seconds: float, rtts: int, repeats: int) -> None:
    from tests.fixtures.registry import _busybox_archive, push_oci_archive, run_registry

    with tempfile.TemporaryDirectory(prefix="corral-bench-overlay-") as tmp:
        base = Path(tmp)
        (base / "registry").mkdir()
        async with run_registry(base / "registry") as reg:
            await push_oci_archive(reg, await _busybox_archive(base), ref=reg.ref)
            all_results = {}
            for backend in ("host-gw", "vxlan"):
                all_results[backend] = await run_backend(backend, base / backend, reg, seconds=seconds, rtts=rtts,
                                                         repeats=repeats)
    print(f"{'path':<28} {'Gbit/s':>8} {'of floor':>8} {'RTT p50 µs':>11} {'RTT p99 µs':>11}")
    for results in all_results.values():
        floor = results["floor: host to host"]["gbit_s"]
        for path, r in results.items():
            print(f"{path:<28} {r['gbit_s']:>8.2f} {r['gbit_s'] / floor:>8.2f} {r['p50_us']:>11.0f} {r['p99_us']:>11.0f}")
    print("goals: across nodes host-gw >= 0.8 of the floor, vxlan >= 0.6")
    out = Path(__file__).parent / "results" / "overlay.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(all_results, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rtts", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3, help="runs per path (medians are printed)")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--stream", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--ping", nargs=3, help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.serve:
        serve(a.serve)
    elif a.stream:
        stream(a.stream[0], int(a.stream[1]), float(a.stream[2]))
    elif a.ping:
        ping(a.ping[0], int(a.ping[1]), int(a.ping[2]))
    else:
        asyncio.run(main(a.seconds, a.rtts, a.repeats))
