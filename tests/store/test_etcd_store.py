"""EtcdStore against a real etcd: compare-and-swap writes, paging, batches, leases, errors."""

from __future__ import annotations

import asyncio

import pytest

from corral.model.errors import AlreadyExists, Conflict, NotFound, Unavailable
from corral.store.base import ANY_REVISION, Put
from corral.store.batching import BatchingStore
from corral.store.embedded import free_port
from corral.store.etcd import MAX_TXN_BYTES, MAX_TXN_OPS, EtcdStore, _chunks, grpc_target
from corral.store.keyrange import prefix_end


async def test_creating_a_key_that_exists_is_already_exists(store: EtcdStore, prefix: str) -> None:
    rev = await store.create(prefix + "a", b"one")
    with pytest.raises(AlreadyExists):
        await store.create(prefix + "a", b"two")
    kv = await store.get(prefix + "a")
    assert kv is not None
    assert (kv.value, kv.mod_revision, kv.create_revision) == (b"one", rev, rev)


async def test_an_update_with_a_stale_revision_is_a_conflict(store: EtcdStore, prefix: str) -> None:
    first = await store.create(prefix + "a", b"1")
    second = await store.update(prefix + "a", b"2", expected_revision=first)
    assert second > first
    with pytest.raises(Conflict):
        await store.update(prefix + "a", b"3", expected_revision=first)
    kv = await store.get(prefix + "a")
    assert kv is not None and kv.value == b"2" and kv.version == 2


async def test_an_update_of_a_missing_key_is_not_found(store: EtcdStore, prefix: str) -> None:
    with pytest.raises(NotFound):
        await store.update(prefix + "gone", b"x", expected_revision=7)
    with pytest.raises(NotFound):
        await store.update(prefix + "gone", b"x", expected_revision=0)
    assert await store.get(prefix + "gone") is None


async def test_a_delete_compares_the_revision_when_given_one(store: EtcdStore, prefix: str) -> None:
    first = await store.create(prefix + "a", b"1")
    current = await store.update(prefix + "a", b"2", expected_revision=first)
    with pytest.raises(Conflict):
        await store.delete(prefix + "a", expected_revision=first)
    deleted_at = await store.delete(prefix + "a", expected_revision=current)
    assert deleted_at > current
    assert await store.get(prefix + "a") is None
    with pytest.raises(NotFound):
        await store.delete(prefix + "a")
    with pytest.raises(NotFound):
        await store.delete(prefix + "a", expected_revision=current)


async def test_paging_lists_every_key_exactly_once_at_one_revision(store: EtcdStore, prefix: str) -> None:
    keys = [f"{prefix}k{i:03d}" for i in range(25)]
    await store.batch([Put(k, b"v") for k in keys])
    await store.create(prefix[:-1] + "-sibling", b"not under the prefix")
    seen: list[str] = []
    page = await store.list(prefix, limit=7)
    revision = page.revision
    await store.create(prefix + "k999-after-the-first-page", b"later")
    while True:
        seen.extend(kv.key for kv in page.items)
        if not page.more:
            break
        page = await store.list(prefix, limit=7, start_after=seen[-1], revision=revision)
        assert page.revision == revision
    assert seen == keys
    everything = await store.list(prefix)
    assert len(everything.items) == 26 and not everything.more


async def test_a_batch_with_one_stale_compare_writes_all_the_others(store: EtcdStore, prefix: str) -> None:
    revs = await store.batch([Put(f"{prefix}c{i}", b"0") for i in range(5)])
    assert all(r is not None for r in revs) and len(set(revs)) == 1  # one txn, one revision
    stale = await store.update(prefix + "c2", b"moved", expected_revision=revs[2] or 0)
    assert stale
    results = await store.batch(
        [Put(f"{prefix}c{i}", b"bound", expected_revision=revs[i] or 0) for i in range(5)]
        + [Put(prefix + "c0", b"create-of-an-existing-key")]
    )
    assert results[2] is None and results[5] is None
    assert all(results[i] is not None for i in (0, 1, 3, 4))
    assert (await store.get(prefix + "c2")).value == b"moved"  # type: ignore[union-attr]
    assert (await store.get(prefix + "c0")).value == b"bound"  # type: ignore[union-attr]


async def test_a_plain_put_writes_whether_or_not_the_key_exists_and_never_sinks_a_batch(
    store: EtcdStore, prefix: str
) -> None:
    first = await store.put(prefix + "p", b"1")
    assert (await store.get(prefix + "p")).value == b"1"  # type: ignore[union-attr]
    assert await store.put(prefix + "p", b"2") > first
    results = await store.batch([Put(prefix + "p", b"3", ANY_REVISION), Put(prefix + "p2", b"x", ANY_REVISION),
                                 Put(prefix + "q", b"stale", expected_revision=first)])  # q does not exist
    assert results[0] is not None and results[1] is not None and results[2] is None
    assert (await store.get(prefix + "p")).value == b"3"  # type: ignore[union-attr]


async def test_group_commit_puts_concurrent_writes_in_one_txn_and_answers_each_alone(
    store: EtcdStore, prefix: str
) -> None:
    batching = BatchingStore(store)  # wraps the shared store; not closed here (the fixture closes it)
    existing = await store.create(prefix + "e", b"0")
    outcomes = await asyncio.gather(
        *(batching.put(f"{prefix}beat{i}", b"now") for i in range(20)),
        batching.create(prefix + "e", b"again"),
        batching.update(prefix + "e", b"1", expected_revision=existing),
        return_exceptions=True,
    )
    beats, create, update = outcomes[:20], outcomes[20], outcomes[21]
    assert all(isinstance(r, int) for r in beats)
    assert isinstance(create, AlreadyExists) and isinstance(update, int)
    assert batching.writes == 22 and batching.batches < 22  # the 20 beats did not take a txn each
    assert len((await store.list(prefix + "beat")).items) == 20


