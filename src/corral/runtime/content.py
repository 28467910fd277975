"""containerd's content store: write blobs verified by digest, read them back, label them for GC.

Writing uses the ``Content.Write`` bidirectional stream, one answer per message: STAT opens (or
resumes) the writer named ``ref`` with the expected digest and size, WRITE sends chunks at their
offsets, COMMIT asks containerd to check size and digest and move the blob into the store with its
labels. A blob already present is not written again (``Info`` first; ALREADY_EXISTS on open or
commit counts as success). A ref held by a concurrent writer (containerd answers UNAVAILABLE
"ref locked") is waited for briefly, then the blob is looked up again. Run writes under a lease
(``leases.lease``) until something references the blob, or GC may take it.

Data sources: ``write_blob`` for bytes in memory (manifests, configs), ``write_blob_chunks`` for an
async iterator of chunks (layers streamed from a registry or read from a file off the loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass, field

from google.protobuf import field_mask_pb2

from corral.model.errors import AlreadyExists, Invalid, NotFound, TooLarge, Unavailable
from corral.runtime._pb.containerd.services.content.v1 import content_pb2
from corral.runtime.client import Client
from corral.runtime.errors import ContainerdUnavailable

CHUNK_BYTES = 1 << 20
MAX_READ_BYTES = 64 << 20
_LOCK_RETRIES = 50


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: str
    size: int
    labels: Mapping[str, str] = field(default_factory=dict)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def info(client: Client, digest: str) -> BlobInfo | None:
    """The blob's size and labels, or None when the store does not have it."""
    try:
        reply = await client.call(client.content.Info, content_pb2.InfoRequest(digest=digest))
    except NotFound:
        return None
    return BlobInfo(str(reply.info.digest), int(reply.info.size), dict(reply.info.labels))


async def write_blob(
    client: Client,
    data: bytes,
    *,
    digest: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> str:
    """Store ``data`` (checked against ``digest`` when given); returns its digest."""
    actual = sha256_digest(data)
    if digest is not None and digest != actual:
        raise Invalid(f"content does not match its digest: expected {digest}, got {actual}")

    async def one() -> AsyncIterator[bytes]:
        for i in range(0, len(data), CHUNK_BYTES):
            yield data[i : i + CHUNK_BYTES]

    await write_blob_chunks(client, one(), digest=actual, size=len(data), labels=labels)
    return actual


async def write_blob_chunks(
    client: Client,
    chunks: AsyncIterable[bytes],
    *,
    digest: str,
    size: int,
    labels: Mapping[str, str] | None = None,
    ref: str | None = None,
) -> bool:
    """Stream a blob of known ``digest`` and ``size`` into the store; containerd verifies both at commit.

    Returns False when the blob was already there (``chunks`` is then not read), True when written.
    ``Invalid`` when the data does not match.
    """
    if await info(client, digest) is not None:
        if labels:
            await set_labels(client, digest, labels)
        return False
    ref = ref or f"corral-{digest}"
    for _ in range(_LOCK_RETRIES):
        try:
            await _write(client, chunks, ref=ref, digest=digest, size=size, labels=labels or {})
            return True
        except AlreadyExists:
            if labels:
                await set_labels(client, digest, labels)
            return False
        except ContainerdUnavailable:
            raise
        except Unavailable:  # "ref locked": another writer has it; wait for it to finish
            await asyncio.sleep(0.1)
            if await info(client, digest) is not None:
                if labels:
                    await set_labels(client, digest, labels)
                return False
    raise Unavailable(f"content {digest}: writer {ref} stayed locked by another writer")


async def _write(
    client: Client,
    chunks: AsyncIterable[bytes],
    *,
    ref: str,
    digest: str,
    size: int,
    labels: Mapping[str, str],
) -> None:
    req = content_pb2.WriteContentRequest
    async with client.open_stream(client.content.Write) as st:
        await st.send_message(req(action=content_pb2.STAT, ref=ref, total=size, expected=digest))
        status = await st.recv_message()
        offset = int(status.offset) if status is not None else 0
        if offset:  # a writer left over from an interrupted attempt: start again from zero
            await st.end()
            await client.call(client.content.Abort, content_pb2.AbortRequest(ref=ref), retry=True)
            raise Unavailable(f"content {digest}: stale writer {ref} aborted")
        written = 0
        async for chunk in chunks:
            if written + len(chunk) > size:
                raise TooLarge(f"content {digest}: more than the expected {size} bytes")
            await st.send_message(req(action=content_pb2.WRITE, ref=ref, offset=written, data=chunk))
            await st.recv_message()
            written += len(chunk)
        if written != size:
            await _abort(client, ref)
            raise Invalid(f"content {digest}: got {written} bytes, expected {size}")
        # half-close with the commit: containerd ends the call after it, and a client still open
        # would see the stream reset instead of the answer
        await st.send_message(
            req(action=content_pb2.COMMIT, ref=ref, total=size, expected=digest, offset=written, labels=dict(labels)),
            end=True,
        )
        async for _ in st:
            pass


async def _abort(client: Client, ref: str) -> None:
    with contextlib.suppress(NotFound):
        await client.call(client.content.Abort, content_pb2.AbortRequest(ref=ref), retry=True)


async def set_labels(client: Client, digest: str, labels: Mapping[str, str]) -> None:
    """Set (add or overwrite) these labels on a stored blob; the others are left as they are."""
    mask = field_mask_pb2.FieldMask(paths=[f"labels.{k}" for k in labels])
    request = content_pb2.UpdateRequest(info=content_pb2.Info(digest=digest, labels=dict(labels)), update_mask=mask)
    await client.call(client.content.Update, request, retry=True)


async def read_blob(client: Client, digest: str, *, max_size: int = MAX_READ_BYTES) -> bytes:
    """The whole blob (manifests, configs: small things). ``NotFound`` when absent."""
    meta = await info(client, digest)
    if meta is None:
        raise NotFound(f"content {digest} is not in the store")
    if meta.size > max_size:
        raise TooLarge(f"content {digest} is {meta.size} bytes, more than {max_size}")
    parts = [
        bytes(reply.data)
        async for reply in client.stream(client.content.Read, content_pb2.ReadContentRequest(digest=digest))
    ]
    data = b"".join(parts)
    if sha256_digest(data) != digest:
        raise Invalid(f"content {digest}: stored data does not match its digest")
    return data


async def delete_blob(client: Client, digest: str) -> None:
    """Remove a blob (absent is fine)."""
    with contextlib.suppress(NotFound):
        await client.call(client.content.Delete, content_pb2.DeleteContentRequest(digest=digest), retry=True)
