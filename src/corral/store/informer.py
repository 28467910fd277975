"""The one informer: a list+watch cache of one kind of object, with named indexes and one handler shape.

Every process that follows the cluster's state does it through an ``Informer``: the leader's
controllers and scheduler (through ``controllers.base.Informers``, one per kind for the whole
leader), the agent, the simulator and the CLI. What differs is only where the objects come from —
a ``ListWatchSource``: ``store.listwatch.StoreSource`` reads etcd directly (the control plane),
``api.listwatch.ApiSource`` asks the API (agents and the CLI, from the API's watch cache). A source
lists everything at one revision (``Listing``) and watches the changes after a revision
(``Delta``s); the informer does the rest, the same way for both:

- ``run()`` lists, fills the cache (key -> object, plus each key's *stamp*: the object's identity
  and version, e.g. etcd's create and mod revisions or the API's uid and resourceVersion), sets
  ``synced``, then watches from the list's revision and applies every delta to the cache, then to
  the indexes, then calls the handlers. Calling ``run()`` again after a cancel resumes from the
  cache's revision; ``prime(listing)`` starts it from a listing the caller already read
  (``corral get -w`` prints it first), so ``run()`` only watches.
- When the source says the revision it needs is gone (``Gone``, etcd's ``Compacted``), it lists
  again and turns the difference between the cache and the new list into Added/Modified/Deleted
  events (a key whose identity changed — deleted and created again meanwhile — is a Deleted, then
  an Added; an unchanged version is no event), so handlers and indexes see one consistent sequence
  of changes as if nothing had been missed. Any other failure (the store or API unreachable) is
  retried with backoff, from the same revision.
- Handlers have one shape, ``handler(change, key, obj, old)``: ``change`` is ``Change.ADDED``,
  ``MODIFIED`` or ``DELETED``; ``obj`` is the object now (for ``DELETED``: the last one seen);
  ``old`` is the previous version for ``MODIFIED`` and None otherwise. They should only note
  things and enqueue keys (the reconcile shape). A handler that raises is logged and skipped.
- Named indexes (client-go's indexers): ``add_index(name, fn)`` where ``fn(obj)`` returns the
  index values of an object (a tuple: its node, its owners' uids, a label's value); then
  ``by_index(name, value)`` is a dict lookup. Indexes are kept before handlers run, and a relist
  updates them through the same events.

Cached objects are shared with every reader and handler: never mutate them (copy, change, write).
Nothing is copied per event; ``items()``/``values()`` return a snapshot list safe across awaits.

Two list+watch loops are deliberately not informers: the API's watch cache (api/watchcache.py) keeps
a log of events with their rendered JSON for fan-out to HTTP watchers, and the token index
(api/tokenindex.py) answers "not known" while it is not watching, so authentication falls back to
etcd instead of trusting a cache that might miss a revocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
from collections.abc import AsyncGenerator, Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from corral.model.errors import CorralError, Gone

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0

Stamp = tuple[object, object]  # (identity, version): another identity is another object; another version a change


class Change(enum.StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


Handler = Callable[[Change, K, T, T | None], None]
"""``handler(change, key, obj, old)``; see the module docstring."""

IndexFunc = Callable[[T], tuple[str, ...]]
"""An object's values in one index (``()``: not in it)."""


@dataclass(slots=True)
class Delta(Generic[K, T]):
    """One change from a source's watch. ``obj`` None: ``key`` was deleted; ``key`` None: a bookmark
    (only the revision moved)."""

    key: K | None
    obj: T | None
    stamp: Stamp | None
    revision: int


@dataclass(slots=True)
class Listing(Generic[K, T]):
    """Every object of a source at one revision: (key, object, stamp) triples."""

    items: list[tuple[K, T, Stamp]]
    revision: int


class ListWatchSource(Protocol[K, T]):
    """Where an informer's objects come from."""

    @property
    def name(self) -> str:
        """For logs: what is listed (a key prefix, a kind and its selectors)."""
        ...

    async def list(self) -> Listing[K, T]:
        """Every object, at one revision."""
        ...

    def watch(self, after: int) -> AsyncGenerator[Delta[K, T], None]:
        """The changes after revision ``after``, until cancelled or closed. Raises ``Gone`` when that
        revision is no longer available (relist), another ``CorralError`` when the source fails."""
        ...


