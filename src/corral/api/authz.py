"""Who may do what through the API: admins everything; a node only what its agent needs.

A node (its certificate, or a node token) reads the containers bound to its node and lists (and
watches) containers, nodes, volumes, namespaces and network policies — every container, as a
node's policy enforcer needs the labels and addresses of peers anywhere in the cluster
(Kubernetes' nodes may list every pod too); creates and updates its own Node and its status,
Events (and the count of repeats of its own), and the status of the containers bound to it; updates a container bound to it only without
changing its spec (its agent removes its finalizer that way); deletes nothing. Within those,
NodeRestriction (api/noderestriction.py) says which fields: not its taints, ``unschedulable`` or
podCIDR, labels only under ``node.corral.io/``, ``agentEndpoint`` only on its InternalIP, Events
only about what is bound to it. Heartbeats are checked in ``server._may_beat``. A refusal names who
asked and what they may not do.
"""

from __future__ import annotations

import msgspec

from corral.api import noderestriction, roles
from corral.api.auth import Identity
from corral.api.roles import USER_ROLES
from corral.model.errors import CorralError, Forbidden
from corral.model.kinds import (
    CONTAINERS,
    ENDPOINTS,
    EVENTS,
    NAMESPACES,
    NETWORKPOLICIES,
    NODES,
    SECRETS,
    SERVICES,
    VOLUMES,
    KindInfo,
)
from corral.model.lifecycle import spec_bytes
from corral.model.resources import Container, Event, Node, NodeStatus, Object, Volume, VolumeStatus

#: what an agent reads and lists: its containers and their peers (network policy), nodes (routes),
#: volumes, namespaces and policies, services and endpoints (the service proxy and DNS)
NODE_READABLE = frozenset({CONTAINERS, NODES, VOLUMES, NAMESPACES, NETWORKPOLICIES, SERVICES, ENDPOINTS})


def _deny(identity: Identity, what: str) -> CorralError:
    return Forbidden(f"{identity.name} may not {what}")


def authorize_read(identity: Identity, info: KindInfo, *, namespace: str, name: str) -> None:
    if identity.role == "admin":
        return
    if identity.role in USER_ROLES:  # edit/view tokens: api/roles.py
        return roles.check(identity, "get", info, namespace)
    if identity.role == "node" and info in NODE_READABLE:
        return
    if identity.role == "node" and info is SECRETS:  # only those its containers use: api/secretaccess.py
        return
    raise _deny(identity, f"read {info.plural}")


def authorize_node_object(identity: Identity, obj: Object) -> None:
    if isinstance(obj, Container) and obj.spec.node != identity.node:
        raise _deny(identity, f"read containers bound to other nodes ({obj.metadata.namespace}/{obj.metadata.name})")


def authorize_list(identity: Identity, info: KindInfo, field_selector: str, *, namespace: str = "",
                   watch: bool = False) -> None:
    if identity.role == "admin":
        return
    if identity.role in USER_ROLES:
        return roles.check(identity, "watch" if watch else "list", info, namespace)
    if identity.role == "node" and info in NODE_READABLE:
        # every container: network policy needs its peers' labels and addresses; Services and
        # Endpoints: the service proxy and DNS
        return
    raise _deny(identity, f"list {info.plural}")


def authorize_write(identity: Identity, info: KindInfo, obj: Object, *, verb: str) -> None:
    if identity.role == "admin":
        return
    if identity.role in USER_ROLES:
        return roles.check(identity, "create", info, obj.metadata.namespace)
    if identity.role == "node":
        if isinstance(obj, Node) and obj.metadata.name == identity.node:
            noderestriction.check_node_create(identity, obj)
            return
        if info is EVENTS:
            return  # which Events: noderestriction.EventAdmission
    raise _deny(identity, f"{verb} {info.plural}")


def authorize_update(identity: Identity, info: KindInfo, current: Object, new: Object) -> None:
    if identity.role == "admin":
        return
    if identity.role in USER_ROLES:
        return roles.check(identity, "update", info, current.metadata.namespace)
    if identity.role == "node":
        if isinstance(current, Node) and isinstance(new, Node) and current.metadata.name == identity.node:
            noderestriction.check_node_update(identity, current, new)
            return
        # an agent counts the repeats of its own Event (aiokit/eventrecorder.py): count and lastTimestamp only
        if isinstance(current, Event) and isinstance(new, Event) and current.spec.source.node == identity.node \
                and _repeat_of(current, new):
            return
        # an agent removes its finalizer from a container bound to it, and changes nothing else
        if (isinstance(current, Container) and isinstance(new, Container) and current.spec.node == identity.node
                and spec_bytes(current) == spec_bytes(new)):
            noderestriction.check_container_update(identity, current, new)
            return
    raise _deny(identity, f"update {info.plural}")


def _repeat_of(current: Event, new: Event) -> bool:
    """Whether ``new`` is ``current`` counted once more: only its count (up) and lastTimestamp differ."""
    same = msgspec.structs.replace(new.spec, count=current.spec.count, last_timestamp=current.spec.last_timestamp)
    return (same == current.spec and new.spec.count > current.spec.count
            and (new.metadata.labels, new.metadata.annotations) == (current.metadata.labels, current.metadata.annotations))


def authorize_status(identity: Identity, info: KindInfo, current: Object, status: object = None) -> None:
    """``status``: the status to be written (a node's own Node status is checked field by field)."""
    if identity.role == "admin":
        return
    if identity.role in USER_ROLES:
        return roles.check(identity, "status", info, current.metadata.namespace)
    if identity.role == "node":
        if isinstance(current, Node) and current.metadata.name == identity.node:
            if isinstance(status, NodeStatus):
                noderestriction.check_node_status(identity, current, status)
            return
        if isinstance(current, Container) and current.spec.node == identity.node:
            return
        # a Volume bound to it: its agent reports the disk used, and never moves the binding
        if (isinstance(current, Volume) and current.status.node == identity.node and isinstance(status, VolumeStatus)
                and status.node == current.status.node and status.phase == current.status.phase):
            return
    raise _deny(identity, f"update the status of {info.plural}" + (" bound to other nodes" if info is CONTAINERS else ""))


def authorize_delete(identity: Identity, info: KindInfo, current: Object) -> None:
    if identity.role == "admin":
        return
    if identity.role in USER_ROLES:
        return roles.check(identity, "delete", info, current.metadata.namespace)
    raise _deny(identity, f"delete {info.plural}")
