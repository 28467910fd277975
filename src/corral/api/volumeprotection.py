"""Volume protection: the API refuses to delete a Volume while a container mounts it.

Deleting a named volume deletes its data, so ``DELETE /namespaces/{ns}/volumes/{name}`` answers 409
Conflict, naming the containers, while any container of the namespace that has not finished
(phase other than Succeeded/Failed) mounts it — what Kubernetes' pvc-protection finalizer
achieves, checked at admission instead: the API's container watch cache answers at once, and
nothing is left half-deleted. A namespace being deleted removes its Volumes through the
namespace controller (not this path), after or alongside its containers.

A binding does not move either: an update that sets ``spec.node`` of a bound Volume to another node
than its ``status.node`` is refused (422 naming ``spec.node``) — the data is on the bound node.
"""

from __future__ import annotations

from corral.api.watchcache import WatchCache
from corral.model.errors import Conflict, FieldError, Invalid
from corral.model.kinds import CONTAINERS
from corral.model.resources import Container, Object, Volume

FINISHED = ("Succeeded", "Failed")


def mounting_containers(containers: WatchCache, namespace: str, volume: str) -> list[str]:
    """Names of the unfinished containers of ``namespace`` that mount ``volume``, sorted."""
    prefix = CONTAINERS.prefix(namespace)
    names = []
    for key, entry in list(containers.objects.items()):
        c = entry.obj
        if (key.startswith(prefix) and isinstance(c, Container) and c.status.phase not in FINISHED
                and any(v.volume == volume for v in c.spec.volumes)):
            names.append(c.metadata.name)
    return sorted(names)


def refuse_if_mounted(containers: WatchCache, namespace: str, volume: str) -> None:
    users = mounting_containers(containers, namespace, volume)
    if users:
        shown = ", ".join(users[:5]) + (f" and {len(users) - 5} more" if len(users) > 5 else "")
        raise Conflict(f'volume "{volume}" is in use by container{"s" if len(users) > 1 else ""} {shown}; '
                       "delete (or let finish) the containers that mount it first")


def check_volume_update(current: Object, new: Object) -> None:
    """Refuse moving a bound Volume by its ``spec.node``."""
    if not (isinstance(current, Volume) and isinstance(new, Volume)):
        return
    bound = current.status.node
    if bound and new.spec.node and new.spec.node != bound:
        message = f"volume {current.metadata.name!r} is bound to node {bound}, where its data is; it cannot move"
        raise Invalid(message, details=[FieldError("spec.node", message)])
