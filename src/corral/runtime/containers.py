"""containerd containers: create (with its rootfs snapshot), get, list by label, delete.

A containerd *container* is a record: id, labels, runtime, OCI spec, and the key of its rw snapshot.
It runs nothing; a *task* (``runtime/tasks.py``) is the running process. ``Container`` is a thin
handle (client + id) in the style of containerd's Go client.

``create_container`` does two things and undoes the first if the second fails:

1. ``Snapshots.Prepare(key, parent=image.chain_id)`` — the container's writable layer on top of the
   image's unpacked layers (``unpack`` must have run). A snapshot already under that key with the
   same parent is reused (a crash between the two steps leaves one; the next pass adopts it).
2. ``Containers.Create`` — runtime ``io.containerd.runc.v2``, the spec as an ``Any`` of type
   ``types.containerd.io/opencontainers/runtime-spec/1/Spec`` (JSON bytes), snapshotter overlayfs.

Both run under a containerd lease so the new snapshot cannot be garbage-collected before the
container record references it. ``delete_container`` is idempotent: it kills and deletes the task
if there is one, deletes the record, and removes the snapshot — each step tolerating "already gone".

Label filters use containerd's filter syntax: ``labels."corral/uid"=="X"`` (see ``label_filter``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from google.protobuf import any_pb2, field_mask_pb2

from corral.model.errors import AlreadyExists, Conflict, NotFound
from corral.runtime._pb.containerd.services.containers.v1 import containers_pb2
from corral.runtime._pb.containerd.services.snapshots.v1 import snapshots_pb2
from corral.runtime.client import Client
from corral.runtime.images import Image
from corral.runtime.leases import lease
from corral.runtime.tasks import Task
from corral.runtime.unpack import SNAPSHOTTER, remove_snapshot

RUNTIME = "io.containerd.runc.v2"
SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
LEASE_EXPIRE_S = 600.0


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """What containerd records about a container (the spec decoded from its JSON)."""

    id: str
    labels: Mapping[str, str]
    image: str
    runtime: str
    snapshotter: str
    snapshot_key: str
    spec: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None

    @classmethod
    def from_pb(cls, c: containers_pb2.Container) -> ContainerInfo:
        spec: dict[str, Any] = {}
        if c.spec.value:
            with contextlib.suppress(ValueError):
                spec = json.loads(c.spec.value)
        return cls(
            id=c.id,
            labels=dict(c.labels),
            image=c.image,
            runtime=c.runtime.name,
            snapshotter=c.snapshotter,
            snapshot_key=c.snapshot_key,
            spec=spec,
            created_at=c.created_at.ToDatetime() if c.HasField("created_at") else None,
        )


@dataclass(frozen=True, slots=True)
class Container:
    """A handle on one containerd container: the client and the id. Holds no state of its own."""

    client: Client
    id: str

    async def info(self) -> ContainerInfo:
        reply = await self.client.call(self.client.containers.Get, containers_pb2.GetContainerRequest(id=self.id))
        return ContainerInfo.from_pb(reply.container)

    async def delete(self) -> None:
        await delete_container(self.client, self.id)


def label_filter(labels: Mapping[str, str]) -> str:
    """One containerd filter matching every given label: ``labels."k"=="v",labels."k2"=="v2"``."""
    return ",".join(f"labels.{_quote(k)}=={_quote(v)}" for k, v in labels.items())


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def create_container(
    client: Client,
    *,
    id: str,
    image: Image,
    spec: Mapping[str, Any],
    labels: Mapping[str, str] | None = None,
    snapshot_key: str | None = None,
    snapshotter: str = SNAPSHOTTER,
) -> Container:
    """Prepare the rw snapshot from the image's top layer and create the container record.

    Raises ``AlreadyExists`` if a container with this id exists; the snapshot made here is
    removed again whenever the record could not be created.
    """
    key = snapshot_key or id
    record = containers_pb2.Container(
        id=id,
        labels=dict(labels or {}),
        image=image.name,
        runtime=containers_pb2.Container.Runtime(name=RUNTIME),
        spec=any_pb2.Any(type_url=SPEC_TYPE_URL, value=json.dumps(spec, separators=(",", ":")).encode()),
        snapshotter=snapshotter,
        snapshot_key=key,
    )
    async with lease(client, expire_s=LEASE_EXPIRE_S):
        made = await _prepare_snapshot(client, key=key, parent=image.chain_id, snapshotter=snapshotter)
        try:
            await client.call(client.containers.Create, containers_pb2.CreateContainerRequest(container=record))
        except BaseException:
            if made:
                await remove_snapshot(client, key, snapshotter=snapshotter)
            raise
    return Container(client, id)


async def _prepare_snapshot(client: Client, *, key: str, parent: str, snapshotter: str) -> bool:
    """Prepare ``key`` on ``parent``; returns False when a matching one already existed (adopted)."""
    try:
        await client.call(
            client.snapshots.Prepare,
            snapshots_pb2.PrepareSnapshotRequest(snapshotter=snapshotter, key=key, parent=parent),
        )
    except AlreadyExists:
        reply = await client.call(
            client.snapshots.Stat, snapshots_pb2.StatSnapshotRequest(snapshotter=snapshotter, key=key)
        )
        if reply.info.parent != parent or reply.info.kind != snapshots_pb2.ACTIVE:
            raise Conflict(
                f"snapshot {key!r} exists on another parent ({reply.info.parent or 'none'}); "
                "delete the container that owns it first"
            ) from None
        return False
    return True


async def get_container(client: Client, id: str) -> ContainerInfo:
    """The container's record; ``NotFound`` if there is none."""
    return await Container(client, id).info()


async def set_labels(client: Client, id: str, labels: Mapping[str, str]) -> None:
    """Set these labels of container ``id`` (an empty value removes the label); its others stay.

    The record outlives the agent, so a fact that must survive a restart (why the task ended)
    is written here, where the next agent reads it back."""
    record = containers_pb2.Container(id=id, labels=dict(labels))
    mask = field_mask_pb2.FieldMask(paths=[f"labels.{k}" for k in labels])
    await client.call(client.containers.Update, containers_pb2.UpdateContainerRequest(container=record,
                                                                                      update_mask=mask))


async def list_containers(
    client: Client,
    labels: Mapping[str, str] | None = None,
    *,
    filters: Sequence[str] = (),
) -> list[ContainerInfo]:
    """Containers matching every label in ``labels`` (and any of the raw containerd ``filters``)."""
    all_filters = list(filters)
    if labels:
        all_filters = [f"{label_filter(labels)},{f}" for f in all_filters] or [label_filter(labels)]
    reply = await client.call(client.containers.List, containers_pb2.ListContainersRequest(filters=all_filters))
    return [ContainerInfo.from_pb(c) for c in reply.containers]


async def delete_container(client: Client, id: str, *, kill_timeout: float = 10.0) -> None:
    """Remove the task (SIGKILL if it runs), the record and its snapshot. Absent parts are fine."""
    await Task(client, id).remove(kill_timeout=kill_timeout)
    try:
        info = await get_container(client, id)
    except NotFound:
        info = None
    with contextlib.suppress(NotFound):
        await client.call(client.containers.Delete, containers_pb2.DeleteContainerRequest(id=id), retry=True)
    if info is not None and info.snapshot_key:
        await remove_snapshot(client, info.snapshot_key, snapshotter=info.snapshotter or SNAPSHOTTER)
