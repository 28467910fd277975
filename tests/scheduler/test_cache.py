"""The cache keeps per-node sums of bound and assumed containers, updated in O(1) per event."""

from __future__ import annotations

from corral.scheduler.cache import SchedulerCache
from corral.scheduler.framework import ContainerRequest
from tests.scheduler.helpers import key_of, make_container, make_node


def cache_with_nodes(*names: str) -> tuple[SchedulerCache, list[str]]:
    changes: list[str] = []
    cache = SchedulerCache(on_change=lambda: changes.append("x"))
    for name in names:
        cache.set_node(make_node(name))
    return cache, changes


def test_a_bound_container_counts_on_its_node_until_it_finishes() -> None:
    cache, changes = cache_with_nodes("n1")
    c = make_container("c", cpu="1", memory="1Gi", node="n1", host_port=80)
    cache.set_container(key_of(c), c)
    n = cache.node("n1")
    assert n is not None
    assert (n.cpu, n.memory, n.count, set(n.ports)) == (1000, 2**30, 1, {("tcp", 80)})
    before = len(changes)
    c.status.phase = "Succeeded"
    cache.set_container(key_of(c), c)
    assert (n.cpu, n.memory, n.count, n.ports) == (0, 0, 0, {})
    assert len(changes) == before + 1  # capacity freed: parked containers retry


def test_an_assumed_placement_counts_and_is_confirmed_by_the_watch() -> None:
    cache, _ = cache_with_nodes("n1")
    c = make_container("c", cpu="500m")
    key = key_of(c)
    cache.assume(ContainerRequest.of(key, c), "n1")
    n = cache.node("n1")
    assert n is not None and n.cpu == 500 and cache.is_assumed(key)
    cache.set_container(key, c)  # an older, unbound version arrives: still assumed
    assert n.cpu == 500 and cache.is_assumed(key)
    c.spec.node = "n1"
    cache.set_container(key, c)  # the binding shows up
    assert n.cpu == 500 and not cache.is_assumed(key)


def test_forgetting_a_lost_binding_releases_its_resources() -> None:
    cache, _ = cache_with_nodes("n1")
    c = make_container("c", cpu="500m")
    cache.assume(ContainerRequest.of(key_of(c), c), "n1")
    cache.forget(key_of(c))
    n = cache.node("n1")
    assert n is not None and (n.cpu, n.count) == (0, 0)
    assert cache.placement(key_of(c)) is None


def test_a_deleted_container_releases_and_a_moved_one_is_counted_once() -> None:
    cache, _ = cache_with_nodes("n1", "n2")
    c = make_container("c", memory="1Gi", node="n1")
    cache.set_container(key_of(c), c)
    c.spec.node = "n2"
    cache.set_container(key_of(c), c)
    n1, n2 = cache.node("n1"), cache.node("n2")
    assert n1 is not None and n2 is not None
    assert (n1.memory, n2.memory) == (0, 2**30)
    cache.delete_container(key_of(c))
    assert n2.memory == 0 and n2.count == 0


def test_a_container_pinned_to_an_unknown_node_is_counted_when_the_node_appears() -> None:
    cache, _ = cache_with_nodes()
    c = make_container("c", cpu="2", node="later")
    cache.set_container(key_of(c), c)
    assert cache.nodes() == [] and cache.node("later") is None
    cache.set_node(make_node("later"))
    n = cache.node("later")
    assert n is not None and n.cpu == 2000 and cache.nodes() == [n]


def test_heartbeats_do_not_count_as_changes_but_new_capacity_does() -> None:
    cache, changes = cache_with_nodes("n1")
    before = len(changes)
    node = make_node("n1")
    node.status.last_heartbeat = "2024-01-01T00:00:00Z"
    cache.set_node(node)
    assert len(changes) == before
    cache.set_node(make_node("n1", memory="16Gi"))
    assert len(changes) == before + 1


def test_a_deleted_node_is_no_longer_offered() -> None:
    cache, _ = cache_with_nodes("n1", "n2")
    cache.delete_node("n1")
    assert [n.name for n in cache.nodes()] == ["n2"]
