"""The watch cache's window and indexes: old events are trimmed, a resume from before them is Gone,
and the per-node indexes stay in step with the log and with what is bound where."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from corral.api.watchcache import CacheEvent, Entry, WatchCache
from corral.model.errors import Gone
from corral.model.kinds import BY_KIND
from corral.model.resources import Container, ContainerSpec, ObjectMeta
from corral.store.base import KeyValue, Page


def event(i: int, node: str) -> CacheEvent:
    c = Container(metadata=ObjectMeta(name=f"c{i}", namespace="default"), spec=ContainerSpec(image="busybox", node=node))
    return CacheEvent("ADDED", f"/k/c{i}", 100 + i, Entry(c, b"{}", 100 + i), None)


def test_the_log_is_trimmed_to_the_window_and_older_resumes_are_gone() -> None:
    store: Any = None  # never used: events are appended by hand
    cache = WatchCache(store, BY_KIND["Container"], window=8)
    for i in range(40):
        cache._append(event(i, "n1" if i % 2 else "n2"))
    assert 8 <= len(cache._log) <= 10  # at most a quarter window of slack
    newest = 100 + 39
    with pytest.raises(Gone):
        cache.start_index(100)
    index = cache.start_index(newest - 3)
    events, end = cache.events_from(index)
    assert [e.revision for e in events] == [newest - 2, newest - 1, newest] and end == cache.end
    mine, _ = cache.node_events_from("n1", cache.start_index(newest - 6))
    assert [e.revision for e in mine] == [r for r in range(newest - 5, newest + 1) if (r - 100) % 2]
    with pytest.raises(Gone):
        cache.events_from(0)  # a cursor from before the trim


class _Listing:
    """A store whose only answer is ``list``: the pages ``_relist`` reads (cache logic, no I/O)."""

    def __init__(self) -> None:
        self.items: list[KeyValue] = []
        self.revision = 0

    def put(self, name: str, node: str) -> None:
        self.revision += 1
        c = Container(metadata=ObjectMeta(name=name, namespace="default"), spec=ContainerSpec(image="busybox", node=node))
        self.items = [kv for kv in self.items if kv.key != f"/k/{name}"]
        self.items.append(KeyValue(f"/k/{name}", msgspec.json.encode(c), self.revision, self.revision))

    def drop(self, name: str) -> None:
        self.revision += 1
        self.items = [kv for kv in self.items if kv.key != f"/k/{name}"]

    async def list(self, prefix: str, **_: Any) -> Page:
        return Page(items=list(self.items), revision=self.revision)


async def test_a_relist_keeps_the_per_node_index_equal_to_what_is_bound_where() -> None:
    store = _Listing()
    cache = WatchCache(store, BY_KIND["Container"])  # type: ignore[arg-type]
    store.put("a", "n1")
    store.put("b", "n2")
    await cache._relist()
    cache.ready.set()
    assert [e.obj.metadata.name for e in cache.matching(node="n1")] == ["a"]
    store.put("a", "n2")  # moved
    store.drop("b")  # gone
    store.put("c", "n1")  # new
    await cache._relist()  # as after a compaction: the difference goes to the log as events
    assert [e.obj.metadata.name for e in cache.matching(node="n1")] == ["c"]
    assert [e.obj.metadata.name for e in cache.matching(node="n2")] == ["a"]
    assert sorted(e.type for e in cache._log) == ["ADDED", "DELETED", "MODIFIED"]