async def test_a_lingering_put_waits_for_company_and_a_write_that_may_not_wait_ends_the_linger(
    store: EtcdStore, prefix: str
) -> None:
    batching = BatchingStore(store)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.gather(batching.put(prefix + "l1", b"1", linger=0.2), batching.put(prefix + "l2", b"2", linger=0.2))
    assert loop.time() - t0 >= 0.19 and batching.batches == 1
    t0 = loop.time()
    beat = asyncio.create_task(batching.put(prefix + "l3", b"3", linger=30))
    await asyncio.sleep(0.05)
    await batching.create(prefix + "l4", b"4")
    await beat
    assert loop.time() - t0 < 5 and batching.batches == 2  # the create took the beat along at once
    assert len((await store.list(prefix + "l")).items) == 4


async def test_a_batch_larger_than_one_txn_is_split_into_several(store: EtcdStore, prefix: str) -> None:
    puts = [Put(f"{prefix}b{i:04d}", b"x") for i in range(MAX_TXN_OPS * 2 + 10)]
    results = await store.batch(puts)
    assert all(r is not None for r in results)
    assert len(set(results)) == 3
    assert len((await store.list(prefix)).items) == len(puts)


async def test_a_lease_keeps_its_key_until_revoked(store: EtcdStore, prefix: str) -> None:
    lease = await store.grant_lease(30)
    await store.create(prefix + "held", b"x", lease=lease)
    assert 0 < await store.keep_alive(lease) <= 30
    kv = await store.get(prefix + "held")
    assert kv is not None and kv.lease == lease
    await store.revoke_lease(lease)
    assert await store.get(prefix + "held") is None
    with pytest.raises(NotFound):
        await store.keep_alive(lease)
    with pytest.raises(NotFound):
        await store.revoke_lease(lease)


async def test_an_expired_lease_deletes_its_key(store: EtcdStore, prefix: str) -> None:
    lease = await store.grant_lease(1)  # etcd rounds it up to its minimum TTL (~2s)
    await store.create(prefix + "heartbeat", b"x", lease=lease)
    for _ in range(100):
        if await store.get(prefix + "heartbeat") is None:
            break
        await asyncio.sleep(0.1)
    assert await store.get(prefix + "heartbeat") is None
    with pytest.raises(NotFound):
        await store.keep_alive(lease)


async def test_an_unreachable_etcd_is_unavailable() -> None:
    store = EtcdStore([f"http://127.0.0.1:{free_port()}"], timeout=2)
    try:
        with pytest.raises(Unavailable):
            await store.get("/x")
        with pytest.raises(Unavailable):
            await store.create("/x", b"")
    finally:
        await store.close()


async def test_a_batch_may_name_one_key_twice(store: EtcdStore, prefix: str) -> None:
    first, second = await store.batch([Put(prefix + "twice", b"1"), Put(prefix + "twice", b"2")])
    assert first is not None and second is None  # the second create finds the first one's key
    assert (await store.get(prefix + "twice")).value == b"1"  # type: ignore[union-attr]


def test_batches_are_split_by_op_count_repeated_keys_and_size() -> None:
    puts = [Put(f"k{i}", b"") for i in range(MAX_TXN_OPS + 1)]
    assert [len(c) for c in _chunks(puts)] == [MAX_TXN_OPS, 1]
    assert _chunks([Put("a", b""), Put("b", b""), Put("a", b"")]) == [[0, 1], [2]]
    big = b"x" * (MAX_TXN_BYTES // 2 - 10)
    assert _chunks([Put("a", big), Put("b", big), Put("c", big)]) == [[0, 1], [2]]


def test_a_prefix_range_ends_just_past_its_last_key() -> None:
    assert prefix_end(b"/corral/nodes/") == b"/corral/nodes0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"


def test_endpoints_become_one_grpc_target() -> None:
    assert grpc_target(["http://127.0.0.1:2379"]) == "127.0.0.1:2379"
    assert grpc_target(["localhost"]) == "localhost:2379"
    assert grpc_target(["http://10.0.0.1:2379", "http://10.0.0.2:2379"]) == "ipv4:10.0.0.1:2379,10.0.0.2:2379"
    with pytest.raises(ValueError):
        grpc_target([])


async def test_group_commit_sends_what_arrives_during_a_txn_in_the_next_one_and_answers_lost_writes_alone(
    store: EtcdStore, prefix: str
) -> None:
    batching = BatchingStore(store)
    stale = await store.create(prefix + "cas", b"0")
    await store.update(prefix + "cas", b"1", expected_revision=stale)
    first = asyncio.create_task(batching.create(prefix + "first", b"x"))  # goes at once, alone
    await asyncio.sleep(0)
    outcomes = await asyncio.gather(  # arrive while it is in flight: one txn after it
        *(batching.create(f"{prefix}w{i}", b"x") for i in range(30)),
        batching.update(prefix + "cas", b"2", expected_revision=stale),
        batching.update(prefix + "missing", b"2", expected_revision=stale),
        return_exceptions=True,
    )
    await first
    assert all(isinstance(r, int) for r in outcomes[:30]) and len(set(outcomes[:30])) == 1
    assert isinstance(outcomes[30], Conflict) and isinstance(outcomes[31], NotFound)
    assert batching.batches == 2 and batching.writes == 33
