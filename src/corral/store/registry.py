"""The one place objects are written: creates, ``guaranteed_update``, deletes and bindings.

Every writer goes through a ``Registry`` over the Store — the API handlers (``api/resources.py``),
the controllers (``Objects``, a thin typed client of it) and the scheduler's bindings — and every
write follows the kind's strategy (``model/strategies.py``), so the three speak one meaning.

``guaranteed_update(info, key, mutate)`` is Kubernetes' GuaranteedUpdate: read the object (on the
first attempt the caller's cached copy when it has one: a watch cache's entry spares an etcd read,
and the CAS still decides), hand ``mutate`` a private copy (its metadata and finalizers are its
own to change; spec and status it replaces, never edits in place: they may be the cache's), and write the answer with a
compare-and-swap on the revision that was read. A lost CAS re-reads from etcd and calls ``mutate``
again, up to ``attempts`` times. ``mutate`` (a function or a coroutine function) answers:

- the new object: written (an object left marked for deletion with no finalizer is removed);
- ``Removal(obj)``: the object is deleted (a CAS delete on the revision read);
- ``None``: nothing to change, nothing written.

Errors ``mutate`` raises are the caller's and are not retried (a Conflict too: a failed JSON-patch
test is no lost race). With ``precondition`` — the revision the caller's copy was read at, as a
client's resourceVersion or a controller's copy from its informer — a different stored revision is
a Conflict at once: the caller decides again from what it now sees. Only a version that came from
the cache gets a second look (as in Kubernetes): a Conflict from ``mutate`` or the precondition is
then decided again on etcd's version, since the cache may lag behind what the caller read.

Event writes go on the current shared lease (``leases.py``) so they expire. ``bind`` and
``write_statuses`` are the scheduler's batched paths: many CAS writes in one ``store.batch`` (a few
etcd transactions), each built by the strategy, each answered on its own.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeAlias, TypeVar

import msgspec

from corral.model.errors import AlreadyExists, Conflict, NotFound
from corral.model.kinds import EVENTS, Kind, KindInfo, ObjectKey
from corral.model.lifecycle import now_rfc3339
from corral.model.resources import Container, Object
from corral.model.strategies import CONTAINERS, describe, kind_of, removable, strategy_for
from corral.store import typed
from corral.store.base import Put, Store
from corral.store.leases import BucketLeases

ObjT = TypeVar("ObjT", bound=Object)

ATTEMPTS = 16  # reads and CAS writes a guaranteed_update makes before it gives up on a busy object (n writers at once: the last may lose n - 1 times)

Undo = Callable[[bool], Awaitable[None]]  # told whether the write it prepared for succeeded


def key_of(obj: Object) -> ObjectKey:
    return kind_of(obj).key(obj.metadata.namespace, obj.metadata.name)


@dataclass(frozen=True, slots=True)
class Removal(Generic[ObjT]):
    """``mutate``'s answer when the object is to be deleted now."""

    obj: ObjT


Answer: TypeAlias = "ObjT | Removal[ObjT] | None"  # what a mutate returns (see the module docstring)


@dataclass(slots=True)
class Written(Generic[ObjT]):
    """What a write did: the object as written (resourceVersion set; empty when removed), the
    revision it now has (a removed object's: the one it had), whether it was removed, and
    whether anything was written at all."""

    obj: ObjT
    revision: int
    removed: bool = False
    changed: bool = True


class Binding(Protocol):
    """A scheduler's decision: ``container`` (as read, at its resourceVersion) goes to ``node``
    (a Protocol: the scheduler hands over its own records, nothing is allocated per binding)."""

    @property
    def key(self) -> str: ...

    @property
    def container(self) -> Container: ...

    @property
    def node(self) -> str: ...


def private_copy(obj: ObjT) -> ObjT:
    """A copy a mutate may change: its own metadata and finalizers; spec and status are shared with
    ``obj`` (a cache's entry), so a mutate replaces them, never edits them in place."""
    meta = obj.metadata
    return msgspec.structs.replace(obj, metadata=msgspec.structs.replace(meta, finalizers=list(meta.finalizers)))


def conflict_message(info: KindInfo, namespace: str, name: str) -> str:
    return (f"{describe(info, namespace, name)} has been modified since you read it; "
            "get it again and apply your change to the latest version")


