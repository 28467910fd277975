"""Expiring keys without a lease per key: one shared etcd lease per time bucket.

Events must go away on their own after a TTL. A lease per event would cost a grant per write and
leave etcd tracking one lease per event; instead ``BucketLeases`` grants one lease every
``bucket`` seconds (a tenth of the TTL by default) with a TTL of ``ttl + bucket``, and every key
written during that bucket is attached to it. A key therefore lives between ``ttl`` and
``ttl + bucket`` seconds — never less than asked for — and etcd holds about ``ttl / bucket + 1``
live leases whatever the write rate. Leases are never kept alive: expiring is their purpose.

Writers call ``on_lease(write)``: ``write(lease)`` on the lease of the moment (one grant per bucket,
shared by concurrent callers), and once more on a fresh one when etcd says that lease is gone (a
paused process can outlive its bucket's lease). ``current()`` and ``forget(lease)`` are the parts.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from corral.model.errors import NotFound
from corral.store.base import Store

T = TypeVar("T")


class BucketLeases:
    def __init__(self, store: Store, *, ttl: float, bucket: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.store = store
        self.ttl = ttl
        self.bucket = bucket if bucket is not None else max(ttl / 10, 1.0)
        self.lease_ttl = math.ceil(ttl + self.bucket)
        self.granted = 0  # how many leases this instance granted (for tests and metrics)
        self._clock = clock
        self._lease = 0
        self._until = 0.0
        self._lock = asyncio.Lock()

    async def current(self) -> int:
        """The lease to attach a key written now to; grants a new one when the bucket is over."""
        if self._lease and self._clock() < self._until:
            return self._lease
        async with self._lock:
            if self._lease and self._clock() < self._until:
                return self._lease  # another caller granted it while this one waited
            start = self._clock()
            lease = await self.store.grant_lease(self.lease_ttl)
            self.granted += 1
            self._lease, self._until = lease, start + self.bucket
            return lease

    async def on_lease(self, write: Callable[[int], Awaitable[T]]) -> T:
        """``write(lease)`` on the current lease; if etcd no longer has that lease (NotFound), once
        more on a fresh one."""
        lease = await self.current()
        try:
            return await write(lease)
        except NotFound:
            self.forget(lease)
            return await write(await self.current())

    def forget(self, lease: int) -> None:
        """``lease`` is gone from etcd: stop handing it out."""
        if self._lease == lease:
            self._lease, self._until = 0, 0.0
