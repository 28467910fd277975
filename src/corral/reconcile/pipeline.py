"""The agent's reconcile of one container, in the brief's order: network → storage → containers → state.

``NodeReconciler`` holds the node's handles on the world — the containerd client, the ``Network``,
the volume directories — and nothing else that matters: every pass reads the world again, so a
restarted agent (or containerd) converges on the same answer. ``sync`` makes one desired container
real and returns its observed status; ``teardown`` stops and removes it (task with its grace
period, containerd container and snapshot, namespace, IP, emptyDir) in the reverse order; ``sweep``
removes whatever carries corral's marks but belongs to no desired container (and reports each as an
Event); ``watch_exits`` turns containerd's exit and OOM events into keys to reconcile. Why a run
ended (the OOM killer, a liveness kill) is written as a label on the containerd record when it
happens and read back from there, so a restarted agent still reports it (reconcile/naming.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from corral.aiokit.backoff import Backoff
from corral.aiokit.processes import Supervisor
from corral.model.errors import Conflict, CorralError, FieldError, Invalid, NotFound
from corral.model.resources import Container, ContainerStatus
from corral.network import masq
from corral.network.attachments import Network
from corral.network.config import NetworkConfig, PortMapping
from corral.reconcile import logkeeping, naming
from corral.reconcile.containers import ImageCache, ImagePullBackOff, ImagePullFailed, PullBackoff, ensure_container
from corral.reconcile.events import EventSink
from corral.reconcile.probes import Prober
from corral.reconcile.secretrefs import RETRY_SECONDS, SecretMissing, SecretSource, ensure_secret_volumes
from corral.reconcile.state import ensure_state, stop
from corral.reconcile.storage import VolumeStep
from corral.runtime import containers as ctrs
from corral.runtime import events as rt_events
from corral.runtime import logpipes, tasks
from corral.runtime.client import Client
from corral.runtime.pull import ProgressFn
from corral.runtime.spec import BindMount
from corral.storage.secretfiles import SecretFiles

log = logging.getLogger(__name__)

Key = tuple[str, str]


@dataclass
class ReconcilerConfig:
    data_dir: Path
    node_name: str
    containerd_socket: str
    pod_cidr: str = "10.88.0.0/24"  # until use_network says the node's own
    bridge: str = "corral0"
    insecure_registries: list[str] = field(default_factory=list)
    log_max_bytes: int = 10 * 1024 * 1024
    log_max_files: int = 3
    keep_logs: float = 0.0  # seconds a deleted container's log is kept (reconcile/logkeeping.py); 0: not
    dns_server: str = ""  # the node's DNS server: containers' resolv.conf names it (else the host's)
    cluster_domain: str = "cluster.local"
    pids_limit: int = 4096  # the most processes one container may have (0: no limit)


@dataclass
class SyncResult:
    status: ContainerStatus
    requeue_after: float | None = None


class _NullSink:
    def record(self, obj: Container, *, type: str, reason: str, message: str) -> None:
        log.info("%s/%s %s: %s", obj.metadata.namespace, obj.metadata.name, reason, message)

    def record_orphan(self, *, namespace: str, name: str, uid: str, reason: str, message: str) -> None:
        log.info("%s/%s %s: %s", namespace, name, reason, message)


class NodeReconciler:
    def __init__(self, cfg: ReconcilerConfig) -> None:
        self.cfg = cfg
        self.client = Client(cfg.containerd_socket)
        self.network = Network(NetworkConfig(data_dir=cfg.data_dir, bridge=cfg.bridge, subnet=cfg.pod_cidr,
                                             netns_prefix=naming.netns_prefix(cfg.data_dir), ip_masq=False))
        self.volumes = VolumeStep(cfg.data_dir)
        self.events: EventSink = _NullSink()
        self.runtime_version = ""
        self._keys: dict[str, Key] = {}  # containerd id -> (namespace, name)
        self._uids: dict[str, str] = {}  # uid -> containerd id last synced
        # uids whose adoption this agent has reported (an Adopted Event once per agent run)
        self._adopt_checked: set[str] = set()
        self._images = ImageCache()
        self._pull_backoff = PullBackoff()  # failed pulls: the next waits 10 s doubling to 5 min
        # probes (reconcile/probes.py): a flipped result requeues the key through ``on_change`` (set by the agent)
        self.on_change: Callable[[Key], None] = lambda key: None
        self.prober = Prober(self.client, on_change=lambda key: self.on_change(key))
        # Secrets: read through the API by the agent (set by it); secret volumes on tmpfs
        self.secrets: SecretSource | None = None
        self.secret_files = SecretFiles(cfg.data_dir)
        # every container's stdout and stderr: one collector process for the node (runtime/logpipes.py)
        self.log_collector = logpipes.LogCollector(cfg.data_dir, max_bytes=cfg.log_max_bytes,
                                                   max_files=cfg.log_max_files)
        self._fifo_readers = logpipes.ReadEnds()  # keep what the pipes hold while the collector is away

    async def start(self) -> None:
        await asyncio.to_thread(self.cfg.data_dir.mkdir, parents=True, exist_ok=True)
        await self.client.connect()
        self.runtime_version = await self.client.version()
        await self.log_collector.start()  # adopts the one a killed agent left running

    async def keep_log_collector(self) -> None:
        """Start the node's log collector again whenever it exits, until cancelled (``start`` started it)."""
        await Supervisor("the log collector", self.log_collector, stop=asyncio.Event(), key="logcollector",
                         backoff=Backoff(initial=0.05, maximum=5.0, reset_after=10.0)).run()

    async def use_network(self, *, pod_cidr: str, mtu: int, cluster_cidr: str) -> None:
        """Attach containers to ``pod_cidr`` (the node's slice, known once the Node has it) with links
        of ``mtu``; masquerade what leaves for outside ``cluster_cidr``. Call before the first sync."""
        self.cfg.pod_cidr = pod_cidr
        self.network = Network(NetworkConfig(data_dir=self.cfg.data_dir, bridge=self.cfg.bridge, subnet=pod_cidr,
                                             mtu=mtu, netns_prefix=naming.netns_prefix(self.cfg.data_dir),
                                             ip_masq=False))
        # one masquerade rule for the whole container subnet, not a chain per container
        await masq.ensure_subnet_masquerade(subnet=pod_cidr, bridge=self.cfg.bridge, cluster_cidr=cluster_cidr)

    async def close(self) -> None:
        await self.prober.aclose()
        await self.client.close()
        await self.log_collector.stop_if_idle()  # the node's: it outlives the agent while containers run
        self._fifo_readers.release_all()

    # --- paths -------------------------------------------------------------------------------

    def _log_file(self, uid: str) -> Path:
        return self.cfg.data_dir / "logs" / uid / "container.log"

    def log_path(self, uid: str) -> Path | None:
        path = self._log_file(uid)
        return path if uid and path.parent.exists() else None

    def _log_pipes(self, uid: str) -> tuple[Path, Path]:
        """The container's log directory and its stdout and stderr FIFOs, held open (blocking)."""
        self._log_file(uid).parent.mkdir(parents=True, exist_ok=True)
        fifos = logpipes.ensure(self.cfg.data_dir, uid)
        self._fifo_readers.hold(uid, fifos)  # before the task: the shim's first open waits for a reader
        return fifos

    def _run_dir(self, uid: str) -> Path:
        return self.cfg.data_dir / "containers" / uid

    # --- one container ----------------------------------------------------------------------

    async def sync(self, obj: Container, *, pull_progress: ProgressFn | None = None) -> SyncResult:
        """Make ``obj`` real; ``pull_progress`` hears how far the pull of its image is, if one is needed."""
        uid = _checked_uid(obj)
        key = (obj.metadata.namespace, obj.metadata.name)
        # 1. network — the namespace path is known up front, so CNI's ADD (the slow part: veth, bridge,
        # iptables) runs while the storage and containerd steps prepare; the task starts (step 4) only
        # once both are done, so the container never runs without its network.
        ports = [PortMapping(host_port=p.host_port, container_port=p.container_port, protocol=p.protocol)
                 for p in obj.spec.ports if p.host_port]
        t0 = time.perf_counter()
        attaching = asyncio.create_task(self.network.ensure(uid, ports), name=f"attach {uid}")
        try:
            # 2. storage (secret volumes first: a missing Secret stops here, with a clear status)
            secret_mounts = await self._secret_volumes(obj)
            # 3. containers
            cid = naming.containerd_id(obj)
            self._keys[cid] = key
            try:
                # a named volume bound to another node waits like a missing Secret (reconcile/storage.py)
                mounts = await self.volumes.ensure(obj, prepared=secret_mounts)
                t_vol = time.perf_counter()
                prepared = await ensure_container(
                    self.client, obj, node=self.cfg.node_name, netns_path=str(self.network.netns_path(uid)),
                    mounts=mounts, insecure_registries=self.cfg.insecure_registries, run_dir=self._run_dir(uid),
                    image_cache=self._images, dns=(self.cfg.dns_server, self.cfg.cluster_domain),
                    secrets=self.secrets, pids_limit=self.cfg.pids_limit, pull_progress=pull_progress,
                    pull_backoff=self._pull_backoff,
                )
            except SecretMissing as e:  # waits for the Secret; names it and the key, never a value
                attachment = await attaching
                if obj.status.reason != e.reason or obj.status.message != e.message:
                    self.events.record(obj, type="Warning", reason=e.reason, message=e.message)
                status = ContainerStatus(phase="Pending", node=obj.spec.node, ip=attachment.ip, reason=e.reason,
                                         message=e.message, observed_generation=obj.metadata.generation,
                                         restart_count=obj.status.restart_count)
                return SyncResult(status, requeue_after=RETRY_SECONDS)
            except ImagePullFailed as e:  # a pull that failed, or one not tried yet (ImagePullBackOff)
                attachment = await attaching
                if not isinstance(e, ImagePullBackOff):
                    self.events.record(obj, type="Warning", reason="ImagePullFailed", message=e.message)
                status = ContainerStatus(phase="Pending", node=obj.spec.node, ip=attachment.ip, reason=e.reason,
                                         message=e.message, observed_generation=obj.metadata.generation,
                                         restart_count=obj.status.restart_count)
                return SyncResult(status, requeue_after=e.delay)
            t_ctr = time.perf_counter()
            attachment = await attaching
            t_net = time.perf_counter()
        finally:
            if not attaching.done():
                attaching.cancel()
                with contextlib.suppress(asyncio.CancelledError, CorralError):
                    await attaching
        if prepared.created:
            self.events.record(obj, type="Normal", reason="Created", message=f"created containerd container {cid}")
        elif uid not in self._adopt_checked:
            self.events.record(obj, type="Normal", reason="Adopted",
                               message=f"adopted containerd container {cid} left by an earlier agent")
        self._adopt_checked.add(uid)
        if self._uids.get(uid, cid) != cid:  # probes: those of a replaced generation end
            await self.prober.stop(self._uids[uid])
        self._uids[uid] = cid
        # 4. running state
        fifos = await asyncio.to_thread(self._log_pipes, uid)  # read by the node's log collector
        # why the last run ended, as the containerd record says (the OOM and liveness labels)
        ended = {k: v for k, v in prepared.info.labels.items() if k in naming.ENDED_LABELS and v}
        # probes: the restart policy below restarts a killed task
        if (killed := await self._kill_if_not_live(obj, cid)) is not None:
            ended[naming.LABEL_KILLED_BY] = killed
        cause = ended.get(naming.LABEL_KILLED_BY, "")
        probe_ready = None if obj.spec.readiness_probe is None else self.prober.ready(cid)

        async def before_start() -> None:
            if ended:  # a new run: what ended the last one is no longer news
                await ctrs.set_labels(self.client, cid, dict.fromkeys(ended, ""))
            # the run before is --previous
            await asyncio.to_thread(logkeeping.begin_run, self._log_file(uid), self.cfg.log_max_files)

        t_start = time.perf_counter()
        outcome = await ensure_state(self.client, obj, cid, stdio=tasks.Stdio(str(fifos[0]), str(fifos[1])),
                                     oom_killed=ended.get(naming.LABEL_OOM_KILLED) == "true",
                                     ip=attachment.ip, probe_ready=probe_ready, before_start=before_start)
        t_state = time.perf_counter()
        log.debug("sync %s/%s: storage %.0f ms, containers %.0f ms, network done %.0f ms later, state %.0f ms",
                  *key, (t_vol - t0) * 1e3, (t_ctr - t_vol) * 1e3, (t_net - t_ctr) * 1e3, (t_state - t_start) * 1e3)
        outcome.status.image_digest = prepared.image.target_digest
        if outcome.started:
            self.events.record(obj, type="Normal", reason="Started", message=f"started {obj.spec.image}")
        if outcome.restarted:
            self.events.record(obj, type="Normal", reason="Restarted",
                               message=f"restart {outcome.status.restart_count} (exit code {outcome.status.exit_code})"
                                       + (f": {cause}" if cause else ""))
        if outcome.status.reason == "CrashLoopBackOff" and obj.status.reason != "CrashLoopBackOff":
            self.events.record(obj, type="Warning", reason="BackOff", message=outcome.status.message)
        if outcome.status.phase in ("Succeeded", "Failed") and obj.status.phase != outcome.status.phase:
            self.events.record(obj, type="Normal" if outcome.status.phase == "Succeeded" else "Warning",
                               reason=outcome.status.reason, message=outcome.status.message)
        await self._probe(obj, cid, outcome.status, cause="" if outcome.restarted else cause)
        return SyncResult(outcome.status, outcome.requeue_after)

    # --- secret volumes (reconcile/secretrefs.py) ----------------------------------------------

    async def _secret_volumes(self, obj: Container) -> dict[str, BindMount]:
        sc = obj.spec.security_context
        owner = (sc.run_as_user or 0, sc.run_as_group or 0) if sc is not None else (0, 0)
        mounts, _ = await ensure_secret_volumes(obj, self.secrets, self.secret_files, owner=owner)
        return mounts

    async def refresh_secret_volumes(self, obj: Container) -> bool:
        """Rewrite a running container's secret files from the Secrets as they are now; whether any changed.
        A Secret that went away leaves the files as they were (the container keeps what it had)."""
        if not any(v.secret is not None for v in obj.spec.volumes) or obj.metadata.uid not in self._uids:
            return False
        sc = obj.spec.security_context
        owner = (sc.run_as_user or 0, sc.run_as_group or 0) if sc is not None else (0, 0)
        try:
            _, changed = await ensure_secret_volumes(obj, self.secrets, self.secret_files, owner=owner)
        except SecretMissing as e:
            log.info("%s/%s: keeping its secret files: %s", obj.metadata.namespace, obj.metadata.name, e.message)
            return False
        return changed

    # --- probes (reconcile/probes.py) ---------------------------------------------------------

    async def _kill_if_not_live(self, obj: Container, cid: str) -> str | None:
        """A failing liveness probe: SIGKILL the task and let it exit, so ``ensure_state`` finds it
        stopped and applies the restart policy (restartCount + 1, with the usual back-off). Why,
        when it killed: also written on the containerd record, where a restarted agent reads it."""
        failure = self.prober.liveness_failure(cid)
        if failure is None:
            return None
        await self.prober.stop(cid)
        task = tasks.Task(self.client, cid)
        with contextlib.suppress(NotFound):
            if (await task.status()).state != "running":
                return None  # it ended by itself meanwhile: an exit, not a liveness kill
        cause = f"LivenessProbeFailed: {failure}"[:1024]  # containerd keeps label values under 4 KiB
        await ctrs.set_labels(self.client, cid, {naming.LABEL_KILLED_BY: cause})
        self.events.record(obj, type="Warning", reason="LivenessProbeFailed", message=f"{failure}; killing the task")
        with contextlib.suppress(NotFound, Conflict):
            await task.kill(signal.SIGKILL, all=True)
        with contextlib.suppress(NotFound, TimeoutError):
            await asyncio.wait_for(task.wait(), 10)
        return cause

    async def _probe(self, obj: Container, cid: str, status: ContainerStatus, *, cause: str) -> None:
        """Probes run while the task runs; the status says why a liveness kill happened until the restart."""
        if cause and status.reason:
            status.message = f"{cause}; {status.message}"
        if status.phase == "Running" and status.reason != "CrashLoopBackOff":
            await self.prober.ensure(obj, cid, ip=status.ip, started_at=status.started_at)
        else:
            await self.prober.stop(cid)

    async def teardown(self, obj: Container) -> None:
        uid = _checked_uid(obj)
        grace = obj.metadata.deletion_grace_period_seconds
        if grace is None:
            grace = obj.spec.termination_grace_period_seconds
        for info in await ctrs.list_containers(self.client, {naming.LABEL_UID: uid}):
            await self.prober.stop(info.id)  # probes
            result = await stop(self.client, info.id, grace=float(grace))
            await ctrs.delete_container(self.client, info.id)
            self._keys.pop(info.id, None)
            if result is not None:
                self.events.record(obj, type="Normal", reason="Killed",
                                   message=f"stopped (exit code {result.code}) and removed {info.id}")
        if self.cfg.keep_logs > 0:
            await asyncio.to_thread(logkeeping.keep, self._log_file(uid).parent, self.cfg.data_dir,
                                    namespace=obj.metadata.namespace, name=obj.metadata.name, uid=uid)
        await self._remove_rest(uid)
        self._uids.pop(uid, None)
        self._adopt_checked.discard(uid)

    async def _remove_rest(self, uid: str) -> None:
        self._pull_backoff.forget(uid)
        await self.network.remove(uid)
        await self.volumes.remove_container(uid)
        await self.secret_files.remove(uid)
        await asyncio.to_thread(shutil.rmtree, self._run_dir(uid), True)
        self._fifo_readers.release(uid)
        await asyncio.to_thread(logpipes.remove, self.cfg.data_dir, uid)
        await asyncio.to_thread(shutil.rmtree, self._log_file(uid).parent, True)

    # --- leftovers --------------------------------------------------------------------------

    async def sweep(self, wanted: set[str] | Callable[[], set[str]]) -> None:
        """Remove every trace of containers whose uid is not wanted; an Event for each.

        The world is listed *before* the wanted set is taken (``wanted`` may be a callable for
        that): whatever a worker attached was wanted when it did, so it is in a set taken later,
        and only what the API dropped meanwhile is removed.
        """
        found = await ctrs.list_containers(self.client, {naming.LABEL_NODE: self.cfg.node_name})
        leftovers: set[str] = set()
        leftovers.update(await self.network.list_attached())
        leftovers.update(await self.network.list_netns())
        leftovers.update((await self.network.ipam_holders()).values())
        leftovers.update(await self.volumes.list_container_dirs())
        leftovers.update(await self.secret_files.list_uids())
        leftovers.update(await asyncio.to_thread(_subdirs, self.cfg.data_dir / "containers"))
        leftovers.update(await asyncio.to_thread(logpipes.list_uids, self.cfg.data_dir))
        keep = wanted() if callable(wanted) else wanted
        for info in found:
            uid = info.labels.get(naming.LABEL_UID, "")
            if uid in keep:
                continue
            await self.prober.stop(info.id)  # probes
            await stop(self.client, info.id, grace=2.0)
            await ctrs.delete_container(self.client, info.id)
            self.events.record_orphan(namespace=info.labels.get(naming.LABEL_NAMESPACE, ""),
                                      name=info.labels.get(naming.LABEL_NAME, ""), uid=uid, reason="RemovedOrphan",
                                      message=f"removed containerd container {info.id}: no such container in the API")
        await self.prober.retain({cid for uid, cid in self._uids.items() if uid in keep})  # probes
        for uid in leftovers - keep:
            await self._remove_rest(uid)
            log.info("removed leftovers of container uid %s (netns, IP, volumes, files)", uid)

    async def sweep_named_volumes(self, keep: set[tuple[str, str]]) -> None:
        """Remove the named volume directories on this node that are not in ``keep`` ((namespace, name))."""
        for namespace, name in await self.volumes.list_named():
            if (namespace, name) not in keep:
                await self.volumes.remove_named(namespace, name)
                log.info("removed named volume %s/%s: its Volume is gone and nothing here mounts it", namespace, name)

    # --- exits ------------------------------------------------------------------------------

    async def _key_for(self, cid: str) -> Key | None:
        key = self._keys.get(cid)
        if key is None:
            with contextlib.suppress(NotFound):
                info = await ctrs.get_container(self.client, cid)
                key = (info.labels.get(naming.LABEL_NAMESPACE, ""), info.labels.get(naming.LABEL_NAME, ""))
                self._keys[cid] = key
        return key

    async def watch_exits(self, on_exit: Callable[[Key], None]) -> None:
        """Feed keys from containerd's task events (exits, OOMs) until cancelled; reconnects by itself."""
        while True:
            try:
                async with rt_events.subscribe(self.client, filters=rt_events.EXIT_AND_OOM) as stream:
                    await self._feed_exits(stream, on_exit)
            except CorralError as e:
                log.warning("containerd events: %s; resubscribing", e)
                await asyncio.sleep(1.0)

    async def _mark_oom_killed(self, cid: str) -> None:
        """Write the OOM kill on the containerd record (before its exit is fed: the sync it starts reads it)."""
        try:
            await ctrs.set_labels(self.client, cid, {naming.LABEL_OOM_KILLED: "true"})
        except NotFound:
            pass  # not a container of ours any more
        except CorralError as e:
            log.warning("could not record the OOM kill of %s: %s", cid, e)

    async def _feed_exits(self, stream: rt_events.Subscription, on_exit: Callable[[Key], None]) -> None:
        async for ev in stream:
            if isinstance(ev, rt_events.TaskOOM):
                await self._mark_oom_killed(ev.container_id)
            elif isinstance(ev, rt_events.Resubscribed):
                for key in set(self._keys.values()):
                    on_exit(key)  # a gap: everything may have changed
                continue
            cid = getattr(ev, "container_id", "")
            if cid:
                found = await self._key_for(cid)
                if found is not None:
                    on_exit(found)


_SAFE_UID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def _checked_uid(obj: Container) -> str:
    """The container's uid, which names directories on this node: never ``..``, a ``/`` or empty."""
    uid = obj.metadata.uid
    if not _SAFE_UID.match(uid) or ".." in uid:
        raise Invalid(f"metadata.uid {uid!r} cannot name a directory on the node",
                      details=[FieldError("metadata.uid", "letters, digits, '-', '_' and '.' only")])
    return uid


def _subdirs(path: Path) -> list[str]:
    try:
        return [p.name for p in path.iterdir() if p.is_dir()]
    except FileNotFoundError:
        return []


__all__ = ["NodeReconciler", "ReconcilerConfig", "SyncResult"]
