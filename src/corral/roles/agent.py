"""The worker role: join, register the Node, heartbeat, and reconcile the containers bound to it.

``run_agent`` talks only to the API (never to etcd), over TLS that trusts only the cluster CA: it
joins with the ``K10…`` join token once and from then on authenticates with its node certificate
(roles/nodetls.py, kept in ``<data-dir>/tls/``), creates or refreshes its Node, and keeps a
heartbeat. Its own listener (logs, for the API only) serves TLS with the same certificate.
An informer (store/informer.py, over the API) follows the containers with ``spec.node=<this node>``; every change, every
containerd task exit and a periodic resync put the container's key on a dedup work queue, and a
few workers (the work loop of ``aiokit/workers.py``, the controllers' too) run the ``NodeReconciler``
for each key — network, storage, containers, state — then write the observed status back. A
failure's type says when it is retried (``TemporaryError`` after its delay, ``PermanentError`` when
the container changes, anything else with per-key backoff). Before the first sweep of
leftovers the reflector must have synced, so a restarted agent never removes what it should adopt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import aiohttp
import msgspec
from aiohttp import web

from corral import __version__
from corral.aiokit.backoff import Backoff
from corral.aiokit.eventrecorder import EventRecorder
from corral.aiokit.histogram import Histogram
from corral.aiokit.queueing import WorkQueue
from corral.aiokit.retrying import retry_temporary
from corral.aiokit.running import run_until_stopped
from corral.aiokit.workers import Outcome, requeue_after_failure, run_workers
from corral.api import retrying
from corral.api.client import ApiClient, HeartbeatChannel, error_from_body
from corral.api.listwatch import api_informer
from corral.api.noderestriction import may_change_label
from corral.model import errors
from corral.model.lifecycle import now_rfc3339, release_agent_finalizer
from corral.model.quantities import format_cpu, format_memory, parse_cpu, parse_memory
from corral.model.resources import (
    Condition,
    Container,
    Node,
    NodeAddress,
    NodeInfo,
    NodeResources,
    NodeSpec,
    NodeStatus,
    ObjectMeta,
    ObjectReference,
    Volume,
)
from corral.network.bridge import ensure_bridge
from corral.network.dns import ClusterDNS
from corral.network.nftables import NftTable
from corral.network.overlay import uplink
from corral.reconcile import logkeeping
from corral.reconcile.events import EventType
from corral.reconcile.imagegc import ImageGC, ImageGCConfig
from corral.reconcile.pipeline import NodeReconciler, ReconcilerConfig
from corral.roles import agentlogs, agentstreams, podcidr
from corral.roles.agenthygiene import DiskPressureReporter, removal_message
from corral.roles.agentpulls import reporting_pulls
from corral.roles.agentsecrets import ApiSecrets, follow_secret_volumes
from corral.roles.agentvolumes import UsageWatch, is_evicted, requeue_mounting, volume_placement
from corral.roles.fencing import Fence, kill_node_tasks
from corral.roles.nodetls import NodeCredentials, node_credentials_in_child
from corral.roles.peers import PeerRoutes, is_loopback, link_mtu
from corral.roles.policies import PolicyEnforcer
from corral.roles.services import ServiceProxy, start_dns, upstreams_of
from corral.runtime.tasks import Task
from corral.store.informer import Change, Informer

log = logging.getLogger(__name__)

Key = tuple[str, str]
CREATE_FAILED = "CreateContainerError"  # the status reason of a container whose pass failed before it ran
FULL_STATUS_EVERY = 30  # beats; with a 2 s period the full Node status is written every minute


class NodeBeats:
    """A node's heartbeats as every agent sends them (the real one and ``corral sim``'s): a frame on
    the heartbeat channel (one small etcd write in the API), the full Node status every
    ``FULL_STATUS_EVERY`` beats, and at once when the API no longer sees the node Ready (the node
    controller marked it lost)."""

    def __init__(self, api: ApiClient, node: str, status: Callable[[], NodeStatus]) -> None:
        self.api = api
        self.node = node
        self.status = status
        self.channel = HeartbeatChannel(api, node)
        self.count = 0

    async def beat(self) -> None:
        self.count += 1
        full = self.count % FULL_STATUS_EVERY == 0
        if not full:
            full = not (await self.channel.beat()).get("ready", False)
        if full:
            await self.api.update_status(Node(metadata=ObjectMeta(name=self.node), status=self.status()))


@dataclass
class AgentConfig:
    servers: list[str]
    data_dir: Path
    node_name: str = field(default_factory=socket.gethostname)
    token: str = ""
    join_token: str = ""
    containerd_socket: str = "/run/containerd/containerd.sock"
    labels: dict[str, str] = field(default_factory=dict)
    reserve_cpu: str = "100m"
    reserve_memory: str = "256Mi"
    max_containers: int = 110
    pod_cidr: str = ""  # an explicit override; empty: the control plane assigns one (roles/podcidr.py)
    bridge: str = "corral0"
    nft_table: str = "corral"  # the agent's nftables table (inet family): policy and service rules
    node_ip: str = "127.0.0.1"
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    heartbeat_seconds: float = 2.0
    resync_seconds: float = 30.0
    workers: int = 32  # passes at once: each mostly waits on containerd and CNI (a burst of 100: 1.3-1.6x ctr, 8: 1.7x)
    insecure_registries: list[str] = field(default_factory=list)
    fence_after: float = 4.0  # no heartbeat for this long: kill every task (roles/fencing.py)
    keep_logs: float = 3600.0  # seconds a deleted container's log is kept (reconcile/logkeeping.py)
    image_gc_high: int = 85  # percent of the image filesystem (reconcile/imagegc.py)
    image_gc_low: int = 80
    image_gc_min_age: float = 120.0  # an image younger than this is never collected
    image_fs: Path | None = None  # a path on the images' filesystem (default: data_dir)
    disk_pressure: int = 90  # percent of the image filesystem: the DiskPressure condition and taint
    pids_limit: int = 4096  # the most processes one container may have (0: no limit)
    metrics_listen: str = ""  # serve the agent's Prometheus metrics here (HOST:PORT; empty: not at all)
    metrics_sample_seconds: float = 10.0  # how often the containers' CPU and memory are read from containerd
    volume_usage_seconds: float = 5.0  # how often limited volumes are measured (roles/agentvolumes.py)
    upstream_dns: list[str] = field(default_factory=list)  # ADDR[:PORT]; empty: the host's resolv.conf
    dns_port: int = 53  # the DNS server's port on the bridge's gateway address


def usage_rates(before: dict[tuple[str, str], tuple[float, float]],
                after: dict[tuple[str, str], tuple[float, float]], seconds: float) -> dict[tuple[str, str], float]:
    """CPU cores each container used between two samples ``seconds`` apart (pure)."""
    if seconds <= 0:
        return {}
    return {k: max(cpu - before[k][0], 0.0) / seconds for k, (cpu, _) in after.items() if k in before}


def host_capacity() -> tuple[int, int]:
    """(millicores, bytes) of this host."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    memory = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
                break
    return cpus * 1000, memory


