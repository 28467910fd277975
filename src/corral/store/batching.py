"""Group commit: concurrent creates and updates share etcd transactions.

Every etcd call costs the client a gRPC round trip (and here, ~0.3 ms of Python in grpc.aio); an
API under load makes many small independent writes at once. ``BatchingStore`` wraps a Store and
queues ``create``, ``update`` and ``put`` calls that arrive while earlier ones are in flight; one flush
sends all that are queued as a single ``batch`` (one txn with a compare per key), and each caller
gets its own answer — its new revision, or ``AlreadyExists``/``Conflict``/``NotFound`` for its own
key alone. With nothing in flight a write goes out at once, so a lone write waits for no one —
unless it says it may ``linger`` (heartbeats: a beat that waits 50 ms for others turns 500 beats a
second into ~20 txns); any write that may not wait ends the linger for all.

One transaction is in flight at a time (``max_inflight``): whatever arrives meanwhile waits for it
and goes in the next, so the batches grow with the load. Each etcd call and each watch message costs
the API process a fixed slice of grpc.aio's Python, and etcd sends a watcher one message per
transaction, so fewer, larger transactions are less CPU per write: with 64 concurrent creates, 1 in
flight gave batches of ~28 against ~12 with 4, and 4-11 % less API CPU per create
(benchmarks/bench_api.py, docs/benchmarks.md). A lone write still goes out at once.

Writes that share a transaction share a revision: several keys may have the same mod_revision.
Everything else is passed through to the wrapped store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from corral.model.errors import AlreadyExists, Conflict, CorralError, NotFound
from corral.store.base import ANY_REVISION, KeyValue, Page, Put, Store, WatchStream


class BatchingStore:
    def __init__(self, store: Store, *, max_batch: int = 128, max_inflight: int = 1) -> None:
        self.inner = store
        self.max_batch = max_batch
        self._queue: list[tuple[Put, asyncio.Future[int]]] = []
        self._slots = asyncio.Semaphore(max_inflight)
        self._flusher: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()  # set: the running flush may not linger
        self._inflight: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.writes = 0

    # --- batched writes -----------------------------------------------------------------------

    async def create(self, key: str, value: bytes, *, lease: int = 0) -> int:
        return await self._submit(Put(key, value, 0, lease))

    async def update(self, key: str, value: bytes, *, expected_revision: int, lease: int = 0) -> int:
        if not expected_revision:
            return await self.inner.update(key, value, expected_revision=0, lease=lease)
        return await self._submit(Put(key, value, expected_revision, lease))

    async def put(self, key: str, value: bytes, *, lease: int = 0, linger: float = 0.0) -> int:
        return await self._submit(Put(key, value, ANY_REVISION, lease), linger)

    async def _submit(self, put: Put, linger: float = 0.0) -> int:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append((put, fut))
        if self._flusher is None or self._flusher.done():
            self._hurry = asyncio.Event()
            if not linger:
                self._hurry.set()
            self._flusher = asyncio.create_task(self._flush_all(linger, self._hurry), name="store-group-commit")
        elif not linger:
            self._hurry.set()  # a write that may not wait cuts a lingering flush short
        return await fut

    async def _flush_all(self, linger: float, hurry: asyncio.Event) -> None:
        """Dispatch queued writes in batches (at most ``max_inflight`` at once); ends when the queue is
        empty. A flush started by a lingering write first waits up to ``linger`` for company."""
        if not hurry.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hurry.wait(), linger)
        while self._queue:
            await self._slots.acquire()
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            if not batch:
                self._slots.release()
                break
            task = asyncio.create_task(self._flush(batch), name="store-group-commit-batch")
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            await asyncio.sleep(0)  # let more writers queue behind this batch

    async def _flush(self, batch: list[tuple[Put, asyncio.Future[int]]]) -> None:
        try:
            results: Sequence[int | None] = await self.inner.batch([p for p, _ in batch])
        except Exception as e:  # every caller of this batch gets the store's error
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
            return
        finally:
            self._slots.release()  # the next batch goes now: telling the losers why (a read each) waits for no one
        self.batches += 1
        self.writes += len(batch)
        for (put, fut), revision in zip(batch, results, strict=True):
            if fut.done():
                continue
            if revision is not None:
                fut.set_result(revision)
            elif not put.expected_revision:
                fut.set_exception(AlreadyExists(f"{put.key} already exists"))
            else:
                try:
                    error: BaseException = await self._lost(put)
                except Exception as e:  # the read failed: the caller gets that, and the rest still their answers
                    error = e
                if not fut.done():
                    fut.set_exception(error)

    async def _lost(self, put: Put) -> CorralError:
        kv = await self.inner.get(put.key)
        if kv is None:
            return NotFound(f"{put.key} not found")
        return Conflict(f"{put.key} changed: revision {kv.mod_revision}, not {put.expected_revision}")

    # --- everything else passes through -----------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        return await self.inner.get(key)

    async def list(self, prefix: str, *, limit: int = 0, start_after: str = "", revision: int = 0) -> Page:
        return await self.inner.list(prefix, limit=limit, start_after=start_after, revision=revision)

    async def delete(self, key: str, *, expected_revision: int = 0) -> int:
        return await self.inner.delete(key, expected_revision=expected_revision)

    async def batch(self, puts: Sequence[Put]) -> Sequence[int | None]:
        return await self.inner.batch(puts)

    def watch(self, prefix: str, *, from_revision: int) -> WatchStream:
        return self.inner.watch(prefix, from_revision=from_revision)

    async def grant_lease(self, ttl: int) -> int:
        return await self.inner.grant_lease(ttl)

    async def keep_alive(self, lease: int) -> int:
        return await self.inner.keep_alive(lease)

    async def revoke_lease(self, lease: int) -> None:
        await self.inner.revoke_lease(lease)

    async def close(self) -> None:
        for task in [self._flusher, *self._inflight]:
            if task is not None and not task.done():
                task.cancel()
        await self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
