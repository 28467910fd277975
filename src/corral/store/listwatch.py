"""The control plane's list+watch source: one key prefix of the Store, decoded into objects.

``StoreSource`` is the ``ListWatchSource`` (store/informer.py) the leader's informers read: keys
are store keys (``/corral/containers/default/web``), an object's stamp is etcd's (create_revision,
mod_revision). ``list()`` pages through the prefix at one revision and starts over at a newer one
if that revision is compacted mid-list. ``watch(after)`` is the store's watch from ``after + 1``
(it resumes across etcd restarts by itself; a compacted revision raises ``Compacted``, a ``Gone``).
A value that ``decode`` rejects is logged and treated as absent: skipped by a list, a deletion in
a watch. Each event is decoded once, whatever number of handlers and indexes look at it.

``store_informer(store, prefix, decode)`` is the shorthand for ``Informer(StoreSource(...))``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable
from typing import Generic, TypeVar

from corral.store.base import Compacted, EventType, KeyValue, Store
from corral.store.informer import Delta, Informer, Listing, Stamp

log = logging.getLogger(__name__)

T = TypeVar("T")


class StoreSource(Generic[T]):
    """Every key under ``prefix``, decoded with ``decode``; see the module docstring."""

    def __init__(self, store: Store, prefix: str, decode: Callable[[KeyValue], T], *, page_size: int = 1000) -> None:
        self.store = store
        self.prefix = prefix
        self.decode = decode
        self.page_size = page_size

    @property
    def name(self) -> str:
        return self.prefix

    def _decoded(self, kv: KeyValue) -> T | None:
        try:
            return self.decode(kv)
        except Exception:
            log.exception("informer %s: cannot decode %s at revision %d; ignoring it", self.prefix, kv.key,
                          kv.mod_revision)
            return None

    async def list(self) -> Listing[str, T]:
        while True:
            items: list[tuple[str, T, Stamp]] = []
            revision = 0
            start_after = ""
            try:
                while True:
                    page = await self.store.list(self.prefix, limit=self.page_size, start_after=start_after,
                                                 revision=revision)
                    for kv in page.items:
                        obj = self._decoded(kv)
                        if obj is not None:
                            items.append((kv.key, obj, (kv.create_revision, kv.mod_revision)))
                    revision = page.revision
                    if not page.more or not page.items:
                        return Listing(items, revision)
                    start_after = page.items[-1].key
            except Compacted:
                continue  # the snapshot revision went away mid-list: take a newer one

    async def watch(self, after: int) -> AsyncGenerator[Delta[str, T], None]:
        stream = self.store.watch(self.prefix, from_revision=after + 1)
        try:
            async for event in stream:
                if event.type is EventType.PUT:
                    obj = self._decoded(event.to_kv())
                    stamp = (event.create_revision, event.revision)
                    yield Delta(event.key, obj, stamp if obj is not None else None, event.revision)
                else:
                    yield Delta(event.key, None, None, event.revision)
        finally:
            await stream.aclose()


def store_informer(store: Store, prefix: str, decode: Callable[[KeyValue], T], *,
                   page_size: int = 1000) -> Informer[str, T]:
    """An informer of every object under ``prefix`` of ``store``."""
    return Informer(StoreSource(store, prefix, decode, page_size=page_size))
