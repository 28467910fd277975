"""The rules of an object's life that every writer follows: what a new object gets, how it goes.

A new object gets a uid, a creation time and generation 1; a Container also gets the agent's
finalizer, so it is not gone from the API before its node has stopped and removed it, and a
Namespace the namespace finalizer, so it stays (Terminating) until what is in it is gone. ``generation``
counts spec changes. Deletion is graceful while finalizers remain: ``deletionTimestamp`` is set and
the object goes when the last finalizer is removed. The API and the controllers both use these
functions, so an object a controller writes is indistinguishable from one a user posted.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec

from corral.model.resources import Event, EventSource, EventSpec, Object, ObjectMeta, ObjectReference

AGENT_FINALIZER = "corral.io/agent"
#: where node heartbeats live: ``<prefix><node name>`` = the time of the last beat. A beat is one small
#: etcd put (like Kubernetes' node Lease); the full Node status is written only now and then.
HEARTBEAT_PREFIX = "/corral/_heartbeats/"
NAMESPACE_FINALIZER = "corral.io/namespace"  # the namespace controller removes it once the namespace is empty
ORPHAN_FINALIZER = "corral.io/orphan"  # the garbage collector removes it once no dependent points here
OWNER_KINDS = frozenset({"Deployment", "Job", "CronJob", "DaemonSet"})  # kinds whose objects own others (ownerReferences point at them)

_encoder = msgspec.json.Encoder()


def rfc3339(ts: datetime) -> str:
    """The API's time format: UTC, microseconds, ``Z``."""
    return ts.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def now_rfc3339() -> str:
    return rfc3339(datetime.now(UTC))


def parse_time(text: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def spec_bytes(obj: Object) -> bytes:
    return _encoder.encode(obj.spec)


def stamp_new(obj: Object, *, keep_status: bool = False) -> None:
    """Server-set fields of a new object (and the defaults that only the server sets)."""
    meta = obj.metadata
    meta.uid = str(uuid.uuid4())
    meta.creation_timestamp = now_rfc3339()
    meta.generation = 1
    meta.resource_version = ""
    meta.deletion_timestamp = ""
    if not keep_status:
        obj.status = type(obj.status)()
    if obj.kind == "Namespace":
        obj.status.phase = "Active"  # type: ignore[union-attr]
        if NAMESPACE_FINALIZER not in meta.finalizers:
            meta.finalizers.append(NAMESPACE_FINALIZER)  # deleted only once everything in it is gone
    if obj.kind == "Container" and AGENT_FINALIZER not in meta.finalizers:
        meta.finalizers.append(AGENT_FINALIZER)  # the agent removes it once the container is gone


def carry_over(new: Object, current: Object, *, status_subresource: bool) -> None:
    """What an update may not change: identity, deletion, and (with a status subresource) status."""
    meta, cur = new.metadata, current.metadata
    meta.uid, meta.creation_timestamp = cur.uid, cur.creation_timestamp
    meta.deletion_timestamp = cur.deletion_timestamp
    meta.deletion_grace_period_seconds = cur.deletion_grace_period_seconds
    meta.generation = cur.generation + (1 if spec_bytes(new) != spec_bytes(current) else 0)
    if status_subresource:
        new.status = current.status


def prepare_delete(obj: Object, *, grace: int | None = None) -> bool:
    """Mark ``obj`` for deletion; True when it may be removed right away (no finalizers left)."""
    meta = obj.metadata
    if obj.kind == "Container" and AGENT_FINALIZER in meta.finalizers and not obj.spec.node:  # type: ignore[union-attr]
        meta.finalizers = [f for f in meta.finalizers if f != AGENT_FINALIZER]  # never bound: no agent to wait for
    if obj.kind == "Namespace":
        obj.status.phase = "Terminating"  # type: ignore[union-attr]
        if not meta.deletion_timestamp and NAMESPACE_FINALIZER not in meta.finalizers:
            meta.finalizers.append(NAMESPACE_FINALIZER)  # one made before namespaces had it
    if not meta.finalizers:
        return True
    if not meta.deletion_timestamp:
        meta.deletion_timestamp = now_rfc3339()
    if grace is not None:
        meta.deletion_grace_period_seconds = grace
    return False


NODE_EVENT_NAMESPACE = "default"  # Nodes are cluster-scoped: their Events live in this namespace


def reference_to(obj: Object) -> ObjectReference:
    """What an Event says it is about."""
    meta = obj.metadata
    return ObjectReference(kind=obj.kind, namespace=meta.namespace, name=meta.name, uid=meta.uid)


def new_event(about: ObjectReference, *, reason: str, message: str, component: str, warning: bool = False,
              node: str = "", when: str = "") -> Event:
    """An Event about ``about``, as every writer makes one (the controllers, the scheduler, the agent):
    named after the object, in its namespace (a Node's in ``NODE_EVENT_NAMESPACE``), first and last seen
    ``when`` (now by default)."""
    when = when or now_rfc3339()
    return Event(
        metadata=ObjectMeta(name=f"{about.name}.{uuid.uuid4().hex[:10]}", namespace=about.namespace or NODE_EVENT_NAMESPACE,
                            creation_timestamp=when),
        spec=EventSpec(involved_object=about, reason=reason, message=message, type="Warning" if warning else "Normal",
                       source=EventSource(component=component, node=node), first_timestamp=when, last_timestamp=when),
    )
