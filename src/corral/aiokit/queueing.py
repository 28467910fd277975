"""A deduplicating work queue of keys with per-key exponential backoff.

The reconcile shape: event handlers ``add(key)``; workers ``get()`` a key, reconcile it, then
``done(key)``. A key is never handed to two workers at once; a key added while it is being worked
on is queued again when the worker is done (so no change is lost), and a key added many times
while waiting is worked once. ``retry(key)`` puts the key back after its backoff (doubling per
failure up to a cap), ``forget(key)`` resets the backoff after a success.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

from corral.aiokit.backoff import exponential

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, *, base_delay: float = 0.1, max_delay: float = 30.0) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._ready: OrderedDict[K, None] = OrderedDict()
        self._active: set[K] = set()
        self._dirty: set[K] = set()
        self._failures: dict[K, int] = {}
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._wakeup = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._ready)

    def add(self, key: K) -> None:
        if self._closed:
            return
        if key in self._active:
            self._dirty.add(key)
            return
        if key not in self._ready:
            self._ready[key] = None
            self._wakeup.set()

    def add_after(self, key: K, delay: float) -> None:
        if self._closed:
            return
        timer = self._timers.get(key)
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        if timer is not None:
            if timer.when() <= when:
                return
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def retry(self, key: K, *, delay: float | None = None) -> float:
        """Requeue ``key`` after its backoff (or ``delay``); the delay used."""
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        wait = delay if delay is not None else exponential(n, initial=self.base_delay, maximum=self.max_delay)
        self.add_after(key, wait)
        return wait

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    async def get(self) -> K:
        while not self._ready:
            if self._closed:
                raise asyncio.CancelledError
            self._wakeup.clear()
            await self._wakeup.wait()
        key, _ = self._ready.popitem(last=False)
        self._active.add(key)
        return key

    def done(self, key: K) -> None:
        self._active.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def close(self) -> None:
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._wakeup.set()
