"""Node affinity, container (anti-)affinity and topology spread: pure filters and scorers over a cache."""

from __future__ import annotations

from corral.model.resources import (
    Affinity,
    Container,
    ContainerAffinity,
    ContainerAffinityTerm,
    LabelSelector,
    NodeAffinity,
    NodeSelectorRequirement,
    NodeSelectorTerm,
    PreferredSchedulingTerm,
    TopologySpreadConstraint,
    WeightedContainerAffinityTerm,
)
from corral.scheduler import placement
from corral.scheduler.affinity import prepare
from corral.scheduler.algorithm import Selector
from corral.scheduler.cache import SchedulerCache
from corral.scheduler.framework import (
    CONTAINER_AFFINITY,
    CONTAINER_ANTI_AFFINITY,
    EXISTING_ANTI_AFFINITY,
    NODE_AFFINITY,
    TOPOLOGY_KEY_MISSING,
    TOPOLOGY_SPREAD,
    ContainerRequest,
    NodeView,
)
from corral.scheduler.policy import build_policy
from tests.scheduler.helpers import make_container, make_node

HOST = "corral.io/hostname"
ZONE = "topology.corral.io/zone"


def cluster(*zones: str) -> SchedulerCache:
    """Nodes n0..nK, node i in zone ``zones[i]``."""
    cache = SchedulerCache()
    for i, z in enumerate(zones):
        cache.set_node(make_node(f"n{i}", labels={HOST: f"n{i}", ZONE: z, "cores": str(4 * (i + 1))}))
    return cache


def ctr(name: str, *, labels: dict[str, str] | None = None, affinity: Affinity | None = None,
        spread: list[TopologySpreadConstraint] | None = None, node: str = "") -> Container:
    c = make_container(name, node=node)
    c.metadata.labels = labels or {}
    c.spec.affinity = affinity
    c.spec.topology_spread_constraints = spread or []
    return c


def place(cache: SchedulerCache, c: Container, node: str) -> None:
    c.spec.node = node
    c.status.phase = "Running"
    cache.set_container(f"k/{c.metadata.name}", c)


def ready(cache: SchedulerCache, c: Container) -> ContainerRequest:
    return prepare(ContainerRequest.of(f"k/{c.metadata.name}", c), cache)


def node(cache: SchedulerCache, name: str) -> NodeView:
    n = cache.node(name)
    assert n is not None
    return n


def expr(key: str, op: str, *values: str) -> NodeSelectorRequirement:
    return NodeSelectorRequirement(key=key, operator=op, values=list(values))  # type: ignore[arg-type]


def node_affinity(*terms: list[NodeSelectorRequirement], preferred: list[PreferredSchedulingTerm] | None = None
                  ) -> Affinity:
    return Affinity(node_affinity=NodeAffinity(required=[NodeSelectorTerm(match_expressions=t) for t in terms],
                                               preferred=preferred or []))


def anti(app: str, key: str = HOST) -> Affinity:
    term = ContainerAffinityTerm(label_selector=LabelSelector(match_labels={"app": app}), topology_key=key)
    return Affinity(container_anti_affinity=ContainerAffinity(required=[term]))


# --- node affinity ------------------------------------------------------------------------------


def test_node_affinity_operators_each_judge_the_nodes_labels() -> None:
    cache = cluster("a", "b", "c")
    f = placement.NodeAffinity()
    cases = {
        "In": ([expr(ZONE, "In", "a", "b")], {"n0", "n1"}),
        "NotIn": ([expr(ZONE, "NotIn", "a")], {"n1", "n2"}),
        "Exists": ([expr("cores", "Exists")], {"n0", "n1", "n2"}),
        "DoesNotExist": ([expr("gpu", "DoesNotExist")], {"n0", "n1", "n2"}),
        "Gt": ([expr("cores", "Gt", "4")], {"n1", "n2"}),
        "Lt": ([expr("cores", "Lt", "12")], {"n0", "n1"}),
        "AND within a term": ([expr(ZONE, "In", "a", "c"), expr("cores", "Gt", "4")], {"n2"}),
    }
    for what, (term, want) in cases.items():
        req = ready(cache, ctr("x", affinity=node_affinity(term)))
        got = {n.name for n in cache.nodes() if f.filter(req, n) is None}
        assert got == want, what
    rejected = ready(cache, ctr("x", affinity=node_affinity([expr(ZONE, "In", "z")])))
    assert f.filter(rejected, node(cache, "n0")) == NODE_AFFINITY


