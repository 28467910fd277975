"""The one constructor of a scheduling ``Policy``: which filters, in which order, which scorers.

Order matters twice: the first filter that rejects a node gives the reason users read, and the
cheap, often-rejecting checks run first so most rejections cost one attribute read.
"""

from __future__ import annotations

from corral.scheduler import filters, placement, scorers
from corral.scheduler.framework import Filter, Policy, Scorer

POLICIES = ("spread", "binpack")


def build_policy(name: str = "spread") -> Policy:
    """``spread`` (least-allocated, the default) or ``binpack`` (most-allocated)."""
    if name not in POLICIES:
        raise ValueError(f"unknown scheduling policy {name!r}; use one of {', '.join(POLICIES)}")
    chain: list[Filter] = [
        filters.NodeName(),  # a string compare; for pinned containers it rejects all but one node
        filters.NodeReady(),  # a bool: a lost node is out before anything else is asked of it
        filters.NodeSchedulable(),  # a bool: cordoned
        filters.TaintToleration(),  # usually no taints: an empty loop
        filters.NodeSelector(),  # a few dict lookups, skipped for containers without a selector
        placement.NodeAffinity(),  # label expressions, skipped for containers without node affinity
        filters.ContainerCount(),  # two int compares
        filters.ResourcesFit(),  # four int compares; the usual reason once the cluster fills
        filters.HostPorts(),  # set lookups, skipped for containers without host ports
        # these three count other containers per topology domain (once per decision, in
        # affinity.prepare); per node they are dict lookups; skipped for containers without terms
        placement.TopologySpread(),
        placement.ContainerAffinity(),
        placement.ContainerAntiAffinity(),
    ]
    ranking: list[Scorer]
    if name == "binpack":
        ranking = [scorers.MostAllocated(weight=1)]
    else:
        ranking = [scorers.LeastAllocated(weight=1), scorers.SelectorSpread(weight=1)]
    # user-stated preferences weigh more than the defaults (kube-scheduler weighs them 2 too)
    ranking += [placement.PreferredNodeAffinity(weight=2), placement.PreferredContainerAffinity(weight=2),
                placement.SpreadScore(weight=2)]
    return Policy(name=name, filters=tuple(chain), scorers=tuple(ranking))
