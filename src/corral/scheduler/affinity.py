"""Affinity and spread terms, parsed once per container, and the per-decision view of the cluster they need.

``Placement.of(spec)`` turns a container's ``affinity`` and ``topologySpreadConstraints`` into plain
tuples (``ContainerRequest.placement``; None for the many containers that have neither, so the
scheduler's plain path never looks here).

Node affinity is a function of one node's labels: ``NodeTerm.matches``. Container affinity,
anti-affinity and spreading are not: they depend on *where other containers are*, counted per
topology domain (the value of the term's ``topologyKey`` label on their node). Walking every node's
containers for every node of every decision would cost O(nodes x containers); instead ``prepare``
runs once per decision, before the filters: it asks the cache (``Topology``: an index of placed
containers by label) for the containers each term selects, and turns them into per-term sets or
counts of domains (``DecisionState``). The filters and scorers then answer each node with a dict or
set lookup on its label value.

``prepare`` also applies the *other* side of anti-affinity (Kubernetes' symmetry rule): a container
already placed with a required anti-affinity term that selects the incoming one forbids the
incoming one that term's domain — so a plain container may get a ``Placement`` here. With no such
container in the cluster this costs one truth test.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from corral.model.placement import NODE_NAME_FIELD
from corral.model.resources import ContainerSpec, NodeSelectorRequirement, NodeSelectorTerm
from corral.scheduler.framework import ContainerRequest, NodeView

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Expr:
    """One ``key op values`` requirement on a node's labels."""

    key: str
    op: str
    values: frozenset[str] = frozenset()
    number: int = 0  # Gt/Lt

    @classmethod
    def of(cls, r: NodeSelectorRequirement) -> Expr:
        number = int(r.values[0]) if r.operator in ("Gt", "Lt") and r.values else 0
        return cls(r.key, r.operator, frozenset(r.values), number)

    def matches(self, labels: dict[str, str]) -> bool:
        value = labels.get(self.key)
        op = self.op
        if op == "In":
            return value is not None and value in self.values
        if op == "NotIn":
            return value is None or value not in self.values
        if op == "Exists":
            return value is not None
        if op == "DoesNotExist":
            return value is None
        try:
            n = int(value) if value is not None else None
        except ValueError:
            return False
        if n is None:
            return False
        return n > self.number if op == "Gt" else n < self.number


@dataclass(frozen=True, slots=True)
class NodeTerm:
    """Every expression holds (AND); ``names_in``/``names_not_in`` are ``matchFields`` on the node's name."""

    exprs: tuple[Expr, ...] = ()
    names_in: frozenset[str] | None = None
    names_not_in: frozenset[str] = frozenset()

    @classmethod
    def of(cls, term: NodeSelectorTerm) -> NodeTerm:
        names_in: frozenset[str] | None = None
        names_not_in: set[str] = set()
        for r in term.match_fields:
            if r.key != NODE_NAME_FIELD:
                continue
            if r.operator == "In":
                names_in = frozenset(r.values) if names_in is None else names_in & frozenset(r.values)
            elif r.operator == "NotIn":
                names_not_in.update(r.values)
        return cls(tuple(Expr.of(r) for r in term.match_expressions), names_in, frozenset(names_not_in))

    def matches(self, n: NodeView) -> bool:
        if self.names_in is not None and n.name not in self.names_in:
            return False
        if n.name in self.names_not_in:
            return False
        labels = n.labels
        return all(e.matches(labels) for e in self.exprs)


@dataclass(frozen=True, slots=True)
class LabelTerm:
    """Containers selected by ``selector`` (all pairs), counted per value of the node label ``key``."""

    selector: Labels
    key: str
    weight: int = 1
    max_skew: int = 1  # spread terms only
    hard: bool = True  # spread terms: DoNotSchedule


def selects(selector: Labels, labels: Labels) -> bool:
    return all(pair in labels for pair in selector)


@dataclass(slots=True)
class DecisionState:
    """What ``prepare`` found for one decision: per term, the domains (label values) concerned."""

    affinity: list[frozenset[str] | None] = field(default_factory=list)  # None: nothing selected, self matches
    anti: list[frozenset[str]] = field(default_factory=list)
    forbidden: list[tuple[str, frozenset[str]]] = field(default_factory=list)  # other containers' anti terms
    preferred_affinity: list[dict[str, int]] = field(default_factory=list)
    preferred_anti: list[dict[str, int]] = field(default_factory=list)
    spread: list[tuple[dict[str, int], int]] = field(default_factory=list)  # counts per domain, minimum
    #: anti and forbidden flattened for the filter's hot loop: (topology key, domains, which side)
    excluded: tuple[tuple[str, frozenset[str], bool], ...] = ()