class Informer(Generic[K, T]):
    """An in-memory, watch-fed copy of every object of a source; see the module docstring."""

    def __init__(self, source: ListWatchSource[K, T]) -> None:
        self.source = source
        self.synced = asyncio.Event()
        self.relists = 0
        self._objects: dict[K, T] = {}
        self._stamps: dict[K, Stamp] = {}
        self._revision = 0
        self._handlers: list[Handler[K, T]] = []
        self._indexers: dict[str, IndexFunc[T]] = {}
        self._indices: dict[str, dict[str, set[K]]] = {}

    # -- wiring -----------------------------------------------------------------------------

    def add_handler(self, handler: Handler[K, T]) -> None:
        """Call ``handler`` for every change from now on (objects already cached are not replayed:
        register before ``run``)."""
        self._handlers.append(handler)

    def add_index(self, name: str, fn: IndexFunc[T]) -> None:
        """Keep the index ``name``: every object under each value ``fn(obj)`` returns. Adding a
        name that exists is a no-op (several controllers ask for the same index of a shared informer)."""
        if name in self._indexers:
            return
        self._indexers[name] = fn
        index: dict[str, set[K]] = {}
        self._indices[name] = index
        for key, obj in self._objects.items():
            for value in fn(obj):
                index.setdefault(value, set()).add(key)

    # -- reading the cache ------------------------------------------------------------------

    @property
    def revision(self) -> int:
        """The source revision the cache reflects (0 before the first list)."""
        return self._revision

    @property
    def objects(self) -> Mapping[K, T]:
        """The cache itself (read-only; iterate a snapshot — ``items()`` — across awaits)."""
        return self._objects

    def get(self, key: K) -> T | None:
        return self._objects.get(key)

    def items(self) -> list[tuple[K, T]]:
        """A snapshot of (key, object) pairs, safe to iterate across awaits."""
        return list(self._objects.items())

    def values(self) -> list[T]:
        """A snapshot of the objects, safe to iterate across awaits."""
        return list(self._objects.values())

    def keys(self) -> list[K]:
        return list(self._objects)

    def __len__(self) -> int:
        return len(self._objects)

    def __contains__(self, key: object) -> bool:
        return key in self._objects

    def keys_by_index(self, name: str, value: str) -> list[K]:
        """The keys of the objects with ``value`` in index ``name`` (KeyError: no such index)."""
        return list(self._indices[name].get(value, ()))

    def by_index(self, name: str, value: str) -> list[T]:
        """The objects with ``value`` in index ``name``, as the cache has them now."""
        objects = self._objects
        return [objects[key] for key in self._indices[name].get(value, ())]

    def index_values(self, name: str) -> list[str]:
        """Every value index ``name`` holds at least one object under."""
        return list(self._indices[name])

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        """List, then watch and apply, relisting when the source lost the history; until cancelled."""
        backoff = BACKOFF_FIRST
        must_list = not self.synced.is_set()  # run() again after a cancel resumes from the cache's revision
        failing = False
        while True:
            try:
                if must_list:
                    await self._relist()
                    must_list, backoff = False, BACKOFF_FIRST
                    self.synced.set()
                delivered = False
                async with contextlib.aclosing(self.source.watch(self._revision)) as deltas:
                    async for delta in deltas:
                        self._apply(delta)
                        delivered = True
                        if failing:
                            failing, backoff = False, BACKOFF_FIRST
                            log.info("informer %s: following again", self.source.name)
                if not delivered:  # the stream ended at once (a server shutting down): not in a tight loop
                    await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                    backoff = min(backoff * 2, BACKOFF_MAX)
            except Gone as e:
                log.info("informer %s: %s; relisting", self.source.name, e.message)
                must_list = True
            except CorralError as e:
                delay = backoff * random.uniform(0.5, 1.0)
                backoff = min(backoff * 2, BACKOFF_MAX)
                (log.debug if failing else log.warning)(
                    "informer %s: %s; retrying in %.1fs", self.source.name, e.message, delay)
                failing = True
                await asyncio.sleep(delay)

    def prime(self, listing: Listing[K, T]) -> None:
        """Start from a listing the caller has already read (``run`` then watches from its revision,
        without listing first). Handlers registered by then see its objects as Added."""
        self._replace(listing)
        self.synced.set()

    async def _relist(self) -> None:
        self._replace(await self.source.list())

    def _replace(self, listing: Listing[K, T]) -> None:
        if self.synced.is_set():
            self.relists += 1  # not the first list: the watch lost its place
        seen: set[K] = set()
        stamps = self._stamps
        for key, obj, stamp in listing.items:
            seen.add(key)
            cached = stamps.get(key)
            if cached is None or cached[1] != stamp[1]:
                if cached is not None and cached[0] != stamp[0]:
                    self._remove(key)  # deleted and created again while unwatched: another object
                self._put(key, obj, stamp)
        for key in [k for k in stamps if k not in seen]:
            self._remove(key)
        self._revision = listing.revision

    # -- applying changes -------------------------------------------------------------------

    def _apply(self, delta: Delta[K, T]) -> None:
        key = delta.key
        if key is not None:
            if delta.obj is None:
                self._remove(key)
            else:
                assert delta.stamp is not None
                self._put(key, delta.obj, delta.stamp)
        if delta.revision > self._revision:  # a deleted object may carry an older version: forward only
            self._revision = delta.revision

    def _put(self, key: K, obj: T, stamp: Stamp) -> None:
        old = self._objects.get(key)
        self._objects[key] = obj
        self._stamps[key] = stamp
        if self._indexers:
            self._reindex(key, old, obj)
        if old is None:
            self._call(Change.ADDED, key, obj, None)
        else:
            self._call(Change.MODIFIED, key, obj, old)

    def _remove(self, key: K) -> None:
        self._stamps.pop(key, None)
        last = self._objects.pop(key, None)
        if last is None:
            return
        if self._indexers:
            self._reindex(key, last, None)
        self._call(Change.DELETED, key, last, None)

    def _reindex(self, key: K, old: T | None, new: T | None) -> None:
        for name, fn in self._indexers.items():
            before = fn(old) if old is not None else ()
            after = fn(new) if new is not None else ()
            if before == after:
                continue
            index = self._indices[name]
            for value in before:
                if value not in after and (keys := index.get(value)) is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]
            for value in after:
                if value not in before:
                    index.setdefault(value, set()).add(key)

    def _call(self, change: Change, key: K, obj: T, old: T | None) -> None:
        for handler in self._handlers:
            try:
                handler(change, key, obj, old)
            except Exception:
                log.exception("informer %s: handler %r failed on %s %s", self.source.name, handler, change, key)
