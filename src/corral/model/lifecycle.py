"""The words of an object's life: its finalizers, times, and the Events written about it.

The rules every writer follows — what a new object gets, what an update may change, how it goes —
are the kinds' strategies (``model/strategies.py``), applied by the one write path
(``store/registry.py``). Here are the names they share: the agent's finalizer (a Container is not
gone from the API before its node has stopped it), the namespace and orphan finalizers, the API's
time format, and ``new_event``, the one way an Event is built.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TypeVar

import msgspec

from corral.model.resources import Event, EventSource, EventSpec, Object, ObjectMeta, ObjectReference

AGENT_FINALIZER = "corral.io/agent"
#: where node heartbeats live: ``<prefix><node name>`` = the time of the last beat. A beat is one small
#: etcd put (like Kubernetes' node Lease); the full Node status is written only now and then.
HEARTBEAT_PREFIX = "/corral/_heartbeats/"
NAMESPACE_FINALIZER = "corral.io/namespace"  # the namespace controller removes it once the namespace is empty
ORPHAN_FINALIZER = "corral.io/orphan"  # the garbage collector removes it once no dependent points here

_encoder = msgspec.json.Encoder()
ObjT = TypeVar("ObjT", bound=Object)


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


def release_agent_finalizer(obj: ObjT) -> ObjT | None:
    """``obj`` (the caller's own copy) without the agent's finalizer: its node is done with it.
    None when it has none (nothing to write)."""
    if AGENT_FINALIZER not in obj.metadata.finalizers:
        return None
    obj.metadata.finalizers = [f for f in obj.metadata.finalizers if f != AGENT_FINALIZER]
    return obj


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
