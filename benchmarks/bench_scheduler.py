"""Scheduler throughput against a real etcd: placements per second committed to etcd.

Starts an embedded etcd in a temporary directory, writes N Ready nodes and M Pending containers
(in store.batch txns), then runs the real ``Scheduler`` (informers, batched CAS bindings, Events
unless ``--no-events``) until every container is bound, and prints figures. In-process, one event
loop: what is measured includes decoding the watch of our own bindings.

    .venv/bin/python benchmarks/bench_scheduler.py --nodes 1000 5000 --containers 10000

``--anti-affinity G`` gives the containers ``G`` apps (label ``app``), each replica with a required
anti-affinity to its own app over ``corral.io/hostname``: the placement filters in use.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from pathlib import Path

from corral.aiokit.heap import tune_for_large_heaps
from corral.model.resources import (
    Affinity,
    Condition,
    Container,
    ContainerAffinity,
    ContainerAffinityTerm,
    ContainerSpec,
    LabelSelector,
    Node,
    NodeResources,
    NodeStatus,
    ObjectMeta,
    ResourceList,
    ResourceRequirements,
)
from corral.scheduler.affinity import prepare
from corral.scheduler.algorithm import Selector, feasible_to_find
from corral.scheduler.cache import SchedulerCache
from corral.scheduler.framework import ContainerRequest, NodeView
from corral.scheduler.loop import Scheduler
from corral.scheduler.policy import build_policy
from corral.store.base import Put
from corral.store.embedded import EmbeddedEtcd
from corral.store.etcd import EtcdStore
from corral.store.typed import encode


def node(i: int) -> Node:
    return Node(
        metadata=ObjectMeta(name=f"node-{i:05}", labels={"zone": f"z{i % 3}", "corral.io/hostname": f"node-{i:05}"}),
        status=NodeStatus(
            allocatable=NodeResources(cpu="32", memory="128Gi", containers=110),
            conditions=[Condition(type="Ready", status="True")],
        ),
    )


def container(i: int, namespace: str, anti_affinity: int = 0) -> Container:
    c = Container(
        metadata=ObjectMeta(name=f"c-{i:06}", namespace=namespace, uid=f"uid-{i}"),
        spec=ContainerSpec(
            image="127.0.0.1:5000/busybox:1",
            resources=ResourceRequirements(requests=ResourceList(cpu="100m", memory="128Mi")),
        ),
    )
    if anti_affinity:
        app = {"app": f"g{i % anti_affinity}"}
        c.metadata.labels = app
        c.spec.affinity = Affinity(container_anti_affinity=ContainerAffinity(required=[
            ContainerAffinityTerm(label_selector=LabelSelector(match_labels=app), topology_key="corral.io/hostname")]))
    return c


async def write_all(store: EtcdStore, puts: list[Put]) -> None:
    chunk = 1024
    await asyncio.gather(*(store.batch(puts[i : i + chunk]) for i in range(0, len(puts), chunk)))


def bench_decisions(nodes: int, decisions: int, policy: str, *, percentage: int = 0, minimum: int = 100,
                    anti_affinity: int = 0) -> float:
    """Pure decisions per second (no I/O): select + assume against in-memory node views."""
    views = []
    for i in range(nodes):
        v = NodeView(f"node-{i:05}")
        v.update_from(node(i))
        views.append(v)
    sel = Selector(build_policy(policy), percentage=percentage, minimum=minimum)
    if anti_affinity:  # through the cache, which counts containers per domain for the filters
        cache = SchedulerCache()
        for i in range(nodes):
            cache.set_node(node(i))
        t = time.process_time()
        for i in range(decisions):
            req = prepare(ContainerRequest.of(f"k{i}", container(i, "default", anti_affinity)), cache)
            d = sel.select(req, cache.nodes())
            assert d.node is not None
            cache.assume(req, d.node)
        return decisions / (time.process_time() - t)
    req = ContainerRequest.of("k", container(0, "default"))
    by_name = {v.name: v for v in views}
    t = time.process_time()  # CPU time: the machine may be shared
    for _ in range(decisions):
        d = sel.select(req, views)
        assert d.node is not None
        by_name[d.node].add(req)
    return decisions / (time.process_time() - t)


async def run(
    nodes: int, containers: int, *, policy: str, events: bool, batch_size: int, percentage: int, minimum: int,
    anti_affinity: int = 0,
) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-sched-") as tmp:
        etcd = EmbeddedEtcd(data_dir=Path(tmp) / "data")
        await etcd.start()
        store = EtcdStore([etcd.endpoint])
        try:
            await write_all(store, [Put(f"/corral/nodes/node-{i:05}", encode(node(i))) for i in range(nodes)])
            ns = "bench"
            await write_all(
                store,
                [Put(f"/corral/containers/{ns}/c-{i:06}", encode(container(i, ns, anti_affinity)))
                 for i in range(containers)],
            )
            s = Scheduler(store, policy=policy, emit_events=events, batch_size=batch_size,
                          percentage_of_nodes_to_score=percentage, min_nodes_to_score=minimum)
            t0 = time.perf_counter()
            task = asyncio.create_task(s.run())
            await s.synced.wait()
            t1, cpu1 = time.perf_counter(), time.process_time()
            while s.stats.bound < containers:
                await asyncio.sleep(0.01)
                if task.done():
                    task.result()
            t2, cpu2 = time.perf_counter(), time.process_time()
            while events and s.stats.events + s.stats.events_dropped < containers and not task.done():
                await asyncio.sleep(0.01)  # Events are written off the binding path: wait for them too
            t3 = time.perf_counter()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            page = await store.list(f"/corral/containers/{ns}/", limit=1)
            print(
                f"nodes={nodes:5} containers={containers} policy={policy} events={events} batch={batch_size} "
                f"anti-affinity groups={anti_affinity} "
                f"sample={feasible_to_find(nodes, percentage, minimum)}: "
                f"informer sync {t1 - t0:.2f}s, bound all in {t2 - t1:.2f}s = "
                f"{containers / (t2 - t1):,.0f} placements/s committed, scheduler CPU {cpu2 - cpu1:.2f}s "
                f"(txn batches {s.stats.batches}, conflicts {s.stats.conflicts}, etcd rev {page.revision})"
                + (f"; {s.stats.events:,} Scheduled Events written by {t3 - t1:.2f}s, "
                   f"{s.stats.events_dropped:,} dropped" if events else "")
            )
        finally:
            await store.close()
            await etcd.stop()


def main() -> None:
    tune_for_large_heaps()  # as the leader process does
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--containers", type=int, default=10_000)
    ap.add_argument("--policy", default="spread", choices=["spread", "binpack"])
    ap.add_argument("--no-events", action="store_true")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--percentage", type=int, default=0, help="of nodes to score; 0: adaptive (kube)")
    ap.add_argument("--min-nodes", type=int, default=100, help="feasible nodes to find at least (kube: 100)")
    ap.add_argument("--anti-affinity", type=int, default=0, metavar="GROUPS",
                    help="containers in GROUPS apps, each replica anti-affine to its app per node (0: none)")
    args = ap.parse_args()
    for n in args.nodes:
        rate = bench_decisions(n, 2000, args.policy, percentage=args.percentage, minimum=args.min_nodes,
                               anti_affinity=args.anti_affinity)
        print(f"nodes={n:5} sample={feasible_to_find(n, args.percentage, args.min_nodes)} "
              f"pure decisions (select + assume, no I/O, CPU time): {rate:,.0f}/s")
    for n in args.nodes:
        asyncio.run(run(n, args.containers, policy=args.policy, events=not args.no_events,
                        batch_size=args.batch_size, percentage=args.percentage, minimum=args.min_nodes,
                        anti_affinity=args.anti_affinity))


if __name__ == "__main__":
    main()
