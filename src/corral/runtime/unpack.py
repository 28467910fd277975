"""Unpack an image's layers into a snapshotter (overlayfs), the way containerd's own unpacker does.

For each layer in order, with ``chain`` its chain id (``images.chain_ids``):

1. ``Snapshots.Stat(chain)`` — committed already (by an earlier unpack or another image sharing the
   layer): nothing to do, it becomes the parent of the next layer.
2. ``Prepare(key, parent)`` — an active snapshot under a unique key, giving the mounts to write into.
3. ``Diff.Apply(layer, mounts)`` — containerd decompresses the blob and applies it (whiteouts and all);
   the digest it reports is the uncompressed one, checked against the config's diff id.
4. ``Commit(chain, key)`` — the layer becomes a committed snapshot named by its chain id. If another
   unpacker committed the same chain meanwhile (ALREADY_EXISTS), ours is removed and theirs used.

Any failure removes the active snapshot it made (no half layers left). Afterwards, GC labels as
containerd sets them: ``containerd.io/uncompressed`` on each layer blob and
``containerd.io/gc.ref.snapshot.<snapshotter>`` (the top chain id) on the config blob, so the image
record keeps its snapshots alive. Everything runs under a lease until the labels are in place.
"""

from __future__ import annotations

import contextlib
import secrets
import time

from corral.model.errors import AlreadyExists, Invalid, NotFound
from corral.runtime._pb.containerd.services.diff.v1 import diff_pb2
from corral.runtime._pb.containerd.services.snapshots.v1 import snapshots_pb2
from corral.runtime._pb.containerd.types import descriptor_pb2
from corral.runtime.client import Client
from corral.runtime.content import set_labels
from corral.runtime.images import Image, Layer, chain_ids
from corral.runtime.leases import lease

SNAPSHOTTER = "overlayfs"
UNCOMPRESSED_LABEL = "containerd.io/uncompressed"
SNAPSHOT_REF_LABEL = "containerd.io/snapshot.ref"


def snapshot_gc_label(snapshotter: str = SNAPSHOTTER) -> str:
    return f"containerd.io/gc.ref.snapshot.{snapshotter}"


async def snapshot_exists(client: Client, key: str, *, snapshotter: str = SNAPSHOTTER) -> bool:
    try:
        await client.call(client.snapshots.Stat, snapshots_pb2.StatSnapshotRequest(snapshotter=snapshotter, key=key))
    except NotFound:
        return False
    return True


async def remove_snapshot(client: Client, key: str, *, snapshotter: str = SNAPSHOTTER) -> None:
    """Remove a snapshot (absent is fine)."""
    with contextlib.suppress(NotFound):
        await client.call(
            client.snapshots.Remove, snapshots_pb2.RemoveSnapshotRequest(snapshotter=snapshotter, key=key), retry=True
        )


async def is_unpacked(client: Client, image: Image, *, snapshotter: str = SNAPSHOTTER) -> bool:
    return not image.layers or await snapshot_exists(client, image.chain_id, snapshotter=snapshotter)


async def unpack(client: Client, image: Image, *, snapshotter: str = SNAPSHOTTER) -> str:
    """Make sure every layer of ``image`` is a committed snapshot; returns the top chain id."""
    chains = chain_ids(image.diff_ids)
    async with lease(client):
        parent = ""
        for layer, chain in zip(image.layers, chains, strict=True):
            if not await snapshot_exists(client, chain, snapshotter=snapshotter):
                await _apply_layer(client, layer, chain=chain, parent=parent, snapshotter=snapshotter)
            await set_labels(client, layer.digest, {UNCOMPRESSED_LABEL: layer.diff_id})
            parent = chain
        if chains:
            await set_labels(client, image.config_digest, {snapshot_gc_label(snapshotter): chains[-1]})
    return chains[-1] if chains else ""


async def _apply_layer(client: Client, layer: Layer, *, chain: str, parent: str, snapshotter: str) -> None:
    key = f"extract-{time.time_ns()}-{secrets.token_hex(4)} {chain}"
    prepared = await client.call(
        client.snapshots.Prepare,
        snapshots_pb2.PrepareSnapshotRequest(snapshotter=snapshotter, key=key, parent=parent),
    )
    try:
        desc = descriptor_pb2.Descriptor(media_type=layer.media_type, digest=layer.digest, size=layer.size)
        applied = await client.call(
            client.diff.Apply, diff_pb2.ApplyRequest(diff=desc, mounts=list(prepared.mounts)), timeout=600.0
        )
        if str(applied.applied.digest) != layer.diff_id:
            raise Invalid(
                f"layer {layer.digest} unpacks to {applied.applied.digest}, but the image config says {layer.diff_id}"
            )
        try:
            await client.call(
                client.snapshots.Commit,
                snapshots_pb2.CommitSnapshotRequest(
                    snapshotter=snapshotter, name=chain, key=key, labels={SNAPSHOT_REF_LABEL: chain}
                ),
            )
        except AlreadyExists:  # another unpacker committed this chain first: use theirs
            await remove_snapshot(client, key, snapshotter=snapshotter)
    except BaseException:
        await remove_snapshot(client, key, snapshotter=snapshotter)
        raise
