"""Step 3: a containerd container exists for the desired container, with the right spec.

The image is made present first (pulled if missing; the pull's error becomes the container's
status). The containerd container is keyed by (uid, generation): one for an older generation is a
spec that changed, and is removed (its task stopped gracefully) before the new one is created. One
that already exists for this generation is adopted as it is — a restarted agent never recreates
what runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from corral.aiokit.backoff import exponential
from corral.model.errors import CorralError, NotFound, TemporaryError
from corral.model.quantities import parse_cpu, parse_memory
from corral.model.resources import Container
from corral.reconcile import naming
from corral.reconcile.secretrefs import SecretSource, pull_credentials, resolve_env
from corral.reconcile.state import stop
from corral.runtime import containers as ctrs
from corral.runtime import images, pull
from corral.runtime._pb.containerd.services.images.v1 import images_pb2
from corral.runtime.auth import Credentials
from corral.runtime.client import Client
from corral.runtime.containers import ContainerInfo
from corral.runtime.distribution import RegistryUnauthorized
from corral.runtime.reference import parse_reference
from corral.runtime.security import Confinement
from corral.runtime.spec import BindMount, build_spec
from corral.runtime.unpack import SNAPSHOTTER

log = logging.getLogger(__name__)

PULL_RETRY_SECONDS = 10.0  # a failed pull is tried again this much later (doubling with each failure in a row)
PULL_BACKOFF_MAX = 300.0  # … up to 5 minutes, as the kubelet's image back-off


class ImagePullFailed(TemporaryError):
    """The image could not be pulled; the message is the registry's (or the network's) words. Tried
    again after ``delay`` (the container waits Pending, its status saying why)."""

    code = 502
    reason = "ImagePullFailed"
    delay = PULL_RETRY_SECONDS


class ImagePullBackOff(ImagePullFailed):
    """Not pulled now: the last pulls of this image for this container failed, and the next is not
    due before ``delay`` seconds; the message says why the last one failed."""

    reason = "ImagePullBackOff"


class PullBackoff:
    """Failed pulls in a row per (container uid, image): the next pull waits 10 s, 20 s, 40 s … up to
    5 minutes after the last failure, however often the container is looked at meanwhile (a
    resync, an event) — a registry that refuses is not asked again every pass. In memory, like
    the kubelet's: a restarted agent tries at once."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failed: dict[tuple[str, str], tuple[int, float, str]] = {}  # → (failures, not before, last message)

    def check(self, key: tuple[str, str]) -> None:
        """``ImagePullBackOff`` while ``key``'s back-off runs."""
        failed = self._failed.get(key)
        if failed is None:
            return
        failures, not_before, message = failed
        left = not_before - self._clock()
        if left > 0:
            raise ImagePullBackOff(f"back-off pulling {key[1]} after {failures} failed "
                                   f"pull{'s' if failures > 1 else ''}: {message}", delay=left)

    def failed(self, key: tuple[str, str], message: str) -> float:
        """Count a failed pull; seconds until the next may be tried."""
        failures = self._failed.get(key, (0, 0.0, ""))[0]
        delay = exponential(failures, initial=PULL_RETRY_SECONDS, maximum=PULL_BACKOFF_MAX)
        self._failed[key] = (failures + 1, self._clock() + delay, message)
        return delay

    def forget(self, uid: str) -> None:
        """The container's image is there (or the container is gone): no back-off left for it."""
        if self._failed:
            for key in [k for k in self._failed if k[0] == uid]:
                del self._failed[key]


@dataclass(frozen=True, slots=True)
class Prepared:
    info: ContainerInfo
    image: images.Image
    created: bool


