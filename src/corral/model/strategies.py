"""Per-kind write rules: what a create, an update, a status write, a delete and a binding may do.

Kubernetes' registry gives every kind a *strategy* (PrepareForCreate, PrepareForUpdate, Validate,
the ``/status`` and ``/binding`` subresources' own rules); this is corral's. Every writer — the API
handlers, the controllers, the scheduler — goes through ``store/registry.py``, which applies the
kind's strategy, so an object a controller writes is indistinguishable from one a user posted.

The rules, for every kind:

- **create** stamps what only the server sets: a uid, the creation time, generation 1, no
  deletionTimestamp; the status is cleared when the kind has a status subresource (a Node keeps
  the status its agent registers it with).
- **update** (metadata and spec) carries over what the writer may not change: identity, deletion
  and, with a status subresource, the status. ``generation`` goes up by one only when the spec
  changed. While the object is being deleted its spec no longer changes.
- **status** writes change the status and nothing else.
- **delete** is graceful while finalizers remain: ``deletionTimestamp`` is set and the object goes
  when the last finalizer is removed (``removable``).

And per kind: a Container gets the agent's finalizer (not gone before its node has stopped it; a
never-bound one is removed at once) and is *bound* by the scheduler (``spec.node``, phase
Scheduled, the Scheduled condition, as one write that is not a spec change of the user's); a
Namespace gets the namespace finalizer and the phases Active/Terminating; the owner kinds take the
orphan finalizer when deleted with ``propagationPolicy=Orphan``. These are pure functions of
objects: no I/O, testable alone.
"""

from __future__ import annotations

import uuid
from typing import TypeVar, cast

import msgspec

from corral.model import kinds, validation
from corral.model.errors import Forbidden
from corral.model.kinds import BY_KIND, KINDS, OWNERS, Kind, KindInfo
from corral.model.lifecycle import (
    AGENT_FINALIZER,
    NAMESPACE_FINALIZER,
    ORPHAN_FINALIZER,
    now_rfc3339,
    spec_bytes,
)
from corral.model.resources import Condition, Container, Namespace, Object

ObjT = TypeVar("ObjT", bound=Object)

SCHEDULED = "Scheduled"  # the condition (and phase) a binding sets


def describe(info: KindInfo, namespace: str, name: str) -> str:
    """How messages name an object: ``container "web" in namespace "default"``."""
    where = f' in namespace "{namespace}"' if namespace else ""
    return f'{info.kind.lower()} "{name}"{where}'


def with_condition(conditions: list[Condition], cond: Condition) -> list[Condition]:
    """``conditions`` with ``cond`` in place of any of its type (a new list)."""
    return [c for c in conditions if c.type != cond.type] + [cond]


def removable(obj: Object) -> bool:
    """Marked for deletion with no finalizer left: the write that leaves it so removes it."""
    return bool(obj.metadata.deletion_timestamp) and not obj.metadata.finalizers


class Strategy:
    """The write rules of one kind (the defaults every kind shares; subclasses add their own)."""

    def __init__(self, info: KindInfo) -> None:
        self.info = info

    @property
    def keeps_status_on_create(self) -> bool:
        return not self.info.status_subresource

    def what(self, obj: Object) -> str:
        return describe(self.info, obj.metadata.namespace, obj.metadata.name)

    # --- create ---------------------------------------------------------------------------------

    def validate(self, obj: Object) -> None:
        """The meaning pass of validation (``model/validation.py``); Invalid naming every bad field."""
        validation.validate(obj, self.info)

    def prepare_for_create(self, obj: Object) -> None:
        """Server-set fields of a new object (and the defaults only the server sets)."""
        meta = obj.metadata
        meta.uid = str(uuid.uuid4())
        meta.creation_timestamp = now_rfc3339()
        meta.generation = 1
        meta.resource_version = ""
        meta.deletion_timestamp = ""
        if not self.keeps_status_on_create:
            obj.status = type(obj.status)()

    # --- update ---------------------------------------------------------------------------------

    def prepare_for_update(self, new: Object, current: Object) -> None:
        """What an update may not change, taken from ``current``; the generation counts spec changes.
        Forbidden when the spec changes while the object is being deleted."""
        meta, cur = new.metadata, current.metadata
        spec_changed = spec_bytes(new) != spec_bytes(current)
        if cur.deletion_timestamp and spec_changed:
            raise Forbidden(f"{self.what(current)} is being deleted; its spec can no longer change")
        meta.uid, meta.creation_timestamp = cur.uid, cur.creation_timestamp
        meta.deletion_timestamp = cur.deletion_timestamp
        meta.deletion_grace_period_seconds = cur.deletion_grace_period_seconds
        meta.generation = cur.generation + (1 if spec_changed else 0)
        if self.info.status_subresource:
            new.status = current.status

    # --- status ---------------------------------------------------------------------------------

    def prepare_for_status(self, current: ObjT, status: object) -> ObjT:
        """A status write: ``current`` (the writer's own copy) with ``status``, nothing else changed."""
        current.status = status  # type: ignore[assignment]
        return current

    # --- delete ---------------------------------------------------------------------------------

    def prepare_for_delete(self, obj: Object, *, grace: int | None = None, orphan: bool = False) -> bool:
        """Mark ``obj`` (the writer's own copy) for deletion; True when it may go at once (no
        finalizers). ``orphan``: its dependents are kept (the garbage collector strips this owner
        from them, then the orphan finalizer)."""
        meta = obj.metadata
        if orphan and self.info in OWNERS and ORPHAN_FINALIZER not in meta.finalizers:
            meta.finalizers = [*meta.finalizers, ORPHAN_FINALIZER]
        if not meta.finalizers:
            return True
        if not meta.deletion_timestamp:
            meta.deletion_timestamp = now_rfc3339()
        if grace is not None:
            meta.deletion_grace_period_seconds = grace
        return False


