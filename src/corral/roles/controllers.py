"""The elected control work: the scheduler and every controller, on one control instance at a time.

``run_leader`` is what the leader runs (and stops when it loses the lease): one shared set of
informers, the controllers registered in ``build_controllers``, and the scheduler. Several
``serve --role=control`` instances share one etcd; all serve the API, one runs this.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from corral.controllers.base import Controller, Informers
from corral.controllers.cronjobs import CronJobController
from corral.controllers.daemonsets import DaemonSetController
from corral.controllers.deployments import DeploymentController
from corral.controllers.endpoints import EndpointsController
from corral.controllers.gc import GarbageCollector
from corral.controllers.jobs import JobController
from corral.controllers.namespaces import NamespaceController
from corral.controllers.nodeconditions import NodeConditionTaints
from corral.controllers.nodes import NodeLifecycle
from corral.controllers.podcidrs import NodeIpam
from corral.controllers.volumes import VolumeBinder
from corral.model.resources import Container, Node, Volume
from corral.roles.metrics import LeaderMetrics
from corral.scheduler.loop import Scheduler
from corral.scheduler.volumes import volume_filter
from corral.store.base import Store
from corral.store.informer import Change
from corral.store.leases import BucketLeases
from corral.store.objects import Objects


@dataclass
class LeaderConfig:
    policy: str = "spread"
    node_grace: float = 5.0
    event_ttl: float = 3600.0  # the scheduler's Events expire after this many seconds (0: never)
    metrics_listen: str = ""  # a leader process serves its /metrics here (HOST:PORT; empty: not at all)
    job_backoff: float = 10.0  # seconds: the first of a Job's retry delays (doubling, capped at 6 min)


def build_controllers(informers: Informers, objects: Objects, cfg: LeaderConfig) -> list[Controller]:
    """Every controller of the control plane, in no particular order (each is independent)."""
    controllers: list[Controller] = []
    controllers.append(NodeLifecycle(informers, objects, node_grace=cfg.node_grace))
    controllers.append(DeploymentController(informers, objects))
    controllers.append(GarbageCollector(informers, objects))
    controllers.append(NamespaceController(informers, objects))
    controllers.append(NodeIpam(informers, objects))
    controllers.append(EndpointsController(informers, objects))
    controllers.append(JobController(informers, objects, backoff_base=cfg.job_backoff))
    controllers.append(DaemonSetController(informers, objects))
    controllers.append(CronJobController(informers, objects))
    controllers.append(VolumeBinder(informers, objects))
    controllers.append(NodeConditionTaints(informers, objects))  # DiskPressure -> taint
    return controllers


def feed_scheduler(scheduler: Scheduler, informers: Informers) -> None:
    """The scheduler follows nodes and containers through the controllers' informers: one etcd
    watch and one decode per change for the whole leader, and one copy of every object in memory."""
    informers.of(Node).add_handler(scheduler.node_changed)
    informers.of(Container).add_handler(scheduler.container_changed)
    bindings = volume_filter(scheduler.selector.policy)
    if bindings is not None:  # where each named volume's data is (scheduler/volumes.py)

        def on_volume(change: Change, _key: str, volume: Volume, _old: Volume | None) -> None:
            if change is Change.DELETED:
                bindings.forget_volume(volume.metadata.namespace, volume.metadata.name)
            else:
                bindings.set_volume(volume)

        informers.of(Volume).add_handler(on_volume)


async def run_leader(store: Store, cfg: LeaderConfig, metrics: LeaderMetrics | None = None) -> None:
    informers = Informers(store)
    leases = BucketLeases(store, ttl=cfg.event_ttl) if cfg.event_ttl > 0 else None
    objects = Objects(store, event_leases=leases)  # controllers' Events expire like the API's
    controllers = build_controllers(informers, objects, cfg)
    synced = asyncio.Event()
    scheduler = Scheduler(store, policy=cfg.policy, event_ttl=cfg.event_ttl)
    feed_scheduler(scheduler, informers)
    if metrics is not None:
        metrics.attach(scheduler, controllers, informers)
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(informers.run(synced), name="controller-informers")
            tg.create_task(scheduler.run(feeds_synced=synced), name="scheduler")
            for c in controllers:
                tg.create_task(c.run(synced), name=f"controller-{c.name}")
    finally:
        if metrics is not None:
            metrics.detach()
