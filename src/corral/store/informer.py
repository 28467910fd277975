"""Informer: a list+watch cache of one key prefix, with add/update/delete handlers.

``run()`` lists the prefix page by page at one revision, fills the cache (key -> decoded object,
plus each key's mod_revision), sets ``synced``, then watches from the list's revision + 1 and
applies every event to the cache before calling the handlers. The watch itself resumes across
etcd restarts; when etcd has compacted the revision the informer needs (``Compacted``), it lists
again and turns the difference between the old cache and the new list into add/update/delete
calls (a key deleted and created again meanwhile, seen by its create_revision, is a delete then
an add), so handlers see one consistent sequence of changes as if no event had been missed.
Calling ``run()`` again after a cancel resumes from the cache's revision. If etcd
is unreachable for the list, it retries with backoff. ``run()`` lives until it is cancelled.

Handlers are plain callables that should only enqueue keys (the reconcile shape): ``on_add(key,
obj)``, ``on_update(key, old, new)``, ``on_delete(key, last_obj)``. A handler that raises is
logged and does not stop the informer; a value that ``decode`` rejects is logged and treated as
absent. Cached objects are shared: never mutate them.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Generic, TypeVar

from corral.model.errors import Unavailable
from corral.store.base import Compacted, EventType, KeyValue, Store, WatchEvent

log = logging.getLogger(__name__)

T = TypeVar("T")

AddHandler = Callable[[str, T], None]
UpdateHandler = Callable[[str, T, T], None]
DeleteHandler = Callable[[str, T], None]

BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0


class Informer(Generic[T]):
    """An in-memory, watch-fed copy of every object under ``prefix``; see the module docstring."""

    def __init__(
        self,
        store: Store,
        prefix: str,
        decode: Callable[[KeyValue], T],
        *,
        on_add: AddHandler[T] | None = None,
        on_update: UpdateHandler[T] | None = None,
        on_delete: DeleteHandler[T] | None = None,
        page_size: int = 1000,
    ) -> None:
        self.store = store
        self.prefix = prefix
        self.decode = decode
        self.on_add = on_add
        self.on_update = on_update
        self.on_delete = on_delete
        self.page_size = page_size
        self.synced = asyncio.Event()
        self.relists = 0
        self._objects: dict[str, T] = {}
        self._revs: dict[str, tuple[int, int]] = {}  # key -> (create_revision, mod_revision)
        self._revision = 0

    # -- reading the cache ------------------------------------------------------------------

    @property
    def revision(self) -> int:
        """The store revision the cache reflects (0 before the first list)."""
        return self._revision

    def get(self, key: str) -> T | None:
        return self._objects.get(key)

    def items(self) -> list[tuple[str, T]]:
        """A snapshot of (key, object) pairs, safe to iterate across awaits."""
        return list(self._objects.items())

    def keys(self) -> list[str]:
        return list(self._objects)

    def __len__(self) -> int:
        return len(self._objects)

    def __contains__(self, key: object) -> bool:
        return key in self._objects

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        """List, then watch and apply, relisting when history was compacted; until cancelled."""
        backoff = BACKOFF_FIRST
        must_list = not self.synced.is_set()  # run() again after a cancel resumes from the cache's revision
        while True:
            try:
                if must_list:
                    await self._relist()
                    must_list = False
                    backoff = BACKOFF_FIRST
                    self.synced.set()
                await self._watch()
            except Compacted as e:
                log.info("informer %s: %s; relisting", self.prefix, e.message)
                must_list = True
            except Unavailable as e:
                delay = backoff * random.uniform(0.5, 1.0)
                backoff = min(backoff * 2, BACKOFF_MAX)
                log.warning("informer %s: %s; retrying in %.1fs", self.prefix, e.message, delay)
                await asyncio.sleep(delay)

    async def _watch(self) -> None:
        watch = self.store.watch(self.prefix, from_revision=self._revision + 1)
        try:
            async for event in watch:
                self._apply(event)
        finally:
            await watch.aclose()

    async def _list_all(self) -> tuple[list[KeyValue], int]:
        """Every key under the prefix at one revision, paging; starts over if that revision is compacted."""
        while True:
            items: list[KeyValue] = []
            revision = 0
            start_after = ""
            try:
                while True:
                    page = await self.store.list(
                        self.prefix, limit=self.page_size, start_after=start_after, revision=revision
                    )
                    items.extend(page.items)
                    revision = page.revision
                    if not page.more or not page.items:
                        return items, revision
                    start_after = page.items[-1].key
            except Compacted:
                continue  # the snapshot revision went away mid-list: take a newer one

    async def _relist(self) -> None:
        items, revision = await self._list_all()
        if self.synced.is_set():
            self.relists += 1  # not the first list: the watch lost its place
        seen: set[str] = set()
        for kv in items:
            seen.add(kv.key)
            cached = self._revs.get(kv.key)
            if cached is None or cached[1] != kv.mod_revision:
                if cached is not None and cached[0] != kv.create_revision:
                    self._remove(kv.key)  # deleted and created again while unwatched: another object
                self._put(kv)
        for key in [k for k in self._revs if k not in seen]:
            self._remove(key)
        self._revision = revision

    # -- applying changes -------------------------------------------------------------------

    def _apply(self, event: WatchEvent) -> None:
        if event.type is EventType.PUT:
            self._put(event.to_kv())
        else:
            self._remove(event.key)
        self._revision = max(self._revision, event.revision)

    def _put(self, kv: KeyValue) -> None:
        try:
            obj = self.decode(kv)
        except Exception:
            log.exception("informer %s: cannot decode %s at revision %d; ignoring it", self.prefix, kv.key, kv.mod_revision)
            self._remove(kv.key)
            return
        had = kv.key in self._objects
        old = self._objects.get(kv.key)
        self._objects[kv.key] = obj
        self._revs[kv.key] = (kv.create_revision, kv.mod_revision)
        if had:
            self._call(self.on_update, kv.key, old, obj)
        else:
            self._call(self.on_add, kv.key, obj)

    def _remove(self, key: str) -> None:
        self._revs.pop(key, None)
        if key not in self._objects:
            return
        last = self._objects.pop(key)
        self._call(self.on_delete, key, last)

    def _call(self, handler: Callable[..., None] | None, *args: object) -> None:
        if handler is None:
            return
        try:
            handler(*args)
        except Exception:
            log.exception("informer %s: handler %r failed on %s", self.prefix, handler, args[0])
