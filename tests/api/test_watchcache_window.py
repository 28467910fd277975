"""The watch cache's window: old events are trimmed, a resume from before them is Gone, and the
per-node index stays in step with the log."""

from __future__ import annotations

from typing import Any

import pytest

from corral.api.watchcache import CacheEvent, Entry, WatchCache
from corral.model.errors import Gone
from corral.model.kinds import BY_KIND
from corral.model.resources import Container, ContainerSpec, ObjectMeta


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
