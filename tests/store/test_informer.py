"""The informer over the store (StoreSource) against a real etcd: list then watch into a cache, handlers,
relist after compaction, resuming across an etcd restart."""

from __future__ import annotations

import asyncio

from corral.model.errors import Unavailable
from corral.store.base import KeyValue, Put
from corral.store.embedded import EmbeddedEtcd
from corral.store.etcd import EtcdStore
from corral.store.informer import Change, Informer
from corral.store.listwatch import store_informer
from tests.store.informers import running, until


def decode(kv: KeyValue) -> str:
    return kv.value.decode()


class Recorder:
    """Handlers that record what they saw, as a reconcile queue would record keys."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def informer(self, store: EtcdStore, prefix: str) -> Informer[str, str]:
        informer = store_informer(store, prefix, decode, page_size=3)
        informer.add_handler(self.on_event)
        return informer

    def on_event(self, change: Change, key: str, obj: str, old: str | None) -> None:
        if change is Change.ADDED:
            self.calls.append(("add", key, obj))
        elif change is Change.MODIFIED:
            assert old is not None
            self.calls.append(("update", key, old, obj))
        else:
            self.calls.append(("delete", key, obj))






async def test_the_informer_lists_then_follows_every_change(store: EtcdStore, prefix: str) -> None:
    await store.batch([Put(f"{prefix}k{i}", f"v{i}".encode()) for i in range(7)])
    rec = Recorder()
    informer = rec.informer(store, prefix)
    async with running(informer):
        assert sorted(informer.items()) == [(f"{prefix}k{i}", f"v{i}") for i in range(7)]
        assert len(rec.calls) == 7 and all(c[0] == "add" for c in rec.calls)
        rec.calls.clear()
        kv = await store.get(prefix + "k1")
        assert kv is not None
        await store.update(prefix + "k1", b"v1b", expected_revision=kv.mod_revision)
        await store.delete(prefix + "k2")
        last = await store.create(prefix + "k9", b"v9")
        await until(lambda: informer.revision >= last)
        assert rec.calls == [
            ("update", prefix + "k1", "v1", "v1b"),
            ("delete", prefix + "k2", "v2"),
            ("add", prefix + "k9", "v9"),
        ]
        assert informer.get(prefix + "k1") == "v1b" and informer.get(prefix + "k2") is None
        assert len(informer) == 7


async def test_a_compacted_watch_makes_the_informer_relist_and_report_the_difference(
    private_store: EtcdStore, prefix: str
) -> None:
    store = private_store
    await store.batch([Put(f"{prefix}k{i}", b"old") for i in range(4)])
    rec = Recorder()
    informer = rec.informer(store, prefix)
    async with running(informer):
        pass
    rec.calls.clear()
    # While the informer is not watching: k0 unchanged, k1 updated, k2 deleted, k3 deleted and
    # created again, k4 new; then the history it would resume from is compacted away.
    kv1 = await store.get(prefix + "k1")
    assert kv1 is not None
    await store.update(prefix + "k1", b"new", expected_revision=kv1.mod_revision)
    await store.delete(prefix + "k2")
    await store.delete(prefix + "k3")
    await store.create(prefix + "k3", b"old")
    now = await store.create(prefix + "k4", b"new")
    await store.compact(now)

    async with running(informer):  # resumes from its revision, gets Compacted, relists
        await until(lambda: informer.relists == 1 and informer.revision >= now)
        assert sorted(rec.calls) == [
            ("add", prefix + "k3", "old"),  # a new object under an old name: delete, then add
            ("add", prefix + "k4", "new"),
            ("delete", prefix + "k2", "old"),
            ("delete", prefix + "k3", "old"),
            ("update", prefix + "k1", "old", "new"),
        ]
        k3 = [c for c in rec.calls if c[1] == prefix + "k3"]
        assert [c[0] for c in k3] == ["delete", "add"]
        assert sorted(informer.items()) == [
            (prefix + "k0", "old"),
            (prefix + "k1", "new"),
            (prefix + "k3", "old"),
            (prefix + "k4", "new"),
        ]
        rec.calls.clear()
        await store.delete(prefix + "k0")  # and it watches again afterwards
        await until(lambda: rec.calls == [("delete", prefix + "k0", "old")])


async def test_the_informer_keeps_following_across_an_etcd_restart(
    private_etcd: EmbeddedEtcd, private_store: EtcdStore, prefix: str
) -> None:
    store = private_store
    await store.create(prefix + "a", b"1")
    rec = Recorder()
    informer = rec.informer(store, prefix)
    async with running(informer):
        await private_etcd.kill()
        await private_etcd.start()
        for _ in range(300):
            try:
                await store.create(prefix + "b", b"2")
                break
            except Unavailable:
                await asyncio.sleep(0.05)
        await until(lambda: informer.get(prefix + "b") == "2", timeout=15)
        assert rec.calls == [("add", prefix + "a", "1"), ("add", prefix + "b", "2")]
        assert informer.relists == 0
