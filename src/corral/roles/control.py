"""The control role: the API server (and, where elected, the scheduler and controllers) on etcd.

``run_control`` owns the lifetime of everything the control plane needs: an embedded etcd when no
endpoints are given (restarted by a ``Supervisor`` whenever it dies), the store, the API's watch caches, the HTTP listener, the admin and join
tokens in the data dir, and the client config the CLI reads. It returns when ``stop`` is set,
after closing the listener (in-flight requests get a grace period), the caches and the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from aiohttp import web

from corral.aiokit.backoff import Backoff
from corral.aiokit.processes import RESTARTS, Supervisor
from corral.api.audit import AuditLog
from corral.api.auth import Identity
from corral.api.server import ApiServer
from corral.model.cluster import CLUSTER_CONFIG_KEY, ClusterConfig, differences, validate_cluster_config
from corral.model.errors import AlreadyExists
from corral.roles.controllers import LeaderConfig
from corral.roles.leader import campaign, leader_args, supervise_leader
from corral.roles.metrics import LeaderMetrics
from corral.store import snapshots
from corral.store.embedded import EmbeddedEtcd
from corral.store.etcd import EtcdStore
from corral.store.sealing import Keyring

log = logging.getLogger(__name__)


@dataclass
class ControlConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 6443
    etcd: list[str] = field(default_factory=list)
    max_body: int = 3 * 1024 * 1024
    policy: str = "spread"
    join_token: str = ""
    write_user_config: bool = True
    leader_ttl: int = 5
    node_grace: float = 5.0
    job_backoff: float = 10.0  # the first of a Job's retry delays, seconds
    event_ttl: float = 3600.0  # seconds an Event lives (API- and scheduler-written; 0: forever)
    leader_process: bool = False  # run the scheduler and controllers in a child process (serve does)
    leader_metrics_listen: str = ""  # where that child serves its /metrics (HOST:PORT; empty: nowhere)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)  # asked for; etcd's record wins
    snapshot_interval: float = 0.0  # seconds between scheduled etcd snapshots into <data-dir>/snapshots (0: none)
    snapshot_retain: int = 5
    encryption_key_file: Path | None = None  # the keys sealing Secrets at rest (default <data-dir>/encryption.key)
    audit_log: Path | None = None  # JSON lines of every write and refusal (api/audit.py); None: no audit log
    audit_log_max_bytes: int = 100 * 1024 * 1024


@dataclass
class ControlPlane:
    """What a running control role offers to the roles started beside it (``serve --all``)."""

    url: str
    admin_token: str
    join_token: str
    store: EtcdStore
    api: ApiServer


async def ensure_cluster_config(store: EtcdStore, asked: ClusterConfig) -> ClusterConfig:
    """The cluster's settings: recorded in etcd by the first control instance, read by the rest.
    Settings asked for that differ from the record are reported and ignored (nodes must agree)."""
    validate_cluster_config(asked)
    with contextlib.suppress(AlreadyExists):
        await store.create(CLUSTER_CONFIG_KEY, msgspec.json.encode(asked))
        return asked
    kv = await store.get(CLUSTER_CONFIG_KEY)
    assert kv is not None, "the cluster settings are never deleted"
    recorded = msgspec.json.decode(kv.value, type=ClusterConfig)
    for diff in differences(recorded, asked):
        log.warning("cluster setting %s: the cluster keeps the recorded value", diff)
    return recorded


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "corral" / "config.json"


def _write_config(path: Path, server: str, token_file: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"server": server, "tokenFile": str(token_file)}, indent=2) + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)


async def run_control(cfg: ControlConfig, *, stop: asyncio.Event,
                      started: Callable[[ControlPlane], Coroutine[object, object, None]] | None = None) -> None:
    data_dir = cfg.data_dir.resolve()
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    etcd: EmbeddedEtcd | None = None
    endpoints = list(cfg.etcd)
    if not endpoints:
        etcd = EmbeddedEtcd(data_dir=data_dir / "etcd", log_path=data_dir / "etcd.log")
        await etcd.start()
        endpoints = [etcd.endpoint]
        log.info("embedded etcd at %s (pid %s)", etcd.endpoint, etcd.pid)
    await asyncio.to_thread((data_dir / "etcd.endpoints").write_text, json.dumps(endpoints) + "\n")  # for `corral etcd`
    store = EtcdStore(endpoints)
    keyring = await asyncio.to_thread(Keyring.from_file, cfg.encryption_key_file or data_dir / "encryption.key")
    audit_log = AuditLog(cfg.audit_log, max_bytes=cfg.audit_log_max_bytes) if cfg.audit_log else None
    api = ApiServer(store, max_body=cfg.max_body, event_ttl=cfg.event_ttl, keyring=keyring, audit_log=audit_log)
    runner: web.AppRunner | None = None
    try:
        await api.ensure_default_namespace()
        cluster = await ensure_cluster_config(store, cfg.cluster)
        log.info("cluster: %s", msgspec.json.encode(cluster).decode())
        admin_token = await api.tokens.ensure_file(data_dir / "admin.token", Identity("admin"))
        join_path = data_dir / "join.token"
        if cfg.join_token:
            await asyncio.to_thread(join_path.write_text, cfg.join_token + "\n")
            await asyncio.to_thread(os.chmod, join_path, 0o600)
        join_token = await api.tokens.ensure_file(join_path, Identity("join"))
        async with asyncio.TaskGroup() as tg:
            caches = tg.create_task(api.run_caches(), name="api-watch-caches")
            runner = web.AppRunner(api.app(), access_log=None, shutdown_timeout=5.0)
            await runner.setup()
            site = web.TCPSite(runner, cfg.host, cfg.port, reuse_address=True)
            await site.start()
            url = f"http://{cfg.host}:{cfg.port}"
            await asyncio.to_thread(_write_config, data_dir / "config.json", url, data_dir / "admin.token")
            if cfg.write_user_config:
                await asyncio.to_thread(_write_config, user_config_path(), url, data_dir / "admin.token")
            log.info("API serving on %s (admin token in %s)", url, data_dir / "admin.token")
            plane = ControlPlane(url=url, admin_token=admin_token, join_token=join_token, store=store, api=api)
            leader_cfg = LeaderConfig(policy=cfg.policy, node_grace=cfg.node_grace, event_ttl=cfg.event_ttl,
                                      metrics_listen=cfg.leader_metrics_listen, job_backoff=cfg.job_backoff)
            if cfg.leader_process:  # the scheduler and controllers in a child process: a core of their own
                leading = supervise_leader(leader_args(endpoints, leader_cfg, ttl=cfg.leader_ttl), stop=stop)
            else:  # in this process: the leader's figures join the API's /metrics
                metrics = LeaderMetrics()
                api.metrics.registry.register(metrics.collector)
                leading = campaign(store, leader_cfg, identity=f"{socket.gethostname()}:{cfg.port}:{os.getpid()}",
                                   ttl=cfg.leader_ttl, metrics=metrics)
            leader = tg.create_task(leading, name="leader")
            tasks = [caches]
            api.metrics.collector.counter(
                "corral_child_restarts", "Restarts of a child process (embedded etcd, containerd, the leader) after it died.",
                lambda: {(name,): float(n) for name, n in RESTARTS.items()}, labels=("child",))
            if etcd is not None:  # restarted on the same ports when it dies: clients reconnect
                keeper = Supervisor("the embedded etcd", etcd, stop=stop, key="etcd", backoff=Backoff(initial=0.1, maximum=5.0, reset_after=10.0))
                tasks.append(tg.create_task(keeper.run(), name="etcd-supervisor"))
            if cfg.snapshot_interval > 0:
                tasks.append(tg.create_task(snapshots.run_scheduled(
                    store, data_dir / "snapshots", interval=cfg.snapshot_interval, retain=cfg.snapshot_retain),
                    name="etcd-snapshots"))
            if started is not None:
                tasks.append(tg.create_task(started(plane), name="control-started"))
            await stop.wait()
            log.info("control role stopping")
            stopping = time.monotonic()
            await runner.cleanup()
            runner = None
            log.info("API stopped in %.2fs", time.monotonic() - stopping)
            if cfg.leader_process:  # the child resigns (revokes its lease) on SIGTERM: let it, so a
                await leader  # successor need not wait out the lease; supervise_leader bounds the wait
                log.info("leader process stopped in %.2fs", time.monotonic() - stopping)
            else:
                tasks.append(leader)
            for t in tasks:
                t.cancel()
    finally:
        if runner is not None:
            with contextlib.suppress(Exception):
                await runner.cleanup()
        await api.logs.close()
        await store.close()
        if etcd is not None:
            t0 = time.monotonic()
            await etcd.stop()
            log.info("embedded etcd stopped in %.2fs", time.monotonic() - t0)
