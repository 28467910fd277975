"""A prefix of etcd kept in memory by a watch: the token records every API instance authenticates with.

``TokenIndex`` lists the prefix, then watches it from the list's revision: a put adds or replaces an
entry, a delete removes it — so a token revoked on one API instance (its key deleted) stops working on
every instance as soon as the delete reaches that instance's watch (milliseconds). A broken watch
reconnects and relists (``Compacted`` included); while it has not listed yet, ``get`` answers None and
the caller reads etcd itself, so nothing is ever served from a stale or missing index.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from corral.model.errors import CorralError
from corral.store.base import EventType, Store

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_SECONDS = 0.5


class TokenIndex(Generic[T]):
    def __init__(self, store: Store, prefix: str, decode: Callable[[str, bytes], T]) -> None:
        self.store = store
        self.prefix = prefix
        self.decode = decode  # (key suffix, value) -> entry
        self._entries: dict[str, T] = {}
        self.ready = asyncio.Event()

    def get(self, suffix: str) -> T | None:
        return self._entries.get(suffix) if self.ready.is_set() else None

    def _put(self, key: str, value: bytes) -> None:
        suffix = key[len(self.prefix):]
        try:
            self._entries[suffix] = self.decode(suffix, value)
        except Exception:  # a record this version cannot read is no token at all
            log.warning("ignoring unreadable record %s", key)
            self._entries.pop(suffix, None)

    async def run(self) -> None:
        """Keep the index current until cancelled."""
        while True:
            try:
                page = await self.store.list(self.prefix)
                self._entries = {}
                for kv in page.items:
                    self._put(kv.key, kv.value)
                self.ready.set()
                async for ev in self.store.watch(self.prefix, from_revision=page.revision + 1):
                    if ev.type == EventType.DELETE:
                        self._entries.pop(ev.key[len(self.prefix):], None)
                    else:
                        self._put(ev.key, ev.value)
            except CorralError as e:
                log.info("token watch: %s; relisting", e)
            self.ready.clear()
            await asyncio.sleep(RETRY_SECONDS)
