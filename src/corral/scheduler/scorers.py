"""Ranking: how good a feasible node is for a container, 0..100, times a weight.

- ``LeastAllocated`` (policy ``spread``, the default) prefers the node whose CPU and memory would
  be least used after placing the container: load spreads.
- ``MostAllocated`` (policy ``binpack``) prefers the fullest node that still fits: nodes fill one
  by one and whole nodes stay free.
- ``SelectorSpread`` prefers nodes with fewer replicas of the same controlling owner (a
  Deployment): a first step towards topology spreading.

Scores use the scoring sums of ``NodeView`` (request-less containers count as
``DEFAULT_SCORE_CPU``/``DEFAULT_SCORE_MEMORY``), so nodes full of request-less containers do not
look empty. A node without allocatable CPU or memory scores 0 on that resource.
"""

from __future__ import annotations

from corral.scheduler.framework import ContainerRequest, NodeView

MAX_SCORE = 100


def _used_fraction(requested: int, allocatable: int) -> int:
    if allocatable <= 0 or requested > allocatable:
        return 0
    return requested * MAX_SCORE // allocatable


class LeastAllocated:
    name = "LeastAllocated"

    def __init__(self, weight: int = 1) -> None:
        self.weight = weight

    def applies(self, c: ContainerRequest) -> bool:
        return True

    def score(self, c: ContainerRequest, n: NodeView) -> int:
        # the free fraction of each resource, inlined: this runs for every sampled node of every decision
        alloc, used = n.alloc_cpu, n.score_cpu + c.score_cpu
        cpu = (alloc - used) * MAX_SCORE // alloc if alloc > 0 and used <= alloc else 0
        alloc, used = n.alloc_memory, n.score_memory + c.score_memory
        memory = (alloc - used) * MAX_SCORE // alloc if alloc > 0 and used <= alloc else 0
        return (cpu + memory) // 2


class MostAllocated:
    name = "MostAllocated"

    def __init__(self, weight: int = 1) -> None:
        self.weight = weight

    def applies(self, c: ContainerRequest) -> bool:
        return True

    def score(self, c: ContainerRequest, n: NodeView) -> int:
        cpu = _used_fraction(n.score_cpu + c.score_cpu, n.alloc_cpu)
        memory = _used_fraction(n.score_memory + c.score_memory, n.alloc_memory)
        return (cpu + memory) // 2


class SelectorSpread:
    """Fewer containers of the same owner on the node score higher (100 with none there)."""

    name = "SelectorSpread"

    def __init__(self, weight: int = 1) -> None:
        self.weight = weight

    def applies(self, c: ContainerRequest) -> bool:
        return bool(c.owner)

    def score(self, c: ContainerRequest, n: NodeView) -> int:
        if not c.owner:
            return MAX_SCORE
        return MAX_SCORE // (1 + n.owners.get(c.owner, 0))
