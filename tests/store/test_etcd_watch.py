"""EtcdWatch against a real etcd: order, deleted values, resume across restarts, compaction, closing."""

from __future__ import annotations

import asyncio
import gc
import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
import pytest

from corral.model.errors import Unavailable
from corral.store.base import Compacted, EventType, WatchEvent
from corral.store.embedded import EmbeddedEtcd
from corral.store.etcd import EtcdStore
from corral.store.etcd_watch import EtcdWatch

T = TypeVar("T")


async def take(watch: EtcdWatch, n: int, *, timeout: float = 10.0) -> list[WatchEvent]:
    return [await asyncio.wait_for(anext(watch), timeout) for _ in range(n)]


async def until_up(op: Callable[[], Awaitable[T]], *, timeout: float = 15.0) -> T:
    """Retry ``op`` while etcd is still coming back."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await op()
        except Unavailable:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def watchers(etcd: EmbeddedEtcd) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{etcd.endpoint}/metrics") as r:
        text = await r.text()
    m = re.search(r"^etcd_debugging_mvcc_watcher_total (\d+)", text, re.M)
    assert m, "etcd no longer exports etcd_debugging_mvcc_watcher_total"
    return int(m.group(1))


async def settled_watchers(etcd: EmbeddedEtcd) -> int:
    """The watcher count once it holds still for half a second (an earlier test's closed watches
    leave etcd's count a moment after their streams end)."""
    last = await watchers(etcd)
    for _ in range(40):
        await asyncio.sleep(0.5)
        if (now := await watchers(etcd)) == last:
            return now
        last = now
    return last


async def watchers_become(etcd: EmbeddedEtcd, n: int) -> int:
    for _ in range(100):
        if (now := await watchers(etcd)) == n:
            return now
        await asyncio.sleep(0.05)
    return await watchers(etcd)


async def test_a_watch_sees_create_update_and_delete_in_order(store: EtcdStore, prefix: str) -> None:
    start = await store.create(prefix + "a", b"1")
    updated = await store.update(prefix + "a", b"2", expected_revision=start)
    await store.create(prefix[:-1] + "-outside", b"not watched")
    deleted = await store.delete(prefix + "a")
    async with store.watch(prefix, from_revision=start) as watch:
        events = await take(watch, 3)
    assert [(e.type, e.key, e.value, e.revision) for e in events] == [
        (EventType.PUT, prefix + "a", b"1", start),
        (EventType.PUT, prefix + "a", b"2", updated),
        (EventType.DELETE, prefix + "a", b"2", deleted),  # a DELETE carries the last value
    ]
    assert events[2].create_revision == start
    assert watch.revision == deleted


async def test_a_watch_resumes_across_an_etcd_restart_without_losing_or_repeating_events(
    private_etcd: EmbeddedEtcd, private_store: EtcdStore, prefix: str
) -> None:
    store = private_store
    first = await store.create(prefix + "before-0", b"x")
    for i in range(1, 5):
        await store.create(f"{prefix}before-{i}", b"x")
    watch = store.watch(prefix, from_revision=first)
    try:
        got = await take(watch, 2)  # three more are buffered or still in etcd
        await private_etcd.kill()
        await private_etcd.start()
        for i in range(5):
            await until_up(lambda i=i: store.create(f"{prefix}after-{i}", b"y"))  # type: ignore[misc]
        got += await take(watch, 8, timeout=15)
        assert [e.key.removeprefix(prefix) for e in got] == [f"before-{i}" for i in range(5)] + [
            f"after-{i}" for i in range(5)
        ]
        assert watch.reconnects >= 1
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(watch), 0.5)  # and nothing is repeated
    finally:
        await watch.aclose()


async def test_a_watch_from_a_compacted_revision_raises_compacted(private_store: EtcdStore, prefix: str) -> None:
    old = await private_store.create(prefix + "a", b"1")
    now = await private_store.update(prefix + "a", b"2", expected_revision=old)
    await private_store.compact(now)
    watch = private_store.watch(prefix, from_revision=old)
    with pytest.raises(Compacted) as caught:
        await take(watch, 1)
    assert caught.value.compact_revision == now
    with pytest.raises(StopAsyncIteration):
        await anext(watch)


async def test_leaving_a_watch_closes_it_in_etcd(
    private_etcd: EmbeddedEtcd, private_store: EtcdStore, prefix: str
) -> None:
    before = await settled_watchers(private_etcd)
    rev = await private_store.create(prefix + "a", b"1")

    async for _ in private_store.watch(prefix, from_revision=rev):
        assert await watchers_become(private_etcd, before + 1) == before + 1
        break
    gc.collect()
    assert await watchers_become(private_etcd, before) == before

    async def consume() -> None:
        async for _ in private_store.watch(prefix, from_revision=rev + 1):
            pass

    task = asyncio.create_task(consume())
    assert await watchers_become(private_etcd, before + 1) == before + 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await watchers_become(private_etcd, before) == before

    watch = private_store.watch(prefix, from_revision=rev)
    await take(watch, 1)
    await watch.aclose()
    assert await watchers_become(private_etcd, before) == before
    with pytest.raises(StopAsyncIteration):
        await anext(watch)
