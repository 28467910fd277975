"""Scorers rank feasible nodes: spread prefers the emptiest, binpack the fullest that fits."""

from __future__ import annotations

from corral.scheduler.algorithm import Selector, feasible_to_find, unschedulable_message
from corral.scheduler.framework import ContainerRequest, NodeView
from corral.scheduler.policy import build_policy
from corral.scheduler.scorers import LeastAllocated, MostAllocated, SelectorSpread
from tests.scheduler.helpers import make_container, make_node


def nodes_with_load() -> list[NodeView]:
    out = []
    for name, used in (("empty", ""), ("half", "2"), ("full", "3500m")):
        v = NodeView(name)
        v.update_from(make_node(name, cpu="4", memory="8Gi"))
        if used:
            v.add(ContainerRequest.of("x", make_container("x", cpu=used, memory="1Gi")))
        out.append(v)
    return out


def req(cpu: str = "500m", memory: str = "512Mi") -> ContainerRequest:
    return ContainerRequest.of("k", make_container("c", cpu=cpu, memory=memory))


def test_least_allocated_scores_an_empty_node_highest() -> None:
    scores = {n.name: LeastAllocated().score(req(), n) for n in nodes_with_load()}
    assert scores["empty"] > scores["half"] > scores["full"]
    assert all(0 <= s <= 100 for s in scores.values())


def test_most_allocated_scores_the_fullest_node_highest() -> None:
    scores = {n.name: MostAllocated().score(req(), n) for n in nodes_with_load()}
    assert scores["full"] > scores["half"] > scores["empty"]


def test_spread_picks_the_empty_node_and_binpack_the_fullest_that_fits() -> None:
    nodes = nodes_with_load()
    assert Selector(build_policy("spread")).select(req(), nodes).node == "empty"
    assert Selector(build_policy("binpack")).select(req(), nodes).node == "full"
    assert Selector(build_policy("binpack")).select(req(cpu="1"), nodes).node == "half"


def test_selector_spread_prefers_nodes_with_fewer_replicas_of_the_same_owner() -> None:
    n = NodeView("n")
    n.owners["d1"] = 2
    owned = ContainerRequest(key="k", owner="d1")
    assert SelectorSpread().score(owned, n) == 33
    assert SelectorSpread().score(ContainerRequest(key="k", owner="d2"), n) == 100


def test_when_nothing_fits_the_reasons_are_counted_most_frequent_first() -> None:
    nodes = []
    for name, ready in (("a", True), ("b", True), ("c", False)):
        v = NodeView(name)
        v.update_from(make_node(name, memory="1Gi", ready=ready))
        nodes.append(v)
    d = Selector(build_policy()).select(req(memory="2Gi"), nodes)
    assert d.node is None
    assert d.message == "0/3 nodes available: 2 insufficient memory, 1 not ready"
    assert unschedulable_message({}, 0) == "0/0 nodes available"


def test_at_scale_only_a_sample_of_feasible_nodes_is_scored_and_the_walk_rotates() -> None:
    assert feasible_to_find(50) == 50
    assert feasible_to_find(1000) == 100  # kube's 42 %, capped at 100 like Nomad's limit
    assert feasible_to_find(5000) == 100
    assert feasible_to_find(100_000) == 100
    assert feasible_to_find(1000, percentage=42) == 420  # an explicit percentage is not capped
    assert feasible_to_find(5000, percentage=100) == 5000
    assert feasible_to_find(5000, percentage=1, minimum=20) == 50  # tuned for throughput
    nodes = []
    for i in range(1000):
        v = NodeView(f"n{i:04}")
        v.update_from(make_node(v.name))
        nodes.append(v)
    sel = Selector(build_policy())
    first = sel.select(req(), nodes)
    second = sel.select(req(), nodes)
    assert first.seen == first.feasible == 100
    assert first.node != second.node