def test_node_affinity_terms_are_alternatives_and_match_fields_name_the_node() -> None:
    cache = cluster("a", "b", "c")
    f = placement.NodeAffinity()
    req = ready(cache, ctr("x", affinity=node_affinity([expr(ZONE, "In", "a")], [expr(ZONE, "In", "c")])))
    assert {n.name for n in cache.nodes() if f.filter(req, n) is None} == {"n0", "n2"}
    pinned = ctr("y", affinity=Affinity(node_affinity=NodeAffinity(required=[
        NodeSelectorTerm(match_fields=[expr("metadata.name", "In", "n1")])])))
    r = ready(cache, pinned)
    assert {n.name for n in cache.nodes() if f.filter(r, n) is None} == {"n1"}


def test_a_container_without_node_affinity_skips_the_filter() -> None:
    cache = cluster("a")
    assert not placement.NodeAffinity().applies(ready(cache, ctr("x")))
    assert ready(cache, ctr("x")).placement is None


def test_preferred_node_affinity_scores_the_weight_that_holds() -> None:
    cache = cluster("a", "b")
    pref = [PreferredSchedulingTerm(weight=80, preference=NodeSelectorTerm(match_expressions=[expr(ZONE, "In", "b")])),
            PreferredSchedulingTerm(weight=20, preference=NodeSelectorTerm(match_expressions=[expr("cores", "Gt", "1")]))]
    req = ready(cache, ctr("x", affinity=Affinity(node_affinity=NodeAffinity(preferred=pref))))
    s = placement.PreferredNodeAffinity()
    assert s.score(req, node(cache, "n0")) == 20
    assert s.score(req, node(cache, "n1")) == 100
    assert Selector(build_policy()).select(req, cache.nodes()).node == "n1"


# --- container affinity and anti-affinity -----------------------------------------------------------


def test_anti_affinity_rejects_nodes_that_hold_a_selected_container() -> None:
    cache = cluster("a", "a", "b")
    place(cache, ctr("web-1", labels={"app": "web"}), "n0")
    req = ready(cache, ctr("web-2", labels={"app": "web"}, affinity=anti("web")))
    f = placement.ContainerAntiAffinity()
    assert f.filter(req, node(cache, "n0")) == CONTAINER_ANTI_AFFINITY
    assert f.filter(req, node(cache, "n1")) is None
    by_zone = ready(cache, ctr("web-3", labels={"app": "web"}, affinity=anti("web", ZONE)))
    assert f.filter(by_zone, node(cache, "n1")) == CONTAINER_ANTI_AFFINITY  # same zone as n0
    assert f.filter(by_zone, node(cache, "n2")) is None


def test_anti_affinity_only_counts_the_same_namespace_and_every_selector_label() -> None:
    cache = cluster("a")
    other_ns = make_container("web-1", namespace="other")
    other_ns.metadata.labels = {"app": "web"}
    other_ns.spec.node, other_ns.status.phase = "n0", "Running"
    cache.set_container("other/web-1", other_ns)
    place(cache, ctr("db", labels={"app": "db"}), "n0")
    req = ready(cache, ctr("web-2", labels={"app": "web"}, affinity=anti("web")))
    assert placement.ContainerAntiAffinity().filter(req, node(cache, "n0")) is None


def test_an_existing_containers_anti_affinity_keeps_a_plain_container_away() -> None:
    cache = cluster("a", "b")
    place(cache, ctr("loner", labels={"app": "loner"}, affinity=anti("noisy")), "n0")
    req = ready(cache, ctr("noisy-1", labels={"app": "noisy"}))
    assert req.placement is not None  # given one by the symmetry rule
    f = placement.ContainerAntiAffinity()
    assert f.applies(req)
    assert f.filter(req, node(cache, "n0")) == EXISTING_ANTI_AFFINITY
    assert f.filter(req, node(cache, "n1")) is None
    assert ready(cache, ctr("quiet", labels={"app": "quiet"})).placement is None


