"""Volume placement: a container that mounts a named Volume runs only on the node that holds its data.

A named volume is a directory on one node. Once a ``Volume`` is bound (``status.node``, written by
the leader's ``controllers.volumes.VolumeBinder``) — or pinned from the start with ``spec.node`` —
every container that mounts it must run there, or it would find an empty directory elsewhere.
``VolumeNode`` is the filter that says so, with a reason users read in the Pending message and in
``corral why-not``: ``volume default/data is bound to node n2``. A volume not yet bound passes
every node (the first container's node becomes its node). When that node is gone or cordoned
every node rejects the container, so it stays Pending rather than starting on an empty volume.

The filter keeps the bindings it is told about (``set_volume``/``forget_volume``, fed by the
leader from its Volume informer and by ``why-not`` from a list): a dict lookup per named volume
per node, and ``applies`` is one truth test, so containers without named volumes cost nothing.
"""

from __future__ import annotations

from corral.model.resources import Volume
from corral.scheduler.framework import ContainerRequest, NodeView, Policy


def volume_bound_reason(namespace: str, volume: str, node: str) -> str:
    """The rejection reason for a node other than the volume's."""
    return f"volume {namespace}/{volume} is bound to node {node}"


class VolumeNode:
    """Every named volume the container mounts is unbound or bound to this node."""

    name = "VolumeNode"
    passes_plain_nodes = False

    def __init__(self) -> None:
        self.bound: dict[tuple[str, str], str] = {}  # (namespace, volume) -> node
        self._reasons: dict[tuple[str, str], str] = {}

    def set_volume(self, volume: Volume) -> None:
        """A Volume was listed, added or changed: remember its node (status.node, else spec.node)."""
        key = (volume.metadata.namespace, volume.metadata.name)
        node = volume.status.node or volume.spec.node
        if node:
            self.bound[key] = node
            self._reasons[key] = volume_bound_reason(key[0], key[1], node)
        else:
            self.forget_volume(key[0], key[1])

    def forget_volume(self, namespace: str, name: str) -> None:
        self.bound.pop((namespace, name), None)
        self._reasons.pop((namespace, name), None)

    def applies(self, c: ContainerRequest) -> bool:
        return bool(c.named_volumes)

    def filter(self, c: ContainerRequest, n: NodeView) -> str | None:
        for volume in c.named_volumes:
            key = (c.namespace, volume)
            node = self.bound.get(key)
            if node is not None and node != n.name:
                return self._reasons[key]
        return None


def volume_filter(policy: Policy) -> VolumeNode | None:
    """The policy's ``VolumeNode`` filter (to feed it Volumes), if it has one."""
    return next((f for f in policy.filters if isinstance(f, VolumeNode)), None)
