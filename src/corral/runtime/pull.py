"""Pull an image from a registry into containerd: resolve, fetch under one lease, record, unpack.

containerd 1.6 pulls client-side, so corral does what ``ctr pull`` does, in this order:

1. **Resolve** the reference over the distribution API (``distribution.RegistryClient``): the target
   (index or manifest) and this platform's manifest, config and layer descriptors.
2. **Fast path.** If the image record already points at that target and its top snapshot exists,
   the pull is a no-op: one manifest GET, no lease, no blob traffic.
3. **One lease** (``leases.lease``) covers everything written from here on, so containerd's GC cannot
   collect a blob between its write and the record that references it. Every blob is added to the
   lease (``Leases.AddResource``) *before* the store is asked whether it has it, so one found there
   cannot be collected before the record references it; found blobs are not fetched.
4. **Fetch.** Layers stream from the registry into the content store concurrently (at most
   ``max_concurrent_blobs``; the small config is fetched into memory alongside), hashed on the way in
   by the distribution client and checked again by containerd at commit; then the manifest and the index are written with the GC labels that make
   them own their children (``images.gc_labels``) and a ``containerd.io/distribution.source.<host>``
   label. Progress is reported per blob as ``PullProgress(digest, done, total)``.
5. **Unpack** the layers into overlayfs (``unpack.unpack``), then **create/update the record**
   ``name → target`` and drop the lease. If any step fails (or the pull is cancelled), the lease is
   deleted and GC collects whatever it held, and each content writer of the pull (its own ref) is
   aborted, so no half-written ingest stays either. A failed blob fails the pull with its own error
   (``DigestMismatch``, ``RegistryUnreachable``, ...), not an exception group.

Concurrent pulls of one reference share the work: a ``Puller`` (one per ``Client``; ``pull()`` finds it)
keeps the in-flight job per canonical name and every caller awaits the same task; a caller that is
cancelled does not cancel the job for the others. A joiner's credentials and insecure list are not
used (the first caller's are). ``Puller.aclose()`` cancels jobs still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import weakref
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass, field

from corral.model.errors import CorralError, Invalid, NotFound
from corral.runtime._pb.containerd.services.content.v1 import content_pb2
from corral.runtime._pb.containerd.services.leases.v1 import leases_pb2
from corral.runtime.auth import Credentials, TokenCache
from corral.runtime.client import Client
from corral.runtime.content import info, read_blob, write_blob_chunks
from corral.runtime.distribution import (
    Descriptor,
    Fetched,
    Platform,
    RegistryClient,
    ResolvedImage,
    default_session,
    host_platform,
)
from corral.runtime.images import Image, create_image, gc_labels, get_image, image_from_manifest
from corral.runtime.leases import lease
from corral.runtime.reference import Reference, parse_reference
from corral.runtime.unpack import is_unpacked, unpack

log = logging.getLogger(__name__)

SOURCE_LABEL = "containerd.io/distribution.source."
MAX_CONCURRENT_BLOBS = 3  # containerd's default for concurrent layer downloads
MAX_CONFIG_BYTES = 8 << 20
ABORT_CHECKS = 5
ABORT_SETTLE_S = 0.05


@dataclass(frozen=True, slots=True)
class PullProgress:
    """How far one blob of a pull is: ``done`` of ``total`` bytes (``done == total`` when finished;
    ``cached`` when it was already in the content store)."""

    ref: str
    digest: str
    done: int
    total: int
    cached: bool = False


ProgressFn = Callable[[PullProgress], None]


@dataclass(slots=True)
class PullStats:
    """Counters of what a ``Puller`` did (for tests and metrics)."""

    pulls: int = 0  # jobs run (joiners of an in-flight job are not counted)
    joined: int = 0  # callers that joined a job already in flight
    noops: int = 0  # jobs that found the image already pulled and unpacked
    blobs_fetched: int = 0
    bytes_fetched: int = 0


@dataclass(slots=True)
class _Job:
    ref: Reference
    listeners: list[ProgressFn] = field(default_factory=list)
    task: asyncio.Task[Image] | None = None

    def report(self, digest: str, done: int, total: int, *, cached: bool = False) -> None:
        event = PullProgress(self.ref.name, digest, done, total, cached)
        for fn in list(self.listeners):
            try:
                fn(event)
            except Exception:  # a broken progress display must not fail the pull
                log.exception("pull %s: progress callback failed", self.ref.name)


class Puller:
    """Pulls images into one containerd ``Client``, sharing concurrent pulls of the same reference."""

    def __init__(
        self,
        client: Client,
        *,
        platform: Platform | None = None,
        max_concurrent_blobs: int = MAX_CONCURRENT_BLOBS,
    ) -> None:
        self.client = client
        self.platform = platform or host_platform()
        self.stats = PullStats()
        self._max_blobs = max_concurrent_blobs
        self._tokens = TokenCache()
        self._jobs: dict[str, _Job] = {}

    async def pull(
        self,
        ref: str | Reference,
        *,
        credentials: Credentials | None = None,
        insecure_registries: Iterable[str] = (),
        progress: ProgressFn | None = None,
        if_missing: bool = False,
    ) -> Image:
        """Pull ``ref`` (or join the pull of it already running) and return the unpacked image.

        ``if_missing`` (Kubernetes' ``IfNotPresent``) returns the local image without asking the
        registry when it is recorded and unpacked; otherwise (``Always``) the tag is resolved again."""
        reference = parse_reference(ref) if isinstance(ref, str) else ref
        if if_missing and reference.name not in self._jobs:
            existing = await self.local(reference)
            if existing is not None:
                return existing
        job = self._jobs.get(reference.name)
        if job is None:
            job = _Job(reference)
            job.task = asyncio.create_task(
                self._run(job, credentials=credentials, insecure=tuple(insecure_registries)),
                name=f"pull {reference.name}",
            )
            self._jobs[reference.name] = job
            job.task.add_done_callback(self._finished(reference.name, job))
        else:
            self.stats.joined += 1
        if progress is not None:
            job.listeners.append(progress)
        assert job.task is not None
        try:
            return await asyncio.shield(job.task)
        finally:
            if progress is not None:
                job.listeners.remove(progress)

    def _finished(self, name: str, job: _Job) -> Callable[[asyncio.Task[Image]], None]:
        def done(task: asyncio.Task[Image]) -> None:
            if self._jobs.get(name) is job:
                del self._jobs[name]
            if not task.cancelled():
                task.exception()  # retrieved here so an unawaited failure is not logged as lost

        return done

    async def aclose(self) -> None:
        """Cancel the pulls still running and wait for them to finish their cleanup."""
        tasks = [job.task for job in self._jobs.values() if job.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- one job ---------------------------------------------------------------------------------

    async def _run(self, job: _Job, *, credentials: Credentials | None, insecure: tuple[str, ...]) -> Image:
        self.stats.pulls += 1
        ref = job.ref
        async with default_session() as session:
            registry = RegistryClient(
                session, credentials=credentials, insecure_registries=insecure, tokens=self._tokens
            )
            resolved = await registry.resolve(ref, platform=self.platform)
            existing = await self._already_pulled(resolved)
            if existing is not None:
                self.stats.noops += 1
                return existing
            async with lease(self.client) as lease_id:
                image = await self._store(job, registry, resolved, lease_id=lease_id)
                await unpack(self.client, image)
                target = resolved.target.descriptor
                await _create_or_update(self.client, ref.name, target)
        return image

    async def local(self, ref: str | Reference) -> Image | None:
        """The image ``ref`` names if it is recorded here and unpacked, without asking the registry."""
        reference = parse_reference(ref) if isinstance(ref, str) else ref
        try:
            image = await get_image(
                self.client, reference.name, os=self.platform.os, architecture=self.platform.architecture
            )
        except NotFound:  # no record, or a record left without its content
            return None
        return image if await is_unpacked(self.client, image) else None

    async def _already_pulled(self, resolved: ResolvedImage) -> Image | None:
        image = await self.local(resolved.ref)
        if image is None or image.target_digest != resolved.target.descriptor.digest:
            return None
        return image

    async def _store(self, job: _Job, registry: RegistryClient, resolved: ResolvedImage, *, lease_id: str) -> Image:
        """Write config, layers, manifest and index into the content store; the ``Image`` they make."""
        ref = resolved.ref
        source = {SOURCE_LABEL + ref.hostname: ref.repository}
        limit = asyncio.Semaphore(self._max_blobs)

        config_data = b""

        async def config() -> None:
            nonlocal config_data
            async with limit:
                config_data = await self._fetch_config(job, registry, resolved.config, lease_id=lease_id, labels=source)

        async def layer(desc: Descriptor) -> None:
            async with limit:
                await self._fetch_blob(job, registry, desc, lease_id=lease_id, labels=source)

        for desc in (resolved.config, *resolved.layers):  # the whole pull is known: every blob's bar from the start
            job.report(desc.digest, 0, desc.size)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(config(), name=f"pull {ref.name}: config")
                for desc in resolved.layers:
                    tg.create_task(layer(desc), name=f"pull {ref.name}: {desc.digest[:19]}")
        except BaseExceptionGroup as group:  # the first blob's failure is the pull's error
            raise _first_error(group) from None
        config_doc = json.loads(config_data)
        for fetched in resolved.children:  # manifest, then index: parents after their children
            await self._put_manifest(fetched, lease_id=lease_id, labels=source)
        manifest_doc = json.loads(resolved.manifest.data)
        target = resolved.target.descriptor
        return image_from_manifest(
            name=ref.name,
            target=(target.digest, target.media_type, target.size),
            manifest_digest=resolved.manifest.descriptor.digest,
            manifest=manifest_doc,
            config=config_doc,
        )

    async def _fetch_blob(
        self, job: _Job, registry: RegistryClient, desc: Descriptor, *, lease_id: str, labels: dict[str, str]
    ) -> None:
        """Stream one layer into the store (``write_blob_chunks`` looks first and, when the blob is
        there, returns without starting the download)."""
        done = 0

        async def counted() -> AsyncGenerator[bytes, None]:
            nonlocal done
            async for chunk in registry.blob_chunks(job.ref, desc):
                done += len(chunk)
                self.stats.bytes_fetched += len(chunk)
                job.report(desc.digest, done, desc.size)
                yield chunk

        chunks = counted()
        try:
            written = await self._write(chunks, desc, lease_id=lease_id, labels=labels)
        finally:
            await chunks.aclose()
        if written:
            self.stats.blobs_fetched += 1
        else:
            job.report(desc.digest, desc.size, desc.size, cached=True)

    async def _write(
        self, chunks: AsyncGenerator[bytes, None], desc: Descriptor, *, lease_id: str, labels: dict[str, str]
    ) -> bool:
        """The blob into the lease first (so GC cannot take it between "it is there" and its use), then
        ``write_blob_chunks`` under a writer ref of this pull alone, aborted if the write fails or is
        cancelled (a lease does not take an ingest with it). False when the blob was already there."""
        await _lease_content(self.client, lease_id, desc.digest)
        ref = f"pull-{secrets.token_hex(6)}-{desc.digest}"
        try:
            return await write_blob_chunks(
                self.client, chunks, digest=desc.digest, size=desc.size, labels=labels, ref=ref
            )
        except BaseException:
            await _abort_ingest(self.client, ref)
            raise

    async def _fetch_config(
        self, job: _Job, registry: RegistryClient, desc: Descriptor, *, lease_id: str, labels: dict[str, str]
    ) -> bytes:
        """The config blob's bytes, fetched into memory (it is small) and stored, or read from the store."""
        if desc.size > MAX_CONFIG_BYTES:
            raise Invalid(f"{job.ref.name}: image config is {desc.size} bytes, more than {MAX_CONFIG_BYTES}")
        await _lease_content(self.client, lease_id, desc.digest)  # before looking: see ``_write``
        if await info(self.client, desc.digest) is not None:
            job.report(desc.digest, desc.size, desc.size, cached=True)
            return await read_blob(self.client, desc.digest, max_size=MAX_CONFIG_BYTES)
        data = b"".join([chunk async for chunk in registry.blob_chunks(job.ref, desc)])
        await self._write(_one_chunk(data), desc, lease_id=lease_id, labels=labels)
        self.stats.blobs_fetched += 1
        self.stats.bytes_fetched += len(data)
        job.report(desc.digest, desc.size, desc.size)
        return data

    async def _put_manifest(self, fetched: Fetched, *, lease_id: str, labels: dict[str, str]) -> None:
        desc = fetched.descriptor
        all_labels = {**labels, **gc_labels(json.loads(fetched.data))}
        await self._write(_one_chunk(fetched.data), desc, lease_id=lease_id, labels=all_labels)


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group.exceptions[0]


async def _one_chunk(data: bytes) -> AsyncGenerator[bytes, None]:
    yield data


async def _abort_ingest(client: Client, ref: str) -> None:
    """Abort writer ``ref`` and make sure it stays gone: a write stream cut off by an error or a cancel
    may still be opening the writer in containerd when the Abort (another stream) arrives, so look
    again a moment later and abort again if it is back. Best effort: the pull's own error is the one
    to report."""
    for _ in range(ABORT_CHECKS):
        try:
            with contextlib.suppress(NotFound):
                await client.call(client.content.Abort, content_pb2.AbortRequest(ref=ref), retry=True)
            await asyncio.sleep(ABORT_SETTLE_S)
            await client.call(client.content.Status, content_pb2.StatusRequest(ref=ref))
        except NotFound:
            return
        except CorralError as e:
            log.warning("could not abort content writer %s: %s", ref, e)
            return
    log.warning("content writer %s kept coming back after %d aborts", ref, ABORT_CHECKS)


async def _lease_content(client: Client, lease_id: str, digest: str) -> None:
    """Hold an existing blob in the lease, so GC cannot take it before the record references it."""
    resource = leases_pb2.Resource(id=digest, type="content")
    await client.call(
        client.leases.AddResource, leases_pb2.AddResourceRequest(id=lease_id, resource=resource), retry=True
    )


async def _create_or_update(client: Client, name: str, target: Descriptor) -> None:
    await create_image(client, name, digest=target.digest, media_type=target.media_type, size=target.size)


_PULLERS: weakref.WeakKeyDictionary[Client, Puller] = weakref.WeakKeyDictionary()


def puller_for(client: Client) -> Puller:
    """The process's ``Puller`` for ``client`` (made on first use)."""
    puller = _PULLERS.get(client)
    if puller is None:
        puller = _PULLERS[client] = Puller(client)
    return puller


async def pull(
    client: Client,
    ref: str | Reference,
    *,
    credentials: Credentials | None = None,
    insecure_registries: Iterable[str] = (),
    progress: ProgressFn | None = None,
    if_missing: bool = False,
) -> Image:
    """Pull ``ref`` into ``client``'s containerd and return the unpacked ``Image`` (see the module doc).

    Raises ``ImageNotFound``, ``RegistryUnauthorized``, ``RegistryUnreachable``, ``DigestMismatch``,
    ``UnsupportedPlatform`` (from ``distribution``), ``Invalid`` for a bad reference, or containerd's
    translated errors.
    """
    return await puller_for(client).pull(
        ref, credentials=credentials, insecure_registries=insecure_registries, progress=progress, if_missing=if_missing
    )
