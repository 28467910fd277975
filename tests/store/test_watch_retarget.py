"""A watch outlives its store moving to a new gRPC channel (``EtcdStore.retarget``: the etcd members changed).

The old channel is closed after a grace; grpc.aio then cancels the watch's call, which it reports as a
``CancelledError``. The watch must take that for a broken stream (resume from its revision on the new
channel), not for the cancellation of the task that reads it — else every watch of a control instance
ends silently when a second etcd member joins (found by tests/flow/test_chaos_ha.py).
"""

from __future__ import annotations

import asyncio
import contextlib

from corral.store.embedded import EmbeddedEtcd
from corral.store.etcd import EtcdStore


async def test_a_watch_resumes_on_the_new_channel_after_a_retarget_closes_the_old_one(
        etcd: EmbeddedEtcd, prefix: str) -> None:
    store = EtcdStore([etcd.endpoint])
    try:
        first = await store.create(prefix + "before", b"1")
        async with store.watch(prefix, from_revision=first) as watch:
            assert (await asyncio.wait_for(anext(watch), 10)).key == prefix + "before"
            assert store.retarget([etcd.endpoint, etcd.endpoint], grace=0.1)  # a new target: a new channel
            await asyncio.sleep(0.5)  # the old channel, and the watch's call on it, are closed
            await store.create(prefix + "after", b"2")
            event = await asyncio.wait_for(anext(watch), 10)
            assert event.key == prefix + "after"
            assert watch.reconnects == 1
    finally:
        await store.close()


async def test_cancelling_the_task_that_reads_a_watch_still_ends_it(etcd: EmbeddedEtcd, prefix: str) -> None:
    store = EtcdStore([etcd.endpoint])
    try:
        async with store.watch(prefix, from_revision=0) as watch:
            reader = asyncio.create_task(anext(watch))
            await asyncio.sleep(0.3)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(reader, 5)
            assert reader.cancelled()
    finally:
        await store.close()
