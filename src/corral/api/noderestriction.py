"""NodeRestriction: what a node may write is decided by who it is, not by what it asks.

A node (its certificate, CN ``node:<name>``, or a node token) may:

- **create its own Node** with any labels except the reserved ones: ``node-restriction.corral.io/…``
  (labels an admin sets to steer workloads, which a node must not claim) and ``corral.io/…`` other
  than the ones the agent sets itself (``corral.io/hostname``, ``/os``, ``/arch``, and its place:
  ``topology.corral.io/zone`` and ``/region``, as kubelet may set Kubernetes' topology labels); with the taints,
  ``unschedulable`` and ``podCIDR`` it registers with;
- **update its own Node** only in labels under ``node.corral.io/`` and ``topology.corral.io/`` (and
  the agent's own three) and annotations under ``node.corral.io/`` (the agent publishes its VXLAN MAC
  there); never its taints, ``unschedulable`` or ``podCIDR``;
- **write its own Node's status** and heartbeat, with ``agentEndpoint`` empty or
  ``https://<an InternalIP of that same status>:<port>`` (the API calls that URL: a node must not
  make it call anywhere else);
- **update a container bound to it** only by removing its own finalizer (``corral.io/agent``);
  write the status of containers bound to it (authz.py);
- **create Events** whose source is itself, about its own Node or a container bound to it (or one
  already gone, which an agent reports as it cleans up), message at most ``MAX_EVENT_MESSAGE``
  bytes, at most ``EVENT_RATE``/s per node (a token bucket of ``EVENT_BURST``).

Every refusal is a 403 naming the node and the field.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from corral.api.agents import endpoint_problem
from corral.api.auth import Identity
from corral.model.errors import FieldError, Forbidden
from corral.model.lifecycle import AGENT_FINALIZER
from corral.model.resources import Container, Event, Node, NodeStatus, Object

NODE_LABEL_PREFIX = "node.corral.io/"
TOPOLOGY_PREFIX = "topology.corral.io/"  # where the node is (zone, region): the node knows, as kubelet does
AGENT_LABELS = frozenset({"corral.io/hostname", "corral.io/os", "corral.io/arch",
                          "corral.io/simulated",  # corral sim's hollow nodes
                          # where the node is (serve --label): kubelet may set topology.kubernetes.io/
                          # zone and region too; affinity and spreading read them (docs/workloads.md)
                          "topology.corral.io/zone", "topology.corral.io/region"})
MAX_EVENT_MESSAGE = 1024
EVENT_RATE = 20.0
EVENT_BURST = 100.0


def _deny(identity: Identity, what: str, field: str) -> Forbidden:
    return Forbidden(f"{identity.name} may not {what}", details=[FieldError(field, "a node may not set this")])


def may_change_label(key: str) -> bool:
    """A label a node may add, change or remove on its own Node after registering."""
    return key.startswith((NODE_LABEL_PREFIX, TOPOLOGY_PREFIX)) or key in AGENT_LABELS


def _may_register_label(key: str) -> bool:
    """Labels under corral.io's namespaces are reserved, except the node's own ones."""
    if may_change_label(key):
        return True
    prefix = key.partition("/")[0] if "/" in key else ""
    return not (prefix == "corral.io" or prefix.endswith(".corral.io"))


def check_node_create(identity: Identity, node: Node) -> None:
    for key in node.metadata.labels:
        if not _may_register_label(key):
            raise _deny(identity, f"set the label {key!r} (reserved for admins)", f"metadata.labels.{key}")
    check_node_status(identity, node, node.status)


def check_node_update(identity: Identity, current: Node, new: Node) -> None:
    if new.spec.taints != current.spec.taints:
        raise _deny(identity, "change its taints", "spec.taints")
    if new.spec.unschedulable != current.spec.unschedulable:
        raise _deny(identity, "change unschedulable", "spec.unschedulable")
    if new.spec.pod_cidr != current.spec.pod_cidr:
        raise _deny(identity, "change its podCIDR (set once, when the Node is created)", "spec.podCidr")
    old, labels = current.metadata.labels, new.metadata.labels
    for key in old.keys() | labels.keys():
        if old.get(key) != labels.get(key) and not may_change_label(key):
            raise _deny(identity, f"change the label {key!r} (a node changes only labels under {NODE_LABEL_PREFIX})",
                        f"metadata.labels.{key}")
    before, after = current.metadata.annotations, new.metadata.annotations
    for key in before.keys() | after.keys():
        if before.get(key) != after.get(key) and not key.startswith(NODE_LABEL_PREFIX):
            raise _deny(identity, f"change the annotation {key!r} (a node changes only annotations under "
                                  f"{NODE_LABEL_PREFIX}, e.g. its VXLAN MAC)", f"metadata.annotations.{key}")


def check_node_status(identity: Identity, node: Node, status: NodeStatus) -> None:
    if not status.agent_endpoint:
        return
    probe = Node(metadata=node.metadata, spec=node.spec, status=status)
    if problem := endpoint_problem(probe):
        raise _deny(identity, f"set that agentEndpoint: {problem}", "status.agentEndpoint")


def check_container_update(identity: Identity, current: Container, new: Container) -> None:
    """Only the removal of the agent's own finalizer (the spec is checked in authz)."""
    cur, meta = current.metadata, new.metadata
    allowed = (cur.finalizers, [f for f in cur.finalizers if f != AGENT_FINALIZER])
    if meta.finalizers not in allowed:
        raise _deny(identity, f"change a container's finalizers other than removing {AGENT_FINALIZER}",
                    "metadata.finalizers")
    if (meta.labels, meta.annotations, meta.owner_references) != (cur.labels, cur.annotations, cur.owner_references):
        raise _deny(identity, "change a container's metadata", "metadata")


class _Bucket:
    __slots__ = ("at", "tokens")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens = tokens
        self.at = at


class EventAdmission:
    """The Event rules, with the per-node rate limit; ``bound_to(namespace, name)`` is the node of
    a container now (``None`` when there is no such container)."""

    def __init__(self, bound_to: Callable[[str, str], str | None], *, rate: float = EVENT_RATE,
                 burst: float = EVENT_BURST, clock: Callable[[], float] = time.monotonic) -> None:
        self.bound_to = bound_to
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def admit(self, identity: Identity, obj: Object) -> None:
        if identity.role != "node" or not isinstance(obj, Event):
            return
        spec, node = obj.spec, identity.node
        if spec.source.node != node:
            raise _deny(identity, "write Events from another source node", "spec.source.node")
        if len(spec.message.encode()) > MAX_EVENT_MESSAGE:
            raise _deny(identity, f"write an Event message over {MAX_EVENT_MESSAGE} bytes", "spec.message")
        ref = spec.involved_object
        if ref.kind == Node.KIND:
            if ref.name != node:
                raise _deny(identity, "write Events about other nodes", "spec.involvedObject")
        elif ref.kind == Container.KIND:
            bound = self.bound_to(ref.namespace or obj.metadata.namespace, ref.name)
            if bound is not None and bound != node:
                raise _deny(identity, "write Events about containers bound to other nodes", "spec.involvedObject")
        else:
            raise _deny(identity, f"write Events about {ref.kind or 'nothing'}", "spec.involvedObject.kind")
        self._take(identity)

    def _take(self, identity: Identity) -> None:
        now = self.clock()
        bucket = self._buckets.get(identity.node)
        if bucket is None:
            bucket = self._buckets[identity.node] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens < 1:
            raise Forbidden(f"{identity.name} writes Events faster than {self.rate:g}/s; slow down")
        bucket.tokens -= 1