def node_labels(cfg: AgentConfig, *, hostname: str) -> dict[str, str]:
    """The labels an agent puts on its Node (the configured ones win)."""
    return {"corral.io/hostname": hostname, "corral.io/os": "linux", "corral.io/arch": platform.machine(), **cfg.labels}


def build_node_status(cfg: AgentConfig, *, capacity: tuple[int, int], hostname: str, endpoint: str,
                      runtime: str, runtime_version: str) -> NodeStatus:
    """A Ready NodeStatus for ``capacity`` (millicores, bytes) minus the configured reserve; pure."""
    cpu, memory = capacity
    alloc_cpu = max(cpu - parse_cpu(cfg.reserve_cpu), 0)
    alloc_mem = max(memory - parse_memory(cfg.reserve_memory), 0)
    now = now_rfc3339()
    return NodeStatus(
        addresses=[NodeAddress("InternalIP", cfg.node_ip), NodeAddress("Hostname", hostname)],
        capacity=NodeResources(cpu=format_cpu(cpu), memory=format_memory(memory), containers=cfg.max_containers),
        allocatable=NodeResources(cpu=format_cpu(alloc_cpu), memory=format_memory(alloc_mem),
                                  containers=cfg.max_containers),
        conditions=[Condition(type="Ready", status="True", reason="AgentReady",
                              message="the agent is reconciling and heartbeating", last_transition_time=now)],
        last_heartbeat=now,
        agent_endpoint=endpoint,
        node_info=NodeInfo(agent_version=__version__, containerd_version=runtime_version,
                           kernel_version=platform.release(), os="linux", architecture=platform.machine(),
                           runtime=runtime),
    )


