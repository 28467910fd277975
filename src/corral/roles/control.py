"""The control role: the API server (and, where elected, the scheduler and controllers) on etcd.

``run_control`` owns the lifetime of everything the control plane needs: an embedded etcd when no
endpoints are given (restarted by a ``Supervisor`` whenever it dies), the store, the cluster CA and
this instance's certificates (roles/clustertls.py), the API's watch caches, the HTTPS listener, the
admin token and the ``K10<CA hash>::<secret>`` join token in the data dir, and the client config the
CLI reads (``{"server", "tokenFile", "caFile"}``). It returns when ``stop`` is set,
after closing the listener (in-flight requests get a grace period), the caches and the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import secrets
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
from corral.model.errors import AlreadyExists, Invalid
from corral.roles.clustertls import ControlTls, TlsOptions, ensure_control_tls
from corral.roles.controllers import LeaderConfig
from corral.roles.etcdcluster import (
    MEMBER_WRITE_TIMEOUT,
    EmbeddedMember,
    advertise_host,
    follow_members,
    leave,
    start_embedded,
)
from corral.roles.leader import campaign, leader_args, supervise_leader
from corral.roles.metrics import LeaderMetrics
from corral.store import snapshots
from corral.store.embedded import EmbeddedEtcd
from corral.store.etcd import EtcdStore, EtcdTls
from corral.store.sealing import Keyring
from corral.tls import pki
from corral.tls.tokens import JoinToken, format_token

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
    tls: TlsOptions = field(default_factory=TlsOptions)
    etcd_tls: EtcdTls | None = None  # --etcd-cafile/--etcd-certfile/--etcd-keyfile (an external etcd)
    plain_http: bool = False  # testing only (the TLS cost benchmark): plain HTTP, allowed on loopback only
    join_url: str = ""  # --join: the embedded etcd joins the cluster of this control instance (roles/etcdcluster.py)
    leave: bool = False  # --leave: a clean stop removes this instance's etcd member


@dataclass
class ControlPlane:
    """What a running control role offers to the roles started beside it (``serve --all``)."""

    url: str
    admin_token: str
    join_token: str  # K10<CA hash>::<secret>
    store: EtcdStore
    api: ApiServer
    tls: ControlTls

    @property
    def ca_pem(self) -> bytes:
        return self.tls.ca_pem

    @property
    def ca_file(self) -> Path:
        return self.tls.ca_file


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


def _url_host(host: str) -> str:
    """The host to put in the API's URL: a wildcard listen address is reached on loopback."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "corral" / "config.json"


def _write_config(path: Path, server: str, token_file: Path, ca_file: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"server": server, "tokenFile": str(token_file), "caFile": str(ca_file)},
                              indent=2) + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def _join_secret(asked: str, path: Path, ca_pem: bytes) -> str:
    """The join secret: ``--join-token`` (bare, or K10 for this CA), else the one in ``path``
    (an older file may hold the bare secret), else a new one. ``path`` then holds the K10 form."""
    if asked:
        if asked.startswith("K10"):
            token = JoinToken.parse(asked)
            if token.ca_hash != pki.ca_hash(ca_pem):
                raise Invalid("--join-token pins another CA than this cluster's; give the bare secret or this "
                              "cluster's K10 token")
            return token.secret
        return asked
    if path.exists():
        text = path.read_text().strip()
        return JoinToken.parse(text).secret if text.startswith("K10") else text
    return secrets.token_urlsafe(32)


