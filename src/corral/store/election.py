"""Leader election on an etcd lease: one control instance runs the scheduler and the controllers.

A candidate grants a lease (``ttl`` seconds) and tries to create ``/corral/_leader/<name>`` bound to
it — a create that succeeds only if the key is absent. The winner keeps the lease alive every
``ttl / 3`` seconds and runs the leader's work; the others watch the key and try again the moment
it is deleted (or expires with a dead leader's lease). A leader that cannot refresh its lease in
time stops its work before the lease can expire, so two leaders never act at once for longer than
the clock skew between them. Killing the leader with -9 hands over within ``ttl``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from corral.model.errors import AlreadyExists, CorralError, NotFound
from corral.store.base import EventType, Store

log = logging.getLogger(__name__)

PREFIX = "/corral/_leader/"


class Election:
    def __init__(self, store: Store, name: str, *, identity: str, ttl: int = 5) -> None:
        self.store = store
        self.key = PREFIX + name
        self.identity = identity
        self.ttl = ttl

    async def leader(self) -> str:
        kv = await self.store.get(self.key)
        return kv.value.decode() if kv is not None else ""

    async def _acquire(self) -> int:
        """Block until this candidate holds the key; its lease id."""
        delay = 0.2
        while True:
            try:
                lease = await self.store.grant_lease(self.ttl)
                try:
                    await self.store.create(self.key, self.identity.encode(), lease=lease)
                    return lease
                except AlreadyExists:
                    await self.store.revoke_lease(lease)
                kv = await self.store.get(self.key)
                if kv is None:
                    continue
                watch = self.store.watch(self.key, from_revision=kv.mod_revision + 1)
                try:
                    async for ev in watch:
                        if ev.type is EventType.DELETE:
                            break
                finally:
                    with contextlib.suppress(Exception):
                        await watch.aclose()
                delay = 0.2
            except CorralError as e:
                log.warning("election %s: %s; retrying in %.1fs", self.key, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _keep(self, lease: int) -> None:
        """Refresh the lease; returns when it can no longer be refreshed in time."""
        loop = asyncio.get_running_loop()
        refreshed = loop.time()
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                ttl = await asyncio.wait_for(self.store.keep_alive(lease), self.ttl / 3)
                if ttl <= 0:
                    return
                refreshed = loop.time()
            except (CorralError, TimeoutError) as e:
                if isinstance(e, NotFound) or loop.time() - refreshed > self.ttl * 2 / 3:
                    log.warning("election %s: lost the lease (%s)", self.key, e)
                    return

    async def run(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Campaign forever; run ``work`` while leader, cancel it when leadership is lost."""
        while True:
            lease = await self._acquire()
            log.info("election %s: %s is the leader", self.key, self.identity)
            worker = asyncio.create_task(work(), name=f"leader-{self.key}")
            keeper = asyncio.create_task(self._keep(lease), name=f"lease-{self.key}")
            try:
                done, _ = await asyncio.wait({worker, keeper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (worker, keeper):
                    t.cancel()
                for t in (worker, keeper):
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await t
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.store.revoke_lease(lease), 2)
            if worker in done and worker.exception() is not None:
                log.error("leader work of %s failed: %r; campaigning again", self.key, worker.exception())
                await asyncio.sleep(1.0)
