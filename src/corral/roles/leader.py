"""The leader role: the scheduler and the controllers, elected through etcd, in a process of their own.

A control instance runs its API in one process and, by default, starts this role as a child
process (``corral serve --role=leader``) so the API and the scheduler/controllers each get a core
instead of sharing one Python interpreter. The child campaigns like any control instance; the
parent restarts it if it dies (``aiokit.processes.Supervisor``, with back-off) and stops it
(SIGTERM, then SIGKILL) when it stops itself; the child gets SIGTERM if the parent dies first.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiohttp import web

from corral.aiokit.backoff import Backoff
from corral.aiokit.metrics import serve_metrics
from corral.aiokit.processes import ChildProcess, Supervisor
from corral.aiokit.running import run_until_stopped
from corral.roles.controllers import LeaderConfig, run_leader
from corral.roles.metrics import LeaderMetrics
from corral.store.election import Election
from corral.store.etcd import EtcdStore, EtcdTls

log = logging.getLogger(__name__)


@dataclass
class LeaderRoleConfig:
    etcd: list[str]
    leader: LeaderConfig = field(default_factory=LeaderConfig)
    leader_ttl: int = 5
    etcd_tls: EtcdTls | None = None


async def campaign(store: EtcdStore, cfg: LeaderConfig, *, identity: str, ttl: int,
                   metrics: LeaderMetrics | None = None) -> None:
    """Campaign forever; while elected, run the scheduler and controllers (reported to ``metrics``)."""
    election = Election(store, "control", identity=identity, ttl=ttl)
    await election.run(lambda: run_leader(store, cfg, metrics))


async def run_leader_role(cfg: LeaderRoleConfig, *, stop: asyncio.Event) -> None:
    store = EtcdStore(cfg.etcd, tls=cfg.etcd_tls)
    metrics = LeaderMetrics()
    runner: web.AppRunner | None = None
    try:
        if cfg.leader.metrics_listen:
            host, _, port = cfg.leader.metrics_listen.rpartition(":")
            runner, bound = await serve_metrics(metrics.registry, host or "127.0.0.1", int(port))
            log.info("leader metrics on http://%s:%s/metrics", host or "127.0.0.1", bound)
        await run_until_stopped(campaign(store, cfg.leader, identity=f"{socket.gethostname()}:leader:{os.getpid()}",
                                         ttl=cfg.leader_ttl, metrics=metrics), stop=stop, name="leader-campaign")
    finally:
        if runner is not None:
            await runner.cleanup()
        await store.close()


def leader_args(etcd: Sequence[str], cfg: LeaderConfig, *, ttl: int, etcd_tls: EtcdTls | None = None) -> list[str]:
    args = [sys.executable, "-m", "corral.cli.main", "serve", "--role=leader", "--policy", cfg.policy,
            "--node-grace", str(cfg.node_grace), "--event-ttl", str(int(cfg.event_ttl)), "--leader-ttl", str(ttl),
            "--job-backoff", str(cfg.job_backoff)]
    for endpoint in etcd:
        args += ["--etcd", endpoint]
    if cfg.metrics_listen:
        args += ["--metrics-listen", cfg.metrics_listen]
    return args + (etcd_tls.args() if etcd_tls is not None else [])


async def supervise_leader(args: list[str], *, stop: asyncio.Event) -> None:
    """Keep a leader child process running until ``stop``; then SIGTERM it (SIGKILL after 10 s)."""
    child = ChildProcess(args, name="leader", new_session=False)  # Ctrl-C in a terminal reaches it too
    await child.start()
    log.info("leader process started (pid %s)", child.pid)
    try:
        await Supervisor("the leader process", child, stop=stop, key="leader", backoff=Backoff(initial=1.0)).run()
    finally:
        await child.stop(grace=10.0)