async def run_control(cfg: ControlConfig, *, stop: asyncio.Event,
                      started: Callable[[ControlPlane], Coroutine[object, object, None]] | None = None) -> None:
    data_dir = cfg.data_dir.resolve()
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    etcd: EmbeddedEtcd | None = None
    member: EmbeddedMember | None = None
    endpoints = list(cfg.etcd)
    etcd_tls, tls_opts = cfg.etcd_tls, cfg.tls
    if not endpoints:  # an embedded etcd member: TLS with client-certificate auth, certificates from the cluster CA
        member = await start_embedded(data_dir, host=advertise_host(cfg.host), tls_opts=cfg.tls,
                                      join_url=cfg.join_url, join_token=cfg.join_token)
        etcd, endpoints, tls_opts = member.etcd, member.endpoints, member.tls_opts
        etcd_tls = etcd.client_tls()
        log.info("embedded etcd member %s at %s (pid %s); members' endpoints %s", etcd.name, etcd.endpoint, etcd.pid,
                 ",".join(endpoints))
    await asyncio.to_thread((data_dir / "etcd.endpoints").write_text, json.dumps(endpoints) + "\n")  # for `corral etcd`
    store = EtcdStore(endpoints, tls=etcd_tls, write_timeout=MEMBER_WRITE_TIMEOUT if member is not None else None)
    keyring = await asyncio.to_thread(Keyring.from_file, cfg.encryption_key_file or data_dir / "encryption.key")
    audit_log = AuditLog(cfg.audit_log, max_bytes=cfg.audit_log_max_bytes) if cfg.audit_log else None
    runner: web.AppRunner | None = None
    api: ApiServer | None = None
    try:
        tls = await ensure_control_tls(store, data_dir, host=cfg.host, opts=tls_opts)
        api = ApiServer(store, max_body=cfg.max_body, event_ttl=cfg.event_ttl, authority=tls.authority,
                        agent_ssl=tls.agent_client, keyring=keyring, audit_log=audit_log)
        await api.ensure_default_namespace()
        cluster = await ensure_cluster_config(store, cfg.cluster)
        log.info("cluster: %s", msgspec.json.encode(cluster).decode())
        admin_token = await api.tokens.ensure_file(data_dir / "admin.token", Identity("admin"))
        join_path = data_dir / "join.token"
        join_secret = await asyncio.to_thread(_join_secret, cfg.join_token, join_path, tls.ca_pem)
        await api.tokens.register(join_secret, Identity("join"))
        join_token = format_token(tls.ca_pem, join_secret)
        await asyncio.to_thread(pki.write_private, join_path, (join_token + "\n").encode())
        async with asyncio.TaskGroup() as tg:
            caches = tg.create_task(api.run_caches(), name="api-watch-caches")
            runner = web.AppRunner(api.app(), access_log=None, shutdown_timeout=5.0)
            await runner.setup()
            if cfg.plain_http and not ipaddress.ip_address(cfg.host).is_loopback:
                raise Invalid("plain HTTP is for measuring TLS's cost on loopback only; the API serves HTTPS")
            site = web.TCPSite(runner, cfg.host, cfg.port, reuse_address=True,
                               ssl_context=None if cfg.plain_http else tls.server)
            await site.start()
            url = f"{'http' if cfg.plain_http else 'https'}://{_url_host(cfg.host)}:{cfg.port}"
            await asyncio.to_thread(_write_config, data_dir / "config.json", url, data_dir / "admin.token", tls.ca_file)
            if cfg.write_user_config:
                await asyncio.to_thread(_write_config, user_config_path(), url, data_dir / "admin.token", tls.ca_file)
            log.info("API serving on %s (admin token in %s, cluster CA in %s)", url, data_dir / "admin.token",
                     tls.ca_file)
            plane = ControlPlane(url=url, admin_token=admin_token, join_token=join_token, store=store, api=api,
                                 tls=tls)
            leader_cfg = LeaderConfig(policy=cfg.policy, node_grace=cfg.node_grace, event_ttl=cfg.event_ttl,
                                      metrics_listen=cfg.leader_metrics_listen, job_backoff=cfg.job_backoff)
            if cfg.leader_process:  # the scheduler and controllers in a child process: a core of their own
                leading = supervise_leader(leader_args(endpoints, leader_cfg, ttl=cfg.leader_ttl, etcd_tls=etcd_tls),
                                           stop=stop)
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
            if member is not None:  # the store follows the etcd cluster's members as they join and leave
                tasks.append(tg.create_task(follow_members(store, member.etcd, data_dir), name="etcd-members"))
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
        if api is not None:
            await api.logs.close()
        if cfg.leave and member is not None:
            try:
                await leave(store, member, data_dir)
            except Exception:
                log.exception("could not leave the etcd cluster; remove this member with `corral control members "
                              "remove %s`", member.etcd.name)
        await store.close()
        if etcd is not None:
            t0 = time.monotonic()
            await etcd.stop()
            log.info("embedded etcd stopped in %.2fs", time.monotonic() - t0)
