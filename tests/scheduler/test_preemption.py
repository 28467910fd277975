"""Preemption's choice of node and victims, as pure logic over node views."""

from __future__ import annotations

from corral.scheduler.framework import ContainerRequest, NodeView
from corral.scheduler.policy import build_policy
from corral.scheduler.preemption import Candidate, plan_preemption
from tests.scheduler.helpers import make_container, make_node


def node(name: str, cpu: str = "4") -> NodeView:
    v = NodeView(name)
    v.update_from(make_node(name, cpu=cpu))
    return v


def req(name: str, cpu: str, priority: int) -> ContainerRequest:
    c = make_container(name, cpu=cpu)
    c.spec.priority = priority
    return ContainerRequest.of(f"/corral/containers/default/{name}", c)


def setup(nodes: list[NodeView], placed: dict[str, list[ContainerRequest]], *, terminating: set[str] = frozenset()
          ) -> dict[str, list[Candidate]]:
    by_name = {n.name: n for n in nodes}
    out: dict[str, list[Candidate]] = {}
    for name, rs in placed.items():
        for r in rs:
            by_name[name].add(r)
            out.setdefault(name, []).append(Candidate(r, r.key.rsplit("/", 1)[-1] in terminating))
    return out


def reasons(c: ContainerRequest, nodes: list[NodeView]) -> dict[str, str | None]:
    policy = build_policy()
    return {n.name: next((r for f in policy.filters if f.applies(c) and (r := f.filter(c, n))), None) for n in nodes}


def test_the_fewest_lower_priority_containers_are_evicted_on_one_node() -> None:
    n1, n2 = node("n1"), node("n2")
    placed = setup([n1, n2], {"n1": [req("a", "1500m", 0), req("b", "1500m", 0)],
                              "n2": [req("c", "1", 0), req("d", "1", 0), req("e", "1", 0), req("f", "1", 0)]})
    high = req("high", "2", 1000)
    p = plan_preemption(build_policy(), high, [n1, n2], placed, reasons(high, [n1, n2]))
    assert p is not None and p.node == "n1" and len(p.victims) == 1
    assert n1.cpu == 3000  # the views themselves are untouched


def test_containers_of_equal_or_higher_priority_are_never_victims() -> None:
    n1 = node("n1")
    placed = setup([n1], {"n1": [req("a", "2", 1000), req("b", "2", 5000)]})
    high = req("high", "2", 1000)
    assert plan_preemption(build_policy(), high, [n1], placed, reasons(high, [n1])) is None


def test_the_lowest_priority_victim_goes_first_and_a_terminating_one_means_wait() -> None:
    n1 = node("n1")
    placed = setup([n1], {"n1": [req("low", "2", 1), req("mid", "2", 500)]})
    high = req("high", "2", 1000)
    p = plan_preemption(build_policy(), high, [n1], placed, reasons(high, [n1]))
    assert p is not None and [v.key.rsplit("/", 1)[-1] for v in p.victims] == ["low"]
    n1 = node("n1")
    placed = setup([n1], {"n1": [req("low", "2", 1), req("mid", "2", 500)]}, terminating={"low"})
    p = plan_preemption(build_policy(), high, [n1], placed, reasons(high, [n1]))
    assert p is not None and p.victims == ()


def test_a_node_rejected_for_something_eviction_cannot_fix_is_not_a_candidate() -> None:
    n1 = node("n1")
    n1.ready = False
    n1.plain = False
    placed = setup([n1], {"n1": [req("low", "4", 0)]})
    high = req("high", "2", 1000)
    assert plan_preemption(build_policy(), high, [n1], placed, reasons(high, [n1])) is None
