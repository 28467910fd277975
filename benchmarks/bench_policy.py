"""NetworkPolicy: update → enforced latency with 500 containers and 50 policies, and what a change costs.

Two parts, both in a network namespace of the benchmark's own (the script re-executes itself under
``unshare --net``), so every nft load goes into a throwaway kernel table and nothing touches the host:

1. **End to end.** A private etcd and the real control plane (API, watch caches, scheduler,
   controllers) in this process; 500 hollow containers — Container objects pinned to 5 Ready nodes,
   with ``status.ip`` and labels written through the API, no processes — in 10 labelled namespaces;
   50 policies mixing pod selectors, namespace selectors, ipBlocks and ports. The agent's real
   ``PolicyEnforcer`` (three reflectors over the API + render + ``nft -f``) runs for node ``bench-1``
   (100 of the containers). Each trial changes one policy through the API (a PUT) and times until the
   enforcer's nft transaction with it has loaded (the kernel then holds it); then the same for a
   container whose labels change (it moves between selections: only set elements change).
2. **Cost against the number of containers.** The renderer alone with the same 50 policies and 100 …
   5,000 containers: render time, ``nft -f`` load time, rules, sets and set elements. Rules and sets
   depend on the policies only; what grows with containers is the number of set elements.

    .venv/bin/python benchmarks/bench_policy.py [--trials 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corral.api.client import ApiClient
from corral.model import kinds, validation
from corral.model.resources import (
    Condition,
    Container,
    ContainerPort,
    ContainerSpec,
    ContainerStatus,
    Namespace,
    NetworkPolicy,
    Node,
    NodeResources,
    NodeStatus,
    ObjectMeta,
)
from corral.network.nftables import NftTable, nft_command, render_table, run_nft
from corral.network.policy import delta_commands, element_changes, render_policy
from corral.roles.control import ControlConfig, ControlPlane, run_control
from corral.roles.policies import PolicyEnforcer
from corral.store.embedded import EmbeddedEtcd, free_port
from corral.tls.contexts import client_context

NODES = [f"bench-{i}" for i in range(1, 6)]
NAMESPACES = [f"team-{i}" for i in range(10)]
APPS = [f"app-{i}" for i in range(25)]
NETPOL = kinds.BY_KIND["NetworkPolicy"]


def ip_of(i: int) -> str:
    return f"10.42.{i // 200}.{i % 200 + 2}"


def make_container(i: int) -> Container:
    namespace = NAMESPACES[i % len(NAMESPACES)]
    labels = {"app": APPS[i % len(APPS)], "role": ["client", "server", "batch"][i % 3]}
    node = NODES[i % len(NODES)]
    return Container(metadata=ObjectMeta(name=f"c{i}", namespace=namespace, labels=labels),
                     spec=ContainerSpec(image="busybox", node=node,
                                        ports=[ContainerPort(8080, name="http"), ContainerPort(9100, name="metrics")]),
                     status=ContainerStatus(phase="Running", node=node, ip=ip_of(i)))


def make_policy(k: int, *, port: int = 8080) -> NetworkPolicy:
    namespace = NAMESPACES[k % len(NAMESPACES)]
    spec = {
        "podSelector": {"matchLabels": {"app": APPS[k % len(APPS)]}},
        "ingress": [
            {"from": [{"podSelector": {"matchLabels": {"role": "client"}}},
                      {"namespaceSelector": {"matchLabels": {"tier": str(k % 3)}},
                       "podSelector": {"matchExpressions": [{"key": "role", "operator": "In", "values": ["server"]}]}}],
             "ports": [{"port": port}, {"port": "metrics"}]},
            {"from": [{"ipBlock": {"cidr": "192.168.0.0/16", "except": [f"192.168.{k}.0/24"]}}]},
        ],
        "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"port": 53, "protocol": "UDP"}, {"port": 8080}]}]
        if k % 2 else [],
    }
    obj = validation.decode({"metadata": {"name": f"p{k}", "namespace": namespace}, "spec": spec}, NETPOL)
    assert isinstance(obj, NetworkPolicy)
    return obj


def make_namespaces() -> list[Namespace]:
    return [Namespace(metadata=ObjectMeta(name=n, labels={"tier": str(i % 3)})) for i, n in enumerate(NAMESPACES)]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def ms(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:.1f} ms, p90 {pct(values, 0.9) * 1000:.1f} ms, max {max(values) * 1000:.1f} ms"


async def in_batches(coros: list, size: int = 50) -> None:  # type: ignore[type-arg]
    for i in range(0, len(coros), size):
        await asyncio.gather(*coros[i:i + size])


async def wait_for_load(table: NftTable, before: int, *, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while table.applies <= before:
        if time.monotonic() > deadline:
            raise TimeoutError("the enforcer did not load the change")
        await asyncio.sleep(0.001)


async def end_to_end(base: Path, trials: int) -> None:
    etcd = EmbeddedEtcd(data_dir=base / "etcd")
    await etcd.start()
    stop = asyncio.Event()
    ready: asyncio.Future[ControlPlane] = asyncio.get_running_loop().create_future()

    async def started(plane: ControlPlane) -> None:
        ready.set_result(plane)
        await stop.wait()

    cfg = ControlConfig(data_dir=base / "control", port=free_port(), etcd=[etcd.endpoint], write_user_config=False,
                        node_grace=3600.0)  # hollow nodes send no heartbeats: never call them lost
    control = asyncio.create_task(run_control(cfg, stop=stop, started=started))
    try:
        plane = await asyncio.wait_for(asyncio.shield(ready), 30)
        async with ApiClient(plane.url, plane.admin_token, ssl_context=client_context(plane.ca_pem)) as api:
            t0 = time.monotonic()
            for ns in make_namespaces():
                await api.create(ns)
            ready_cond = [Condition(type="Ready", status="True", reason="Hollow")]
            for name in NODES:
                await api.create(Node(metadata=ObjectMeta(name=name), status=NodeStatus(
                    conditions=ready_cond, capacity=NodeResources(cpu="64", memory="256Gi", containers=1000),
                    allocatable=NodeResources(cpu="64", memory="256Gi", containers=1000))))
            containers = [make_container(i) for i in range(500)]

            async def put(c: Container) -> None:
                created = await api.create(Container(metadata=c.metadata, spec=c.spec))
                created.status = c.status
                await api.update_status(created)

            await in_batches([put(c) for c in containers])
            for k in range(50):
                await api.create(make_policy(k))
            print(f"set-up: 500 containers (100 on bench-1), 50 policies, 10 namespaces in {time.monotonic() - t0:.1f}s")

            table = NftTable("benchpolicy")
            enforcer = PolicyEnforcer(api, table, node="bench-1", bridge="benchbr0")
            t0 = time.monotonic()
            task = asyncio.create_task(enforcer.run())
            try:
                await asyncio.wait_for(enforcer.enforced.wait(), 60)
                assert enforcer.last is not None
                print(f"first load after start (3 lists + render + nft): {time.monotonic() - t0:.3f}s; "
                      f"{enforcer.last.rules} rules, {enforcer.last.sets} sets, {enforcer.last.elements} set elements")

                policy_delays: list[float] = []
                puts: list[float] = []
                renders: list[float] = []
                loads: list[float] = []
                for trial in range(trials):
                    k = trial % 50
                    current = await api.get(NetworkPolicy, f"p{k}", namespace=NAMESPACES[k % len(NAMESPACES)])
                    current.spec.ingress[0].ports[0].port = 8081 + trial  # type: ignore[assignment]
                    before = table.applies
                    t0 = time.monotonic()
                    await api.update(current)
                    puts.append(time.monotonic() - t0)
                    await wait_for_load(table, before)
                    policy_delays.append(time.monotonic() - t0)
                    renders.append(enforcer.last_render_seconds)
                    loads.append(enforcer.last_load_seconds - enforcer.last_render_seconds)
                _, out = await nft_command("list", "table", "inet", "benchpolicy")
                assert f"tcp . {8081 + trials - 1}" in out, "the last change is in the kernel"
                print(f"policy update (API PUT) → rules loaded in the kernel, {trials} trials: {ms(policy_delays)}")
                print(f"  of which: the PUT {ms(puts)}; render {ms(renders)}; nft update {ms(loads)}")
                renders, loads = [], []

                label_delays: list[float] = []
                for trial in range(trials):
                    c = await api.get(Container, f"c{trial * 5}", namespace=NAMESPACES[(trial * 5) % len(NAMESPACES)])
                    c.metadata.labels["app"] = f"moved-{trial}"  # out of the selection of policy p<5*trial mod 50>
                    before = table.applies
                    t0 = time.monotonic()
                    await api.update(c)
                    await wait_for_load(table, before)
                    label_delays.append(time.monotonic() - t0)
                    renders.append(enforcer.last_render_seconds)
                    loads.append(enforcer.last_load_seconds - enforcer.last_render_seconds)
                print(f"container relabelled (API PUT) → sets updated in the kernel, {trials} trials: {ms(label_delays)}")
                print(f"  of which: render {ms(renders)}; nft set update {ms(loads)}")
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await table.remove()
    finally:
        stop.set()
        await asyncio.gather(control, return_exceptions=True)
        await etcd.stop()


async def scaling() -> None:
    policies = [make_policy(k) for k in range(50)]
    namespaces = make_namespaces()
    floor = []
    for _ in range(10):  # the floor: one nft transaction that changes almost nothing
        t0 = time.perf_counter()
        await run_nft("table inet benchfloor {}\n")
        floor.append(time.perf_counter() - t0)
    await nft_command("delete", "table", "inet", "benchfloor")
    print(f"\nfloor: one nft -f run with one empty table: p50 {statistics.median(floor) * 1000:.1f} ms")
    print("containers  rules  sets  set elements  render ms  whole-table load ms  one container added: "
          "sets changed, elements deleted+added, nft ms  one policy changed: commands, nft ms")
    for n in (100, 500, 1000, 2000, 5000):
        containers = [make_container(i) for i in range(n)]
        t0 = time.perf_counter()
        rendered = render_policy(policies, containers, namespaces, node="bench-1")
        render_s = time.perf_counter() - t0
        script = render_table("inet", "benchscale", [rendered.part])
        loads = []
        for _ in range(5):
            t0 = time.perf_counter()
            await run_nft(script)
            loads.append(time.perf_counter() - t0)
        table = NftTable("benchscale")
        table.set_part(rendered.part)
        await table.apply()
        updates = []
        for extra in range(5):  # a container arrives on this node: only the sets it joins are rewritten
            grown = render_policy(policies, [*containers, make_container(n + extra)], namespaces, node="bench-1")
            assert grown.skeleton == rendered.skeleton, "a container never changes the rules"
            changed = element_changes(rendered, grown)
            t0 = time.perf_counter()
            assert await table.update_sets(grown.part, changed)
            updates.append(time.perf_counter() - t0)
            rendered = grown
        sent = sum(len(d) + len(a) for d, a in changed.values())
        policy_updates = []
        for trial in range(5):  # one policy's port changes: its rules and its sets, nothing else
            edited = [make_policy(k, port=9000 + trial if k == 7 else 8080) for k in range(50)]
            now = render_policy(edited, containers + [make_container(n + e) for e in range(5)], namespaces,
                                node="bench-1")
            commands = delta_commands(rendered, now, family="inet", table="benchscale")
            t0 = time.perf_counter()
            assert await table.update_part(now.part, commands)
            policy_updates.append(time.perf_counter() - t0)
            rendered = now
        print(f"{n:>10}  {rendered.rules:>5}  {rendered.sets:>4}  {rendered.elements:>12}  {render_s * 1000:>9.1f}"
              f"  {statistics.median(loads) * 1000:>19.1f}  {len(changed):>13}  {sent:>15}  "
              f"{statistics.median(updates) * 1000:>6.1f}  {len(commands):>29}  {statistics.median(policy_updates) * 1000:>6.1f}")
        await table.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=30)
    args = parser.parse_args()
    if os.environ.get("BENCH_POLICY_NETNS") != "1":  # a network namespace of our own: private nft tables
        os.environ["BENCH_POLICY_NETNS"] = "1"
        os.execvp("unshare", ["unshare", "--net", sys.executable, *sys.argv])
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory(prefix="bench-policy-", ignore_cleanup_errors=True) as tmp:
        asyncio.run(end_to_end(Path(tmp), args.trials))
    asyncio.run(scaling())


if __name__ == "__main__":
    main()
