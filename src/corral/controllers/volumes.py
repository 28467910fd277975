"""Volume binding: a named Volume belongs to one node, chosen once and recorded in its status.

A named volume is a directory on one node's disk, so its Volume is *bound* to that node
(``status.node``, ``status.phase: Bound``) the first time it is provisioned: to ``spec.node`` when
the user pinned it, else to the node the scheduler chose for the first container that mounts it
(Kubernetes' WaitForFirstConsumer). From then on the scheduler's ``VolumeNode`` filter keeps every
container that mounts it on that node, and the agents refuse to make its directory anywhere else.

This controller, on the leader, is the one writer of a binding. It works Volume keys: a Volume
that is not bound yet, and a container that mounts a volume and has a node, enqueue the volume.
The write is a compare-and-swap on the Volume's resourceVersion (``Objects.update_status``), and a
Volume already bound is never rebound — so two containers scheduled at once to two nodes cannot
both win: the first write binds, the other fails with Conflict, is retried, and finds it bound.
Among several containers already placed, the oldest (by creation time, then name) wins; an owned
container placed elsewhere in that instant, not started yet, is deleted so its owner makes a new
one, which the scheduler places on the volume's node (``replace_misplaced``).

A container that mounts a volume nobody created (``volume: data`` without a Volume object) gets
one made for it, bound to that container's node, as Docker creates a named volume on first use;
from then on it is a Volume like any other (listed, deletable, usage reported).
"""

from __future__ import annotations

import logging

import msgspec

from corral.controllers.base import Controller, Informers
from corral.model.errors import AlreadyExists
from corral.model.kinds import BY_KIND
from corral.model.resources import (
    Container,
    ObjectMeta,
    Volume,
)
from corral.store.informer import Change
from corral.store.objects import Objects

log = logging.getLogger(__name__)

VOLUMES = BY_KIND["Volume"]


def mounted_volumes(c: Container) -> list[str]:
    """Names of the Volumes (of its namespace) a container mounts."""
    return [v.volume for v in c.spec.volumes if v.volume]


BY_MOUNTED_VOLUME = "by-mounted-volume"
"""Containers by the store key of every Volume they mount (an index of the containers' informer)."""


def volume_keys(c: Container) -> tuple[str, ...]:
    if not c.spec.volumes:
        return ()
    return tuple(dict.fromkeys(VOLUMES.key(c.metadata.namespace, name) for name in mounted_volumes(c)))


class VolumeBinder(Controller):
    name = "volumes"

    def __init__(self, informers: Informers, objects: Objects) -> None:
        super().__init__(informers, objects)
        self.volumes = informers.of(Volume)
        self.containers = informers.of(Container)
        self.containers.add_index(BY_MOUNTED_VOLUME, volume_keys)
        self.volumes.add_handler(self._on_volume)
        self.containers.add_handler(self._on_container)

    def _on_volume(self, change: Change, key: str, volume: Volume, old: Volume | None) -> None:
        # new, or its binding changed (not its usage, which the agents rewrite every few seconds)
        if (change is not Change.DELETED and not volume.metadata.deletion_timestamp
                and (old is None or not volume.status.node or old.status.node != volume.status.node)):
            self.enqueue(key)

    def _on_container(self, change: Change, _key: str, c: Container, _old: Container | None) -> None:
        if change is not Change.DELETED and c.spec.node and not c.metadata.deletion_timestamp:
            for name in mounted_volumes(c):
                self.enqueue(VOLUMES.key(c.metadata.namespace, name))

    def mounting(self, namespace: str, name: str) -> list[Container]:
        """The containers that mount volume ``namespace/name``."""
        return self.containers.by_index(BY_MOUNTED_VOLUME, VOLUMES.key(namespace, name))

    def first_consumer(self, namespace: str, name: str) -> Container | None:
        """The oldest container placed on a node that mounts ``namespace/name``."""
        placed = [c for c in self.mounting(namespace, name) if c.spec.node and not c.metadata.deletion_timestamp]
        return min(placed, key=lambda c: (c.metadata.creation_timestamp, c.metadata.name), default=None)

    async def reconcile(self, key: str) -> float | None:
        namespace, name = key.split("/")[-2:]
        volume = self.volumes.get(key)
        if volume is not None and volume.status.node:  # bound once, bound for good
            await self.replace_misplaced(volume)
            return None
        if volume is not None and volume.metadata.deletion_timestamp:
            return None
        node = volume.spec.node if volume is not None else ""
        if not node:
            consumer = self.first_consumer(namespace, name)
            if consumer is None:
                return None  # waits for its first container
            node = consumer.spec.node
        if volume is None:
            try:
                volume = await self.objects.create(Volume(metadata=ObjectMeta(name=name, namespace=namespace)))
            except AlreadyExists:
                return 0.5  # made meanwhile (by a user): bind it when the informer shows it
        status = msgspec.structs.replace(volume.status, phase="Bound", node=node)
        await self.objects.update_status(msgspec.structs.replace(volume, status=status))  # CAS on resourceVersion
        log.info("volume %s/%s bound to node %s", namespace, name, node)
        why = "its spec.node" if volume.spec.node else "the node of its first container"
        await self.record(volume, "Bound", f"bound to node {node} ({why}); its data lives there")
        return None

    async def replace_misplaced(self, volume: Volume) -> None:
        """Delete the owned, not yet started containers placed off the volume's node; their owners remake them.

        Replicas created at once that mount an unbound volume can be placed on two nodes before the
        binding is written; the one on the wrong node waits there (its agent refuses the volume). A
        Deployment's, Job's or DaemonSet's container is replaced — the scheduler places the new one on
        the volume's node. A container without an owner is the user's to delete.
        """
        ns, name, node = volume.metadata.namespace, volume.metadata.name, volume.status.node
        for c in self.mounting(ns, name):
            if (c.spec.node and c.spec.node != node and c.status.phase == "Pending"
                    and not c.metadata.deletion_timestamp and any(o.controller for o in c.metadata.owner_references)):
                log.info("container %s/%s is on %s but volume %s is bound to %s: replacing it",
                         ns, c.metadata.name, c.spec.node, name, node)
                await self.objects.delete(Container, c.metadata.name, namespace=ns, grace=0)