class ContainerStrategy(Strategy):
    """Containers carry the agent's finalizer and are bound to a node by the scheduler."""

    def prepare_for_create(self, obj: Object) -> None:
        super().prepare_for_create(obj)
        if AGENT_FINALIZER not in obj.metadata.finalizers:
            obj.metadata.finalizers.append(AGENT_FINALIZER)  # the agent removes it once the container is gone

    def prepare_for_delete(self, obj: Object, *, grace: int | None = None, orphan: bool = False) -> bool:
        assert isinstance(obj, Container)
        meta = obj.metadata
        if AGENT_FINALIZER in meta.finalizers and not obj.spec.node:  # never bound: no agent to wait for
            meta.finalizers = [f for f in meta.finalizers if f != AGENT_FINALIZER]
        return super().prepare_for_delete(obj, grace=grace, orphan=orphan)

    def bind(self, c: Container, node: str, *, now: str) -> Container:
        """``c`` bound to ``node`` (a new object; ``c`` is untouched): ``spec.node``, phase Scheduled,
        ``status.node``, the Scheduled condition, and the scheduler's earlier words cleared. A
        binding is the scheduler's, not a change of the user's spec: the generation stays."""
        cond = Condition(type=SCHEDULED, status="True", reason=SCHEDULED, last_transition_time=now)
        return msgspec.structs.replace(
            c,
            spec=msgspec.structs.replace(c.spec, node=node),
            status=msgspec.structs.replace(
                c.status, phase=SCHEDULED, node=node, reason="", message="", nominated_node="",
                conditions=with_condition(c.status.conditions, cond),
            ),
        )


class NamespaceStrategy(Strategy):
    """A Namespace is Active, then Terminating; it goes once the namespace controller has emptied it."""

    def prepare_for_create(self, obj: Object) -> None:
        super().prepare_for_create(obj)
        assert isinstance(obj, Namespace)
        obj.status.phase = "Active"
        if NAMESPACE_FINALIZER not in obj.metadata.finalizers:
            obj.metadata.finalizers.append(NAMESPACE_FINALIZER)  # deleted only once everything in it is gone

    def prepare_for_delete(self, obj: Object, *, grace: int | None = None, orphan: bool = False) -> bool:
        assert isinstance(obj, Namespace)
        meta = obj.metadata
        obj.status = msgspec.structs.replace(obj.status, phase="Terminating")
        if not meta.deletion_timestamp and NAMESPACE_FINALIZER not in meta.finalizers:
            meta.finalizers = [*meta.finalizers, NAMESPACE_FINALIZER]  # one made before namespaces had it
        return super().prepare_for_delete(obj, grace=grace, orphan=orphan)


class NodeStrategy(Strategy):
    """An agent registers its Node with its status: a create keeps it."""

    @property
    def keeps_status_on_create(self) -> bool:
        return True


CONTAINERS = ContainerStrategy(kinds.CONTAINERS)
STRATEGIES: dict[KindInfo, Strategy] = {info: Strategy(info) for info in KINDS} | {
    CONTAINERS.info: CONTAINERS,
    kinds.NAMESPACES: NamespaceStrategy(kinds.NAMESPACES),
    kinds.NODES: NodeStrategy(kinds.NODES),
}


def strategy_for(info: KindInfo) -> Strategy:
    return STRATEGIES[info]


def kind_of(obj_or_type: ObjT | type[ObjT]) -> Kind[ObjT]:
    """The kind of an object or of its type (a kind's class names itself in ``KIND``), typed by it."""
    return cast("Kind[ObjT]", BY_KIND[obj_or_type.KIND if isinstance(obj_or_type, type) else obj_or_type.kind])