class Registry:
    """Typed, strategy-following writes over a Store (see the module docstring)."""

    def __init__(self, store: Store, *, event_leases: BucketLeases | None = None) -> None:
        self.store = store
        self.event_leases = event_leases

    # --- reading ---------------------------------------------------------------------------------

    async def read(self, info: KindInfo, key: ObjectKey, tp: type[ObjT]) -> tuple[ObjT, int]:
        kv = await self.store.get(key)
        if kv is None:
            namespace, name = _split(info, key)
            raise NotFound(f"{describe(info, namespace, name)} not found")
        return typed.decode(kv, tp), kv.mod_revision

    # --- create ----------------------------------------------------------------------------------

    async def create(self, obj: ObjT, *, prepared: bool = False, value: bytes | None = None) -> ObjT:
        """Create ``obj`` (stamped by its strategy unless ``prepared``); AlreadyExists if it is there.
        ``value``: ``obj`` already encoded (the API hands the watch cache those same bytes)."""
        info = kind_of(obj)
        if not prepared:
            strategy_for(info).prepare_for_create(obj)
        key = key_of(obj)
        if value is None:
            value = typed.encode(obj)
        try:
            if self.event_leases is not None and info is EVENTS:  # expires like every Event
                revision = await self.event_leases.on_lease(lambda lease: self.store.create(key, value, lease=lease))
            else:
                revision = await self.store.create(key, value)
        except Conflict:
            raise AlreadyExists(f"{describe(info, obj.metadata.namespace, obj.metadata.name)} already exists") from None
        obj.metadata.resource_version = str(revision)
        return obj

    # --- the update loop -------------------------------------------------------------------------

    async def guaranteed_update(
        self, info: Kind[ObjT], key: ObjectKey, mutate: Callable[[ObjT], Answer[ObjT] | Awaitable[Answer[ObjT]]], *,
        tp: type[ObjT] | None = None, cached: tuple[ObjT, int] | None = None, precondition: int | None = None,
        attempts: int = ATTEMPTS, before_write: Callable[[ObjT, ObjT], Awaitable[Undo | None]] | None = None,
        dry_run: bool = False,
    ) -> Written[ObjT]:
        """Read, ``mutate``, CAS-write; on a lost CAS read again from etcd and repeat (see the module
        docstring). ``before_write(new, current)`` (``current``: the version read, as ``mutate`` left
        it) prepares what lives beside the object (a Service's addresses) and returns how to finish
        or undo it. ``dry_run``: everything but the write."""
        decode_as = tp if tp is not None else info.type
        namespace, name = _split(info, key)
        for attempt in range(attempts):
            from_cache = attempt == 0 and cached is not None
            if from_cache:
                assert cached is not None
                current, revision = private_copy(cached[0]), cached[1]
                current.metadata.resource_version = str(revision)
            else:
                current, revision = await self.read(info, key, decode_as)
            try:
                answer = mutate(current)  # a copy of its own: made from the cache's, or just decoded
                if inspect.isawaitable(answer):
                    answer = await answer
                if precondition is not None and precondition != revision:
                    raise Conflict(conflict_message(info, namespace, name))
            except Conflict:
                if from_cache:  # the cache may lag behind what the caller saw: decide again on etcd's version
                    continue
                raise
            if answer is None:
                return Written(current, revision, changed=False)
            removal = isinstance(answer, Removal)
            new: ObjT = answer.obj if isinstance(answer, Removal) else answer
            if dry_run:
                new.metadata.resource_version = str(revision)
                return Written(new, revision, removed=removal, changed=False)
            finish = await before_write(new, current) if before_write is not None and not removal else None
            try:
                written = await self._write(info, key, new, revision, remove=removal)
            except Conflict:
                if finish is not None:
                    await finish(False)
                if precondition is not None:
                    raise Conflict(conflict_message(info, namespace, name)) from None
                continue
            except BaseException:
                if finish is not None:
                    await finish(False)
                raise
            if finish is not None:
                await finish(True)
            return written
        raise Conflict(f"{describe(info, namespace, name)} keeps changing; try again")

    async def _write(self, info: KindInfo, key: ObjectKey, obj: ObjT, expected: int, *, remove: bool) -> Written[ObjT]:
        obj.metadata.resource_version = ""
        if remove or removable(obj):
            await self.store.delete(key, expected_revision=expected)
            return Written(obj, expected, removed=True)
        value = typed.encode(obj)
        if self.event_leases is not None and info is EVENTS:  # an Event's put without its lease would be immortal
            revision = await self.event_leases.on_lease(
                lambda lease: self.store.update(key, value, expected_revision=expected, lease=lease))
        else:
            revision = await self.store.update(key, value, expected_revision=expected)
        obj.metadata.resource_version = str(revision)
        return Written(obj, revision)

    # --- the writes every writer makes -----------------------------------------------------------

    async def update(self, obj: ObjT) -> Written[ObjT]:
        """Write ``obj``'s metadata and spec over the stored object (the strategy's carry-over), at
        ``obj``'s resourceVersion when it has one (a Conflict if the stored one differs), else on
        whatever is newest."""
        info = kind_of(obj)
        strategy = strategy_for(info)

        def change(current: ObjT) -> ObjT:
            strategy.prepare_for_update(obj, current)
            return obj

        rv = obj.metadata.resource_version
        return await self.guaranteed_update(info, key_of(obj), change, tp=type(obj),
                                            precondition=int(rv) if rv else None)

    async def update_status(self, obj: ObjT) -> Written[ObjT]:
        """Write ``obj``'s status onto the stored object (at ``obj``'s resourceVersion when it has one)."""
        info = kind_of(obj)
        strategy = strategy_for(info)
        rv = obj.metadata.resource_version
        return await self.guaranteed_update(
            info, key_of(obj), lambda current: strategy.prepare_for_status(current, obj.status),
            tp=type(obj), precondition=int(rv) if rv else None)

    async def delete(self, info: Kind[ObjT], key: ObjectKey, tp: type[ObjT], *, grace: int | None = None,
                     orphan: bool = False, check: Callable[[ObjT], None] | None = None,
                     attempts: int = ATTEMPTS) -> Written[ObjT]:
        """Delete gracefully: marked while finalizers remain, removed when none do; ``orphan`` keeps
        an owner's dependents. ``check(current)`` runs on every version tried (authorization, a
        Volume still mounted). NotFound if absent."""
        strategy = strategy_for(info)

        def mark(obj: ObjT) -> ObjT | Removal[ObjT]:
            if check is not None:
                check(obj)
            return Removal(obj) if strategy.prepare_for_delete(obj, grace=grace, orphan=orphan) else obj

        return await self.guaranteed_update(info, key, mark, tp=tp, attempts=attempts)

    # --- the scheduler's batched writes ----------------------------------------------------------

    async def bind(self, bindings: Sequence[Binding], *, now: str = "") -> Sequence[int | None]:
        """Bind each container to its node (the Container strategy's ``bind``), all in one
        ``store.batch``: a CAS each on the revision it was decided at; per binding its new revision,
        or None when it lost (the container changed meanwhile)."""
        now = now or now_rfc3339()
        puts = [Put(b.key, typed.encode(CONTAINERS.bind(b.container, b.node, now=now)),
                    expected_revision=int(b.container.metadata.resource_version)) for b in bindings]
        return await self.store.batch(puts)

    async def write_statuses(self, writes: Sequence[tuple[str, ObjT, object]]) -> Sequence[int | None]:
        """Status writes ``(key, object as read, new status)`` in one ``store.batch``, a CAS each on
        the object's resourceVersion; per write its new revision, or None when it lost."""
        puts: list[Put] = []
        for key, obj, status in writes:
            new = strategy_for(kind_of(obj)).prepare_for_status(msgspec.structs.replace(obj), status)
            puts.append(Put(key, typed.encode(new), expected_revision=int(obj.metadata.resource_version)))
        return await self.store.batch(puts)


def _split(info: KindInfo, key: ObjectKey) -> tuple[str, str]:
    """(namespace, name) of ``key``."""
    rest = key[len(info.prefix()):]
    if info.namespaced and "/" in rest:
        namespace, name = rest.split("/", 1)
        return namespace, name
    return "", rest
