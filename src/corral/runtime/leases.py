"""containerd leases: keep what a multi-step job creates (blobs, snapshots) safe from garbage collection.

containerd's GC deletes content and snapshots that nothing references. A pull or an import writes
blobs first and links them (image record, GC labels) last, so it runs under a lease: every call
inside ``async with lease(client):`` carries the ``containerd-lease`` header (set once, in the client's
request listener, from a context variable) and everything created is held by the lease until it is
deleted at the end. Each lease also carries ``containerd.io/gc.expire``, so one left behind by a crash
expires on its own. Nested ``lease`` blocks reuse the outer lease.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime

from corral.model.errors import NotFound
from corral.runtime._pb.containerd.services.leases.v1 import leases_pb2
from corral.runtime.client import Client

EXPIRE_LABEL = "containerd.io/gc.expire"
DEFAULT_EXPIRE_S = 3600.0


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def create_lease(
    client: Client,
    *,
    lease_id: str | None = None,
    expire_s: float = DEFAULT_EXPIRE_S,
    labels: Mapping[str, str] | None = None,
) -> str:
    """Create a lease that expires after ``expire_s``; returns its id."""
    lid = lease_id or f"corral-{time.time_ns()}-{secrets.token_hex(4)}"
    all_labels = {EXPIRE_LABEL: _rfc3339(time.time() + expire_s), **(labels or {})}
    reply = await client.call(client.leases.Create, leases_pb2.CreateRequest(id=lid, labels=all_labels))
    return str(reply.lease.id)


async def delete_lease(client: Client, lease_id: str, *, sync: bool = False) -> None:
    """Delete a lease (gone already is fine). ``sync`` waits for the GC pass it triggers."""
    with contextlib.suppress(NotFound):
        await client.call(client.leases.Delete, leases_pb2.DeleteRequest(id=lease_id, sync=sync), retry=True)


async def list_leases(client: Client) -> list[str]:
    reply = await client.call(client.leases.List, leases_pb2.ListRequest())
    return [str(lease.id) for lease in reply.leases]


@contextlib.asynccontextmanager
async def lease(client: Client, *, expire_s: float = DEFAULT_EXPIRE_S) -> AsyncIterator[str]:
    """Run the block under a lease (a new one, or the caller's if one is active); yields its id."""
    outer = client.current_lease()
    if outer is not None:
        yield outer
        return
    lid = await create_lease(client, expire_s=expire_s)
    try:
        with client.lease_scope(lid):
            yield lid
    finally:
        with client.lease_scope(None):
            await delete_lease(client, lid)
