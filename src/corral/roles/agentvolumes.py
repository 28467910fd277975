"""The agent's side of named volumes: make a volume's directory only on the node it is bound to.

The leader binds each Volume to one node (``controllers.volumes``) and the scheduler places the
containers that mount it there (``scheduler.volumes``). The agent checks again — defense in depth
against a stale scheduler or a hand-pinned container: ``volume_placement`` answers the storage step
(``reconcile.storage.VolumeStep.placement``) from the agent's Volume reflector, and any answer
but "bound here" keeps the container Pending with that reason instead of handing it an empty
directory. ``requeue_mounting`` wakes the containers waiting for a volume as soon as it is bound.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from corral.model.resources import Container, Volume


def volume_placement(volumes: Mapping[tuple[str, str], Volume], node: str) -> Callable[[str, str], str | None]:
    """(namespace, name) → None when that Volume is bound to ``node``, else why it may not be used here."""

    def check(namespace: str, name: str) -> str | None:
        volume = volumes.get((namespace, name))
        if volume is None:
            return f"volume {namespace}/{name} is not created or bound yet"
        bound = volume.status.node
        if volume.metadata.deletion_timestamp:
            return f"volume {namespace}/{name} is being deleted"
        if not bound:
            return f"volume {namespace}/{name} is not bound to a node yet"
        if bound != node:
            return f"volume {namespace}/{name} is bound to node {bound}, not {node}: its data is there"
        return None

    return check


def requeue_mounting(add: Callable[[tuple[str, str]], None], containers: Iterable[Container], volume: Volume) -> None:
    """Requeue this node's containers that mount ``volume``."""
    ns, name = volume.metadata.namespace, volume.metadata.name
    for c in containers:
        if c.metadata.namespace == ns and any(v.volume == name for v in c.spec.volumes):
            add((ns, c.metadata.name))