class Agent:
    def __init__(self, cfg: AgentConfig, api: ApiClient, reconciler: NodeReconciler,
                 credentials: NodeCredentials | None = None) -> None:
        self.cfg = cfg
        self.credentials = credentials
        self.api = api
        self.reconciler = reconciler
        self.queue: WorkQueue[Key] = WorkQueue(base_delay=0.5, max_delay=60.0)
        # the containers bound to this node and every Volume, through the API (api/listwatch.py)
        self.reflector: Informer[Key, Container] = api_informer(api, Container,
                                                                field_selector=f"spec.node={cfg.node_name}")
        self.reflector.add_handler(self._on_container)
        # named local volumes: a volume's directory goes when its Volume object does (and nothing here uses it)
        self.volume_reflector: Informer[Key, Volume] = api_informer(api, Volume)
        self.volume_reflector.add_handler(self._on_volume)
        self._volumes_changed = asyncio.Event()
        # Events (aggregated repeats, bounded, drops counted: aiokit/eventrecorder.py)
        self.events = EventRecorder(component="agent", node=cfg.node_name, create=api.create, update=api.update)
        self._own_writes: dict[Key, str] = {}
        self.beats = NodeBeats(api, cfg.node_name, self.node_status)
        self.fence = Fence(fence_after=cfg.fence_after,
                           kill_all=lambda: kill_node_tasks(reconciler.client, cfg.node_name))
        self.endpoint = ""
        # every nftables rule this agent keeps (network policy, service proxy) lives in this one table
        self.nft = NftTable(cfg.nft_table)
        # node hygiene (roles/agenthygiene.py): image GC, DiskPressure
        self.disk_pressure = DiskPressureReporter(api, cfg.node_name, threshold=cfg.disk_pressure,
                                                  status=self.node_status)
        self.image_gc = ImageGC(
            reconciler.client,
            ImageGCConfig(image_fs=cfg.image_fs or cfg.data_dir, high=cfg.image_gc_high, low=cfg.image_gc_low,
                          pressure=cfg.disk_pressure, min_age=cfg.image_gc_min_age),
            on_removed=lambda name, size, usage: self.record_node(
                type="Normal", reason="ImageGCRemoved",
                message=removal_message(name, size, usage, low=cfg.image_gc_low)),
            on_pressure=self.disk_pressure.report,
        )
        # figures for /metrics (roles/metrics.py)
        self.sync_counts: dict[str, int] = {o.value: 0 for o in Outcome}
        self.sync_durations = Histogram()
        self.container_usage: dict[tuple[str, str], tuple[float, float]] = {}  # (ns, name) -> (cpu s, memory B)
        self.usage_rates: dict[tuple[str, str], float] = {}  # (ns, name) -> CPU cores over the last period
        self._terminating: dict[Key, asyncio.Task[None]] = {}  # graceful terminations under way
        self._tg: asyncio.TaskGroup | None = None
        self._sampled_at = time.monotonic()
        self.peers: PeerRoutes | None = None  # routes to other nodes' containers, once the podCIDR is known
        self.policies = PolicyEnforcer(api, self.nft, node=cfg.node_name, bridge=cfg.bridge)
        # Services → the `svc` part of that table, and the answers of the node's DNS server (roles/services.py)
        self.services = ServiceProxy(api, self.nft, containers=lambda: self.reflector.objects, node=cfg.node_name)
        self.dns: ClusterDNS | None = None  # started once the node's subnet is known (settle_network)
        # the TLS contexts made from the node's credentials (the API client's, the listener's): a
        # renewed certificate is loaded into them (_keep_certificate)
        self.tls_contexts: list[ssl.SSLContext] = []

    # --- event sink (for the reconcile steps) -----------------------------------------------

    def record(self, obj: Container, *, type: EventType, reason: str, message: str) -> None:
        self._enqueue_event(obj.metadata.namespace, obj.metadata.name, obj.metadata.uid, type, reason, message)

    def record_orphan(self, *, namespace: str, name: str, uid: str, reason: str, message: str) -> None:
        self._enqueue_event(namespace, name, uid, "Normal", reason, message)

    def record_node(self, *, type: EventType, reason: str, message: str) -> None:
        """An Event about this Node (in the default namespace, as Kubernetes files node events)."""
        self._enqueue_event("", self.cfg.node_name, "", type, reason, message, kind="Node")

    def _enqueue_event(self, namespace: str, name: str, uid: str, type_: EventType, reason: str, message: str,
                       *, kind: str = "Container") -> None:
        self.events.record(ObjectReference(kind=kind, namespace=namespace, name=name, uid=uid), reason=reason,
                           message=message, warning=type_ == "Warning")

    # --- the node ---------------------------------------------------------------------------

    def node_status(self) -> NodeStatus:
        status = build_node_status(self.cfg, capacity=host_capacity(), hostname=socket.gethostname(),
                                   endpoint=self.endpoint, runtime="containerd",
                                   runtime_version=self.reconciler.runtime_version)
        if self.disk_pressure.condition is not None:
            status.conditions.append(self.disk_pressure.condition)
        return status

    async def register(self) -> None:
        # the node's name, as kubelet's kubernetes.io/hostname is: one topology domain per node, even
        # where several agents share a host (tests, hosts as network namespaces)
        labels = node_labels(self.cfg, hostname=self.cfg.node_name)
        node = Node(metadata=ObjectMeta(name=self.cfg.node_name, labels=labels),
                    spec=NodeSpec(pod_cidr=self.cfg.pod_cidr), status=self.node_status())
        try:
            await self.api.create(node)
            log.info("registered node %s", self.cfg.node_name)
        except errors.AlreadyExists:
            async def come_back() -> None:  # the node controller may be writing the lost node's status meanwhile
                current = await self.api.get(Node, self.cfg.node_name)
                if self.cfg.pod_cidr and current.spec.pod_cidr not in ("", self.cfg.pod_cidr):
                    raise errors.Invalid(f"node {self.cfg.node_name} already has podCIDR "
                                         f"{current.spec.pod_cidr}; --pod-cidr {self.cfg.pod_cidr} differs "
                                         "(delete the Node to change it)")
                if self.cfg.pod_cidr and not current.spec.pod_cidr:  # NodeRestriction: only at creation
                    log.warning("--pod-cidr %s is taken only when the Node is created; the control plane "
                                "assigns node %s its podCIDR", self.cfg.pod_cidr, self.cfg.node_name)
                # NodeRestriction: after registering, a node changes only its own labels
                changeable = {k: v for k, v in labels.items() if may_change_label(k)}
                if {**current.metadata.labels, **changeable} != current.metadata.labels:
                    current.metadata.labels = {**current.metadata.labels, **changeable}
                    await self.api.update(current)
                # the full status at once: a restarted agent serves on a new port (agentEndpoint)
                await self.api.update_status(Node(metadata=ObjectMeta(name=self.cfg.node_name),
                                                  status=self.node_status()))
                await self.heartbeat()

            await retrying.retry_on_conflict(come_back, attempts=20, delay=0.05, what=f"node {self.cfg.node_name}")
            log.info("node %s is back", self.cfg.node_name)

    async def heartbeat(self) -> None:
        """One beat (``NodeBeats``); a beat that got through lifts the fence's clock."""
        sent = time.monotonic()
        await self.beats.beat()
        self.fence.contact(sent)

    async def _heartbeats(self) -> None:
        interval = min(self.cfg.heartbeat_seconds, self.cfg.fence_after / 2)  # a missed beat must not fence
        sent = time.monotonic()
        while True:
            await asyncio.sleep(max(0.0, sent + interval - time.monotonic()))  # on a schedule, however long a beat took
            sent = time.monotonic()
            try:
                await asyncio.wait_for(self.heartbeat(), timeout=max(interval, 1.0))
            except errors.StoreUnavailable as e:
                answered_by = self.api.server
                if await self._others_say_store_down(answered_by):
                    self.fence.store_unavailable(sent)  # nobody can release our containers: no fence
                else:
                    log.warning("heartbeat failed: %s (and not every API server says so)", e)
                continue
            except (errors.CorralError, TimeoutError) as e:
                log.warning("heartbeat failed: %s", str(e) or "timed out")
                continue
            if (away := self.fence.store_back()) is not None:
                self.record_node(type="Warning", reason="StoreUnavailable",
                                 message=f"the API's store was unavailable for {away:.0f}s; this node kept its "
                                         "containers running (nothing could release them)")
            if self.fence.fenced and self.peers is not None:  # (fenced while it started: once its network is set)
                await self._lift_fence()

    async def _others_say_store_down(self, answered_by: str) -> bool:
        """Whether every other API server the agent knows answers a beat too, saying its store is unavailable."""

        async def says_store_down(server: str) -> bool:
            try:
                async with self.api.session().put(f"{server}/nodes/{self.cfg.node_name}/heartbeat",
                                                  timeout=aiohttp.ClientTimeout(total=2.0),
                                                  ssl=self.api.ssl_option) as resp:
                    body = await resp.read()
            except (aiohttp.ClientError, TimeoutError):
                return False
            return resp.status == 503 and isinstance(error_from_body(resp.status, body), errors.StoreUnavailable)

        others = [s.rstrip("/") for s in self.api.servers if s.rstrip("/") != answered_by]
        return all(await asyncio.gather(*(says_store_down(s) for s in others)))

    async def _keep_certificate(self) -> None:
        """Renew the node certificate once a third of its validity is left (roles/nodetls.py: in a
        child, authenticated by the current one) and load it into the TLS contexts made from it; a
        failed renewal is tried again with backoff while the current certificate lasts."""
        backoff = Backoff(initial=10.0, maximum=600.0)
        while self.credentials is not None and self.credentials.renew_at > 0:
            wait = self.credentials.renew_at - time.time()
            if wait > 0:
                await asyncio.sleep(min(wait, 3600.0))  # a wall clock set forward is noticed within the hour
                continue
            try:
                renewed = await node_credentials_in_child(
                    servers=self.cfg.servers, data_dir=self.cfg.data_dir, node=self.cfg.node_name,
                    node_ip=self.cfg.node_ip, join_token=self.cfg.join_token, renew=True)
            except errors.CorralError as e:
                log.warning("renewing the node certificate: %s", e)
                renewed = None
            if renewed is None or renewed.renew_at <= time.time():  # (the old one kept: it failed)
                delay = backoff.next()
                log.warning("the node certificate is not renewed yet (it expires %s); trying again in %.0fs",
                            time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.credentials.expires_at)), delay)
                await asyncio.sleep(delay)
                continue
            backoff.succeeded()
            renewed.reload(self.tls_contexts)  # on the loop's thread, between handshakes (two small files)
            self.credentials = renewed
            until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(renewed.expires_at))
            log.info("renewed the node certificate; new connections present it (valid until %s)", until)
            self.record_node(type="Normal", reason="CertificateRenewed",
                             message=f"the node renewed its certificate (valid until {until})")

    # --- fencing (roles/fencing.py): cut off from the API, stop everything; back, resync first ---

    async def _lift_fence(self) -> None:
        async def bound_now() -> set[str]:
            items, _ = await self.api.list(Container, namespace=None, field_selector=f"spec.node={self.cfg.node_name}")
            return {o.metadata.uid for o in items}

        def resync() -> None:
            for key in list(self.reflector.objects):
                self.queue.add(key)

        try:
            await self.fence.lift(known=[o.metadata.uid for o in self.reflector.objects.values()],
                                  bound_now=bound_now, sweep=self.reconciler.sweep, resync=resync)
        except errors.CorralError as e:
            log.warning("contact is back but the fence stays up for now: %s", e)

    # --- keys in, work out ------------------------------------------------------------------

    def _on_container(self, change: Change, key: Key, obj: Container, _old: Container | None) -> None:
        if self._own_writes.pop(key, None) == obj.metadata.resource_version and change is Change.MODIFIED:
            return  # the echo of our own status write: nothing new to reconcile
        self.queue.add(key)

    def _on_exit(self, key: Key) -> None:
        self.queue.add(key)

    def _on_volume(self, change: Change, _key: Key, obj: Volume, _old: Volume | None) -> None:
        if change is Change.DELETED:
            self._volumes_changed.set()
        else:  # bound meanwhile: the containers here that wait for it go on at once
            requeue_mounting(self.queue.add, self.reflector.objects.values(), obj)

    async def _volume_sweeps(self) -> None:
        """Remove named volume directories whose Volume is gone and that no container here mounts."""
        await self.volume_reflector.synced.wait()
        await self.reflector.synced.wait()
        while True:
            wanted = {(v.metadata.namespace, v.metadata.name) for v in self.volume_reflector.objects.values()}
            in_use = {(c.metadata.namespace, src.volume) for c in self.reflector.objects.values()
                      for src in c.spec.volumes if src.volume}
            try:
                await self.reconciler.sweep_named_volumes(wanted | in_use)
            except errors.CorralError as e:
                log.warning("sweep of named volumes failed: %s", e)
            self._volumes_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._volumes_changed.wait(), self.cfg.resync_seconds)

    async def _resync(self) -> None:
        await self.reflector.synced.wait()
        while True:
            for key in list(self.reflector.objects):
                self.queue.add(key)
            try:
                await self.reconciler.sweep(lambda: {o.metadata.uid for o in self.reflector.objects.values()})
            except errors.CorralError as e:
                log.warning("sweep of leftovers failed: %s", e)
            await asyncio.sleep(self.cfg.resync_seconds)

    def _observe(self, outcome: Outcome, seconds: float) -> None:
        self.sync_counts[outcome.value] += 1
        self.sync_durations.observe(seconds)

    async def _sync(self, key: Key) -> float | None:
        """One pass over a container (the work loop's handler); the delay after which to look again."""
        desired = self.reflector.objects.get(key)
        if desired is None:
            return None  # gone from the API: the sweep removes whatever is left of it
        if self.fence.blocks(desired.metadata.uid):
            return None  # fenced (cut off from the API), or released while we were: nothing starts
        if desired.metadata.deletion_timestamp:
            self._terminate(key, desired)
            return None
        if is_evicted(desired):  # over a volume size limit (roles/agentvolumes.py): stopped for good
            await self.reconciler.teardown(desired)
            return None
        # pull progress goes into status.pull while the image is pulled (roles/agentpulls.py)
        try:
            async with reporting_pulls(self.api, desired, on_written=self._own_write) as pulls:
                result = await self.reconciler.sync(desired, pull_progress=pulls.progress)
        except errors.CorralError as e:
            if not isinstance(e, errors.Conflict):  # why it is not running yet, for `corral describe`
                self.record(desired, type="Warning", reason="FailedSync", message=e.message[:1024])
                await self._say_not_started(desired, e)
            raise
        base = pulls.written or desired  # over the last progress written: clears status.pull
        if result.status != base.status:
            # a copy: the reflector's object stays what the API said, so a failed write is retried
            self._own_write(await self.api.update_status(msgspec.structs.replace(base, status=result.status)))
        return result.requeue_after

    async def _say_not_started(self, obj: Container, e: errors.CorralError) -> None:
        """A container not started yet whose pass failed says why in its status — reason
        ``CreateContainerError`` and the error's words, as the kubelet's waiting reason does — so
        ``corral get`` and ``run --wait`` show it, not a bare Scheduled. A running container keeps
        its status: the failure is the agent's, and the container runs on. Best effort: the pass is
        retried whatever happens to this write."""
        if obj.status.phase not in ("Pending", "Scheduled"):
            return
        message = e.message[:1024]
        if (obj.status.reason, obj.status.message) == (CREATE_FAILED, message):
            return  # says so already: no write per retry
        status = msgspec.structs.replace(obj.status, phase="Pending", reason=CREATE_FAILED, message=message,
                                         observed_generation=obj.metadata.generation)
        try:
            self._own_write(await self.api.update_status(msgspec.structs.replace(obj, status=status)))
        except errors.CorralError as write_failed:
            log.debug("could not say why %s/%s did not start: %s", obj.metadata.namespace, obj.metadata.name,
                      write_failed)

    def _own_write(self, written: Container) -> None:
        self._own_writes[(written.metadata.namespace, written.metadata.name)] = written.metadata.resource_version

    def _terminate(self, key: Key, obj: Container) -> None:
        """Start ``obj``'s graceful termination (SIGTERM, its grace period, SIGKILL; then removal and
        the release of its finalizer) on a timer of its own, once: the worker moves on at once, so a
        hundred containers deleted together are gone after one grace period, not after a hundred
        divided among the workers (the kubelet terminates pods in parallel the same way)."""
        if key in self._terminating or self._tg is None:
            return
        self._terminating[key] = self._tg.create_task(self._terminated(key, obj),
                                                      name=f"agent-terminate-{key[0]}/{key[1]}")

    async def _terminated(self, key: Key, obj: Container) -> None:
        try:
            await self.reconciler.teardown(obj)
            await self._release(obj)
            self.queue.forget(key)
        except Exception as e:
            requeue_after_failure(self.queue, key, e, name="agent terminate", describe="/".join(key))
        finally:
            self._terminating.pop(key, None)

    async def _release(self, obj: Container) -> None:
        """Remove the agent's finalizer: the container is gone from this node."""
        with contextlib.suppress(errors.NotFound):  # gone already
            await retrying.update(self.api, Container, obj.metadata.name, release_agent_finalizer,
                                  namespace=obj.metadata.namespace, start=obj)  # a copy: the reflector's stays

    async def _serve_logs(self) -> web.AppRunner:
        if self.credentials is None:
            raise errors.Unavailable("the agent's listener needs the node certificate")
        app = agentlogs.build_app(log_path=self.reconciler.log_path, stats=self.stats,  # only the API's certificate gets in
                                  kept_log=partial(logkeeping.latest_kept, self.cfg.data_dir))
        agentstreams.add_routes(app, targets=agentstreams.StreamTargets(
            client=self.reconciler.client, netns_path=self.reconciler.network.netns_path,
            log_path=self.reconciler.log_path))
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        listener_tls = self.credentials.listener_context()
        self.tls_contexts.append(listener_tls)
        site = web.TCPSite(runner, self.cfg.listen_host, self.cfg.listen_port, ssl_context=listener_tls)
        await site.start()
        server = site._server
        port = self.cfg.listen_port
        if server is not None and server.sockets:  # type: ignore[attr-defined]
            port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        host = f"[{self.cfg.node_ip}]" if ":" in self.cfg.node_ip else self.cfg.node_ip
        self.endpoint = f"https://{host}:{port}"
        return runner

    async def _sample_usage(self) -> None:
        """Read every running container's CPU and memory from containerd now and then (a scrape
        answers from the last sample: it cannot wait on containerd)."""
        while True:
            usage: dict[tuple[str, str], tuple[float, float]] = {}
            for (namespace, name), obj in list(self.reflector.objects.items()):
                if obj.status.phase != "Running" or not obj.status.container_id:
                    continue
                with contextlib.suppress(errors.CorralError):
                    m = await Task(self.reconciler.client, obj.status.container_id).metrics()
                    usage[(namespace, name)] = (m.cpu_usage_ns / 1e9, float(m.memory_usage_bytes))
            now = time.monotonic()
            self.usage_rates = usage_rates(self.container_usage, usage, now - self._sampled_at)
            self.container_usage, self._sampled_at = usage, now
            await asyncio.sleep(self.cfg.metrics_sample_seconds)

    def stats(self) -> dict[str, object]:
        """What ``GET /nodes/{name}/stats`` answers (``corral top``): each running container's CPU
        (cores, over the last sampling period) and memory (bytes), from the last sample."""
        return {"node": self.cfg.node_name, "periodSeconds": self.cfg.metrics_sample_seconds,
                "containers": [{"namespace": ns, "name": name, "cpuCores": round(self.usage_rates.get((ns, name), 0.0), 4),
                                "memoryBytes": int(memory)}
                               for (ns, name), (_, memory) in sorted(self.container_usage.items())]}

    async def _serve_metrics(self) -> web.AppRunner | None:
        if not self.cfg.metrics_listen:
            return None
        # the metrics library only for an agent that serves its metrics (~1 MiB of a worker's memory)
        from prometheus_client import CollectorRegistry

        from corral.aiokit.metrics import serve_metrics
        from corral.roles.metrics import agent_collector

        registry = CollectorRegistry()
        registry.register(agent_collector(self))
        host, _, port = self.cfg.metrics_listen.rpartition(":")
        runner, bound = await serve_metrics(registry, host or "127.0.0.1", int(port))
        log.info("agent metrics on http://%s:%s/metrics", host or "127.0.0.1", bound)
        return runner

    async def settle_network(self) -> PeerRoutes:
        """The node's subnet (its Node's podCIDR, assigned by the control plane or the checked
        override), the containers' MTU, and the routes to other nodes that go with them. The Node is
        registered (and heartbeating) already."""
        cluster = await self.api.cluster_config()
        pod_cidr = await podcidr.wait_for_pod_cidr(self.api, self.cfg.node_name)
        uplink_mtu = 1500 if is_loopback(self.cfg.node_ip) else (await asyncio.to_thread(uplink, self.cfg.node_ip))[1]
        mtu = link_mtu(cluster, node_ip=self.cfg.node_ip, uplink_mtu=uplink_mtu)
        await self.reconciler.use_network(pod_cidr=pod_cidr, mtu=mtu, cluster_cidr=cluster.cluster_cidr)
        log.info("node %s: containers in %s (MTU %d), backend %s", self.cfg.node_name, pod_cidr, mtu, cluster.backend)
        # the node's DNS server listens on the bridge's gateway address before any container needs it
        gateway = await ensure_bridge(self.cfg.bridge, subnet=pod_cidr)
        self.reconciler.cfg.dns_server, self.reconciler.cfg.cluster_domain = gateway, cluster.cluster_domain
        self.dns = await start_dns(self.services, domain=cluster.cluster_domain, host=gateway, port=self.cfg.dns_port,
                                   upstreams=upstreams_of(self.cfg.upstream_dns))
        return PeerRoutes(self.api, node=self.cfg.node_name, node_ip=self.cfg.node_ip, pod_cidr=pod_cidr,
                          bridge=self.cfg.bridge, cluster=cluster, resync=self.cfg.resync_seconds)

    async def run(self) -> None:
        runner = await self._serve_logs()
        metrics = await self._serve_metrics()
        try:
            if self.cfg.pod_cidr:  # an explicit override: refused with a clear error before the Node has it
                await podcidr.check_override_with_api(self.api, self.cfg.pod_cidr, node=self.cfg.node_name,
                                                      cluster=await self.api.cluster_config())
            # the fence is armed from the start: an agent that restarts cut off from the API must stop
            # what the node still runs before the control plane can release it (roles/fencing.py)
            fence = asyncio.create_task(self.fence.watch(), name="agent-fence-while-registering")
            try:
                await self._register_until_done()
            finally:
                fence.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fence
            await self._run_tasks()
        finally:
            await runner.cleanup()
            if metrics is not None:
                await metrics.cleanup()
            if self.dns is not None:
                await self.dns.close()

    async def _register_until_done(self) -> None:
        """Register, retrying while the API or its store is unavailable (a store restart as the agent
        starts must not end the agent, nor `serve --all` with it)."""

        async def attempt() -> None:
            sent = time.monotonic()
            try:
                await self.register()
            except errors.StoreUnavailable:
                if await self._others_say_store_down(self.api.server):
                    self.fence.store_unavailable(sent)  # nobody can release our containers: no fence
                raise
            self.fence.contact(sent)

        await retry_temporary(attempt, what=f"registering node {self.cfg.node_name}")

    async def _run_tasks(self) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg  # terminations run as tasks of their own in it (_terminate)
            tg.create_task(self._heartbeats(), name="agent-heartbeat")  # while the podCIDR is awaited too
            tg.create_task(self.fence.watch(), name="agent-fence")
            tg.create_task(self.events.run(), name="agent-events")
            tg.create_task(self._keep_certificate(), name="agent-certificate")
            self.peers = await self.settle_network()
            tg.create_task(self.reflector.run(), name="agent-reflector")
            tg.create_task(self.services.run(), name="agent-service-proxy")
            tg.create_task(self.reconciler.keep_log_collector(), name="agent-log-collector")
            tg.create_task(self.reconciler.watch_exits(self._on_exit), name="agent-exits")
            tg.create_task(self._resync(), name="agent-resync")
            tg.create_task(self.volume_reflector.run(), name="agent-volume-reflector")
            tg.create_task(self._volume_sweeps(), name="agent-volume-sweeps")
            tg.create_task(UsageWatch(node=self.cfg.node_name, api=self.api, store=self.reconciler.volumes.store,
                                      containers=self.reflector.objects, volumes=self.volume_reflector.objects,
                                      record=self.record, requeue=self.queue.add,
                                      interval=self.cfg.volume_usage_seconds).run(), name="agent-volume-usage")
            tg.create_task(self.image_gc.run_forever(), name="agent-image-gc")
            if self.cfg.keep_logs > 0:
                tg.create_task(logkeeping.expire_forever(self.cfg.data_dir, self.cfg.keep_logs), name="agent-kept-logs")
            tg.create_task(follow_secret_volumes(self.reconciler, lambda: self.reflector.objects.values()),
                           name="agent-secret-volumes")
            tg.create_task(self._sample_usage(), name="agent-usage-samples")  # /metrics and corral top
            tg.create_task(self.peers.run(), name="agent-peer-routes")
            tg.create_task(self.policies.run(), name="agent-network-policy")
            tg.create_task(run_workers(self.queue, self._sync, name="agent", workers=self.cfg.workers,
                                       describe="/".join, observe=self._observe), name="agent-workers")