def test_affinity_requires_a_selected_container_in_the_domain_except_for_the_first_of_a_group() -> None:
    cache = cluster("a", "a", "b")
    aff = Affinity(container_affinity=ContainerAffinity(required=[
        ContainerAffinityTerm(label_selector=LabelSelector(match_labels={"app": "cache"}), topology_key=ZONE)]))
    first = ready(cache, ctr("cache-1", labels={"app": "cache"}, affinity=aff))
    f = placement.ContainerAffinity()
    assert all(f.filter(first, n) is None for n in cache.nodes())
    lonely = ready(cache, ctr("web", labels={"app": "web"}, affinity=aff))
    assert all(f.filter(lonely, n) == CONTAINER_AFFINITY for n in cache.nodes())
    place(cache, ctr("cache-1", labels={"app": "cache"}), "n1")
    web = ready(cache, ctr("web", labels={"app": "web"}, affinity=aff))
    assert [f.filter(web, node(cache, n)) for n in ("n0", "n1", "n2")] == [None, None, CONTAINER_AFFINITY]


def test_preferred_anti_affinity_scores_nodes_without_a_selected_container_higher() -> None:
    cache = cluster("a", "b")
    place(cache, ctr("web-1", labels={"app": "web"}), "n0")
    soft = Affinity(container_anti_affinity=ContainerAffinity(preferred=[WeightedContainerAffinityTerm(
        weight=50, term=ContainerAffinityTerm(label_selector=LabelSelector(match_labels={"app": "web"}),
                                              topology_key=HOST))]))
    req = ready(cache, ctr("web-2", labels={"app": "web"}, affinity=soft))
    s = placement.PreferredContainerAffinity()
    assert s.score(req, node(cache, "n0")) == 0
    assert s.score(req, node(cache, "n1")) == 100


# --- topology spread -------------------------------------------------------------------------------


def spread(skew: int = 1, key: str = ZONE, hard: bool = True) -> list[TopologySpreadConstraint]:
    return [TopologySpreadConstraint(max_skew=skew, topology_key=key, label_selector=LabelSelector(
        match_labels={"app": "web"}), when_unsatisfiable="DoNotSchedule" if hard else "ScheduleAnyway")]


def test_spread_rejects_a_domain_that_would_exceed_max_skew() -> None:
    cache = cluster("a", "b", "c")
    place(cache, ctr("w1", labels={"app": "web"}), "n0")
    place(cache, ctr("w2", labels={"app": "web"}), "n1")
    req = ready(cache, ctr("w3", labels={"app": "web"}, spread=spread()))
    f = placement.TopologySpread()
    assert [f.filter(req, node(cache, n)) for n in ("n0", "n1", "n2")] == [TOPOLOGY_SPREAD, TOPOLOGY_SPREAD, None]
    loose = ready(cache, ctr("w3", labels={"app": "web"}, spread=spread(skew=2)))
    assert all(f.filter(loose, n) is None for n in cache.nodes())


def test_spread_rejects_a_node_without_the_key_and_schedule_anyway_only_scores() -> None:
    cache = cluster("a")
    cache.set_node(make_node("bare"))
    req = ready(cache, ctr("w", labels={"app": "web"}, spread=spread()))
    assert placement.TopologySpread().filter(req, node(cache, "bare")) == TOPOLOGY_KEY_MISSING
    soft = ready(cache, ctr("w", labels={"app": "web"}, spread=spread(hard=False)))
    assert not placement.TopologySpread().applies(soft)
    place(cache, ctr("w1", labels={"app": "web"}), "n0")
    cache.set_node(make_node("n9", labels={ZONE: "z"}))
    soft = ready(cache, ctr("w", labels={"app": "web"}, spread=spread(hard=False)))
    s = placement.SpreadScore()
    assert s.score(soft, node(cache, "n9")) > s.score(soft, node(cache, "n0"))


def test_three_replicas_with_anti_affinity_take_three_nodes_and_a_fourth_fits_nowhere() -> None:
    cache = cluster("a", "b", "c")
    sel = Selector(build_policy())
    placed = []
    for i in range(4):
        c = ctr(f"web-{i}", labels={"app": "web"}, affinity=anti("web"))
        d = sel.select(ready(cache, c), cache.nodes())
        if d.node is None:
            assert i == 3
            assert d.message == f"0/3 nodes available: 3 {CONTAINER_ANTI_AFFINITY}"
            break
        place(cache, c, d.node)
        placed.append(d.node)
    assert sorted(placed) == ["n0", "n1", "n2"]