class ImageCache:
    """Resolved images by name, trusted while containerd's record still points at the same target.

    Resolving an image reads its manifest and config from the content store (several calls); the
    check that the record is unchanged is one ``Images.Get``.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, images.Image] = {}

    async def get(self, client: Client, name: str) -> images.Image:
        cached = self._by_name.get(name)
        if cached is not None:
            reply = await client.call(client.images.Get, images_pb2.GetImageRequest(name=name))
            if reply.image.target.digest == cached.target_digest:
                return cached
        image = await images.get_image(client, name)
        self._by_name[name] = image
        return image

    def forget(self, name: str) -> None:
        self._by_name.pop(name, None)


async def ensure_image(client: Client, ref: str, *, insecure_registries: list[str],
                       cache: ImageCache | None = None,
                       credentials: Callable[[], Awaitable[Credentials | None]] | None = None,
                       progress: pull.ProgressFn | None = None,
                       backoff: tuple[PullBackoff, str] | None = None) -> images.Image:
    """The image, pulled if missing (with the container's ``imagePullSecrets``, read only then);
    ``progress`` hears how far the pull is (nothing at all when the image is there). ``backoff``
    (the node's ``PullBackoff`` and the container's uid): a pull is not tried while the back-off of
    the last failed one runs (``ImagePullBackOff``), and a failed one's ``delay`` is its back-off."""
    name = parse_reference(ref).name
    try:
        if cache is not None:
            image = await cache.get(client, name)
        else:
            image = await images.get_image(client, name)
    except NotFound:
        if cache is not None:
            cache.forget(name)
    else:
        if backoff is not None:
            backoff[0].forget(backoff[1])
        return image
    if backoff is not None:
        backoff[0].check((backoff[1], ref))
    try:
        image = await _pull(client, ref, insecure_registries=insecure_registries, credentials=credentials,
                            progress=progress)
    except ImagePullFailed as e:
        if backoff is not None:
            e.delay = backoff[0].failed((backoff[1], ref), e.message)
        raise
    if backoff is not None:
        backoff[0].forget(backoff[1])
    return image


async def _pull(client: Client, ref: str, *, insecure_registries: list[str],
                credentials: Callable[[], Awaitable[Credentials | None]] | None,
                progress: pull.ProgressFn | None) -> images.Image:
    creds = await credentials() if credentials is not None else None
    try:
        return await pull.pull(client, ref, insecure_registries=insecure_registries, credentials=creds,
                               progress=progress)
    except RegistryUnauthorized as e:
        hint = ("; give the container imagePullSecrets (a corral.io/dockerconfigjson Secret)" if creds is None
                else " (with the credentials of its imagePullSecrets)")
        raise ImagePullFailed(f"pulling {ref}: unauthorized: {e.message.split(';')[0]}{hint}") from e
    except CorralError as e:
        raise ImagePullFailed(f"pulling {ref}: {e.message}") from e


def _limits(obj: Container) -> tuple[int | None, int | None, int | None]:
    res = obj.spec.resources
    cpu_limit = parse_cpu(res.limits.cpu) if res.limits.cpu else None
    cpu_request = parse_cpu(res.requests.cpu) if res.requests.cpu else None
    memory = parse_memory(res.limits.memory) if res.limits.memory else None
    return cpu_limit, cpu_request, memory


async def ensure_container(
    client: Client,
    obj: Container,
    *,
    node: str,
    netns_path: str,
    mounts: list[BindMount],
    insecure_registries: list[str],
    run_dir: Path,
    image_cache: ImageCache | None = None,
    dns: tuple[str, str] = ("", ""),
    secrets: SecretSource | None = None,
    pids_limit: int = 0,
    pull_progress: pull.ProgressFn | None = None,
    pull_backoff: PullBackoff | None = None,
) -> Prepared:
    cid = naming.containerd_id(obj)
    existing = await ctrs.list_containers(client, {naming.LABEL_UID: obj.metadata.uid})
    current: ContainerInfo | None = None
    for info in existing:
        if info.id == cid:
            current = info
        else:  # an older generation: replaced, its task stopped gracefully first (SIGTERM, grace, SIGKILL)
            await stop(client, info.id, grace=float(obj.spec.termination_grace_period_seconds))
            await ctrs.delete_container(client, info.id)
    image = await ensure_image(client, obj.spec.image, insecure_registries=insecure_registries, cache=image_cache,
                               credentials=lambda: pull_credentials(obj, secrets), progress=pull_progress,
                               backoff=(pull_backoff, obj.metadata.uid) if pull_backoff is not None else None)
    if current is not None:
        return Prepared(current, image, created=False)
    env = await resolve_env(obj, secrets)  # Secrets' values, fixed at creation (like Kubernetes)
    cpu_limit, cpu_request, memory = _limits(obj)
    files = await asyncio.to_thread(_write_etc_files, run_dir, obj, dns)
    spec = build_spec(
        container_id=cid,
        image_config=image.config,
        command=obj.spec.command,
        args=obj.spec.args,
        env=env,
        working_dir=obj.spec.working_dir,
        user=obj.spec.user,
        hostname=obj.metadata.name,
        cpu_limit_millis=cpu_limit,
        cpu_request_millis=cpu_request,
        memory_limit_bytes=memory,
        netns_path=netns_path,
        mounts=[*files, *mounts],
        cgroups_path=f"/corral/{cid}",
        pids_limit=pids_limit or None,
        confinement=confinement_of(obj),
    )
    labels = naming.labels(obj, node=node)
    await ctrs.create_container(client, id=cid, image=image, spec=spec, labels=labels)
    info = ContainerInfo(id=cid, labels=labels, image=image.name, runtime=ctrs.RUNTIME, snapshotter=SNAPSHOTTER,
                         snapshot_key=cid, spec=spec)
    return Prepared(info, image, created=True)


def confinement_of(obj: Container) -> Confinement:
    """The container's securityContext as the runtime applies it (runtime/security.py)."""
    sc = obj.spec.security_context
    if sc is None:
        return Confinement()
    caps = sc.capabilities
    return Confinement(
        privileged=sc.privileged,
        add_capabilities=tuple(caps.add) if caps else (),
        drop_capabilities=tuple(caps.drop) if caps else (),
        read_only_root=sc.read_only_root_filesystem,
        run_as_user=sc.run_as_user,
        run_as_group=sc.run_as_group,
        run_as_non_root=sc.run_as_non_root,
        allow_privilege_escalation=sc.allow_privilege_escalation,
        seccomp=sc.seccomp_profile.type if sc.seccomp_profile else "RuntimeDefault",
    )


def cluster_resolv_conf(nameserver: str, namespace: str, domain: str) -> str:
    """A container's resolv.conf: the node's DNS server, its namespace's search path first, ndots:5."""
    return (f"nameserver {nameserver}\nsearch {namespace}.svc.{domain} svc.{domain} {domain}\n"
            "options ndots:5\n")


def _write_etc_files(run_dir: Path, obj: Container, dns: tuple[str, str] = ("", "")) -> list[BindMount]:
    """/etc/hosts, /etc/hostname and /etc/resolv.conf for the container (blocking). With ``dns``
    (the node's DNS server and the cluster domain), resolv.conf names that server; else the host's."""
    run_dir.mkdir(parents=True, exist_ok=True)
    hosts = run_dir / "hosts"
    hosts.write_text(f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n127.0.1.1\t{obj.metadata.name}\n")
    hostname = run_dir / "hostname"
    hostname.write_text(obj.metadata.name + "\n")
    resolv = run_dir / "resolv.conf"
    try:
        text = Path("/etc/resolv.conf").read_text()
    except OSError:
        text = ""
    lines = [ln for ln in text.splitlines() if not ln.strip().startswith("nameserver 127.")]
    server, domain = dns
    resolv.write_text(cluster_resolv_conf(server, obj.metadata.namespace, domain) if server
                      else "\n".join(lines) + "\n")
    hardened = ("nosuid", "nodev", "noexec")  # and read-only: a container cannot rewrite its own names
    return [
        BindMount(str(hosts), "/etc/hosts", readonly=True, options=hardened),
        BindMount(str(hostname), "/etc/hostname", readonly=True, options=hardened),
        BindMount(str(resolv), "/etc/resolv.conf", readonly=True, options=hardened),
    ]
