"""Filters and scorers for node affinity, container affinity and anti-affinity, and topology spread.

Each is one idea with its reason constant (``framework``), in the shape of ``filters``/``scorers``:
``applies`` is False unless the container has the terms (``ContainerRequest.placement``), so a plain
container never pays for them, and none passes plain nodes blindly (they judge labels, which plain
nodes have too). The per-node work is a few dict/set lookups: what depends on other containers was
counted per topology domain once per decision by ``affinity.prepare`` (``placement.state``).

- ``NodeAffinity``: one of the required node terms holds (``In/NotIn/Exists/DoesNotExist/Gt/Lt``,
  ``matchFields`` on ``metadata.name``). ``PreferredNodeAffinity`` scores the weights of the
  preferred terms that hold.
- ``ContainerAffinity``: for every required term, the node's domain already has a selected
  container (or none exists anywhere and the container selects itself: the first of a group).
- ``ContainerAntiAffinity``: for every required term, no selected container in the node's domain;
  and no container there whose own anti-affinity selects this one.
- ``TopologySpread``: for every DoNotSchedule constraint, placing here keeps
  ``count(domain) + 1 - min(count) <= maxSkew``; a node without the key is out.
  ``SpreadScore`` prefers emptier domains for ScheduleAnyway constraints.
- ``PreferredContainerAffinity`` scores the weight of the preferred terms a node satisfies
  (affinity: a selected container in its domain; anti-affinity: none).
"""

from __future__ import annotations

from corral.scheduler.affinity import DecisionState, Placement, selects
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

MAX_SCORE = 100


def _state(c: ContainerRequest) -> tuple[Placement, DecisionState]:
    p = c.placement
    assert p is not None and p.state is not None, "affinity.prepare must run before the placement filters"
    return p, p.state


class NodeAffinity:
    """One of the required node affinity terms holds for the node."""

    name = "NodeAffinity"
    passes_plain_nodes = False
    reason = NODE_AFFINITY

    def applies(self, c: ContainerRequest) -> bool:
        return c.placement is not None and bool(c.placement.required_nodes)

    def filter(self, c: ContainerRequest, n: NodeView) -> str | None:
        assert c.placement is not None
        return None if any(t.matches(n) for t in c.placement.required_nodes) else self.reason


class ContainerAffinity:
    """The node's domain holds a container that each required affinity term selects."""

    name = "ContainerAffinity"
    passes_plain_nodes = False
    reason = CONTAINER_AFFINITY

    def applies(self, c: ContainerRequest) -> bool:
        return c.placement is not None and bool(c.placement.affinity)

    def filter(self, c: ContainerRequest, n: NodeView) -> str | None:
        p, state = _state(c)
        labels = n.labels
        for term, domains in zip(p.affinity, state.affinity, strict=True):
            value = labels.get(term.key)
            if value is None:
                return TOPOLOGY_KEY_MISSING
            if domains is not None and value not in domains:
                return self.reason
        return None


class ContainerAntiAffinity:
    """No container that a required anti-affinity term selects is in the node's domain, and no
    container there has an anti-affinity term that selects this one."""

    name = "ContainerAntiAffinity"
    passes_plain_nodes = False
    reason = CONTAINER_ANTI_AFFINITY
    reason_existing = EXISTING_ANTI_AFFINITY

    def applies(self, c: ContainerRequest) -> bool:
        p = c.placement
        return p is not None and (bool(p.anti_affinity) or (p.state is not None and bool(p.state.forbidden)))

    def filter(self, c: ContainerRequest, n: NodeView) -> str | None:
        _, state = _state(c)
        labels = n.labels
        for key, domains, own in state.excluded:  # only terms with any domain excluded at all
            value = labels.get(key)
            if value is not None and value in domains:
                return self.reason if own else self.reason_existing
        return None


class TopologySpread:
    """Every DoNotSchedule constraint stays within its maxSkew if the container lands here."""

    name = "TopologySpread"
    passes_plain_nodes = False
    reason = TOPOLOGY_SPREAD
    reason_missing = TOPOLOGY_KEY_MISSING

    def applies(self, c: ContainerRequest) -> bool:
        return c.placement is not None and any(t.hard for t in c.placement.spread)

    def filter(self, c: ContainerRequest, n: NodeView) -> str | None:
        p, state = _state(c)
        labels = n.labels
        for term, (counts, minimum) in zip(p.spread, state.spread, strict=True):
            if not term.hard:
                continue
            value = labels.get(term.key)
            if value is None:
                return self.reason_missing
            own = 1 if selects(term.selector, c.labels) else 0
            if counts.get(value, 0) + own - minimum > term.max_skew:
                return self.reason
        return None


class PreferredNodeAffinity:
    """The share of the preferred node terms' weight that holds on the node."""

    name = "PreferredNodeAffinity"

    def __init__(self, weight: int = 1) -> None:
        self.weight = weight

    def applies(self, c: ContainerRequest) -> bool:
        return c.placement is not None and bool(c.placement.preferred_nodes)

    def score(self, c: ContainerRequest, n: NodeView) -> int:
        assert c.placement is not None
        terms = c.placement.preferred_nodes
        total = sum(w for w, _ in terms)
        return sum(w for w, t in terms if t.matches(n)) * MAX_SCORE // total


class PreferredContainerAffinity:
    """The share of the preferred terms' weight that the node satisfies: an affinity term where its
    domain holds a selected container, an anti-affinity term where it holds none."""

    name = "PreferredContainerAffinity"

    def __init__(self, weight: int = 1) -> None:
        self.weight = weight

    def applies(self, c: ContainerRequest) -> bool:
        p = c.placement
        return p is not None and bool(p.preferred_affinity or p.preferred_anti_affinity)

    def score(self, c: ContainerRequest, n: NodeView) -> int:
        p, state = _state(c)
        labels = n.labels
        satisfied = total = 0
        for terms, counted, want in ((p.preferred_affinity, state.preferred_affinity, True),
                                     (p.preferred_anti_affinity, state.preferred_anti, False)):
            for term, counts in zip(terms, counted, strict=True):
                total += term.weight
                value = labels.get(term.key)
                present = value is not None and counts.get(value, 0) > 0
                if present == want:
                    satisfied += term.weight
        return satisfied * MAX_SCORE // total


class SpreadScore:
    """ScheduleAnyway constraints: domains with fewer selected containers score higher."""

    name = "SpreadScore"

    def __init__(self, weight: int = 1) -> None:
        self.weight = weight

    def applies(self, c: ContainerRequest) -> bool:
        return c.placement is not None and any(not t.hard for t in c.placement.spread)

    def score(self, c: ContainerRequest, n: NodeView) -> int:
        p, state = _state(c)
        labels = n.labels
        scores = []
        for term, (counts, minimum) in zip(p.spread, state.spread, strict=True):
            if term.hard:
                continue
            value = labels.get(term.key)
            scores.append(0 if value is None else MAX_SCORE // (1 + counts.get(value, 0) - minimum))
        return sum(scores) // len(scores)