@dataclass(slots=True)
class Placement:
    required_nodes: tuple[NodeTerm, ...] = ()  # any one (OR)
    preferred_nodes: tuple[tuple[int, NodeTerm], ...] = ()
    affinity: tuple[LabelTerm, ...] = ()
    anti_affinity: tuple[LabelTerm, ...] = ()
    preferred_affinity: tuple[LabelTerm, ...] = ()
    preferred_anti_affinity: tuple[LabelTerm, ...] = ()
    spread: tuple[LabelTerm, ...] = ()
    state: DecisionState | None = field(default=None, compare=False)  # filled per decision by prepare

    @classmethod
    def of(cls, spec: ContainerSpec) -> Placement:
        p = cls()
        a = spec.affinity
        if a is not None:
            if (na := a.node_affinity) is not None:
                p.required_nodes = tuple(NodeTerm.of(t) for t in na.required)
                p.preferred_nodes = tuple((w.weight, NodeTerm.of(w.preference)) for w in na.preferred)
            for aff, required, preferred in ((a.container_affinity, "affinity", "preferred_affinity"),
                                             (a.container_anti_affinity, "anti_affinity", "preferred_anti_affinity")):
                if aff is None:
                    continue
                setattr(p, required, tuple(
                    LabelTerm(_labels(t.label_selector.match_labels), t.topology_key) for t in aff.required))
                setattr(p, preferred, tuple(
                    LabelTerm(_labels(w.term.label_selector.match_labels), w.term.topology_key, weight=w.weight)
                    for w in aff.preferred))
        p.spread = tuple(
            LabelTerm(_labels(t.label_selector.match_labels), t.topology_key, max_skew=t.max_skew,
                      hard=t.when_unsatisfiable == "DoNotSchedule")
            for t in spec.topology_spread_constraints)
        return p

    @property
    def needs_topology(self) -> bool:
        return bool(self.affinity or self.anti_affinity or self.preferred_affinity or self.preferred_anti_affinity
                    or self.spread)


def _labels(match: dict[str, str]) -> Labels:
    return tuple(sorted(match.items()))


class Topology(Protocol):
    """What ``prepare`` reads from the scheduler's cache."""

    def nodes(self) -> Sequence[NodeView]: ...

    def node(self, name: str) -> NodeView | None: ...

    def selected(self, namespace: str, selector: Labels) -> Iterable[tuple[ContainerRequest, str]]:
        """The placed containers of ``namespace`` that ``selector`` selects, with their node."""
        ...

    def anti_affinity_holders(self, namespace: str, labels: Labels) -> Iterable[tuple[ContainerRequest, str]]:
        """Placed containers (with their node) with required anti-affinity terms that may select a
        container of ``namespace`` with ``labels`` (a superset: ``prepare`` checks each term)."""
        ...


def _domain_counts(topo: Topology, c: ContainerRequest, term: LabelTerm) -> dict[str, int]:
    counts: dict[str, int] = {}
    for other, node in topo.selected(c.namespace, term.selector):
        if other.key == c.key:
            continue
        n = topo.node(node)
        value = n.labels.get(term.key) if n is not None else None
        if value is not None:
            counts[value] = counts.get(value, 0) + 1
    return counts


def _forbidden_by_others(topo: Topology, c: ContainerRequest) -> list[tuple[str, frozenset[str]]]:
    out: dict[str, set[str]] = {}
    if not c.labels:
        return []
    # a holder whose term is one of c's own required anti-affinity terms, and whom that term
    # selects, is already in c's own excluded domains: skip it (replicas of one app, typically)
    own = {(t.selector, t.key) for t in c.placement.anti_affinity} if c.placement is not None else set()
    for holder, node in topo.anti_affinity_holders(c.namespace, c.labels):
        if holder.key == c.key or holder.namespace != c.namespace or holder.placement is None:
            continue
        if own and all((t.selector, t.key) in own and selects(t.selector, holder.labels)
                       for t in holder.placement.anti_affinity):
            continue
        n = topo.node(node)
        if n is None:
            continue
        for term in holder.placement.anti_affinity:
            value = n.labels.get(term.key)
            if value is not None and selects(term.selector, c.labels):
                out.setdefault(term.key, set()).add(value)
    return [(k, frozenset(v)) for k, v in out.items()]


def _eligible(c: ContainerRequest, p: Placement, n: NodeView) -> bool:
    """Whether ``n`` counts as a domain for spreading ``c`` (Kubernetes: nodes its node selector and
    required node affinity admit)."""
    labels = n.labels
    if any(labels.get(k) != v for k, v in c.node_selector):
        return False
    return not p.required_nodes or any(t.matches(n) for t in p.required_nodes)


def prepare(c: ContainerRequest, topo: Topology) -> ContainerRequest:
    """``c`` ready for the filters: its ``placement.state`` filled from the cache (see the docstring)."""
    forbidden = _forbidden_by_others(topo, c)
    p = c.placement
    if p is None:
        if not forbidden:
            return c
        p = Placement()
        c = dataclasses.replace(c, placement=p)
    elif not p.needs_topology and not forbidden:
        return c
    state = DecisionState(forbidden=forbidden)
    for term in p.affinity:
        counts = _domain_counts(topo, c, term)
        # Kubernetes' rule: the first of a group that selects itself may go anywhere the key exists
        state.affinity.append(None if not counts and selects(term.selector, c.labels) else frozenset(counts))
    for term in p.anti_affinity:
        state.anti.append(frozenset(_domain_counts(topo, c, term)))
    state.excluded = tuple((t.key, d, True) for t, d in zip(p.anti_affinity, state.anti, strict=True) if d) + \
        tuple((k, d, False) for k, d in forbidden)
    state.preferred_affinity = [_domain_counts(topo, c, t) for t in p.preferred_affinity]
    state.preferred_anti = [_domain_counts(topo, c, t) for t in p.preferred_anti_affinity]
    if p.spread:
        nodes = topo.nodes()
        for term in p.spread:
            counts = _domain_counts(topo, c, term)
            domains = {v for n in nodes if (v := n.labels.get(term.key)) is not None and _eligible(c, p, n)}
            for d in domains:
                counts.setdefault(d, 0)
            state.spread.append((counts, min(counts.values()) if counts else 0))
    p.state = state
    return c