async def run_agent(cfg: AgentConfig, *, stop: asyncio.Event) -> None:
    if cfg.token:
        raise errors.Unauthorized("a worker no longer takes a node --token: nodes authenticate with their own "
                                  "certificate; join with --join-token K10…")
    creds = await node_credentials_in_child(servers=cfg.servers, data_dir=cfg.data_dir, node=cfg.node_name,
                                            node_ip=cfg.node_ip, join_token=cfg.join_token)
    api_tls = creds.api_context()
    async with ApiClient(cfg.servers, ssl_context=api_tls, trust_source=str(creds.cert_file.parent / "ca.crt")) as api:
        # the subnet comes from the Node once registered (Agent.settle_network → reconciler.use_network),
        # and so does the DNS server's address (the bridge's gateway in that subnet)
        rcfg = ReconcilerConfig(data_dir=cfg.data_dir, node_name=cfg.node_name, containerd_socket=cfg.containerd_socket,
                                bridge=cfg.bridge, insecure_registries=cfg.insecure_registries,
                                pids_limit=cfg.pids_limit, keep_logs=cfg.keep_logs)
        reconciler = NodeReconciler(rcfg)
        reconciler.secrets = ApiSecrets(api)  # Secrets: env, secret volumes, image pull credentials
        agent = Agent(cfg, api, reconciler, creds)
        agent.tls_contexts.append(api_tls)
        reconciler.volumes.placement = volume_placement(agent.volume_reflector.objects, cfg.node_name)
        reconciler.events = agent
        reconciler.on_change = agent.queue.add  # probes: a flipped probe result requeues its key
        await reconciler.start()
        try:
            await run_until_stopped(agent.run(), stop=stop, name="agent")
        finally:
            await reconciler.close()
