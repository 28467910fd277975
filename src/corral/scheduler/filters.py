"""Feasibility filters: each answers whether one node can take one container, and why not.

Every filter is a small class with a ``name`` and a ``reason`` constant (from ``framework``); it
returns that reason when it rejects and ``None`` when the node passes. They read only the parsed
``ContainerRequest`` and the cache's ``NodeView`` (running sums), so each check is O(1) (host ports:
O(ports of the container)). ``applies`` lets the chain skip a filter for containers it can never
reject (no selector, no host ports, not pinned).
"""

from __future__ import annotations

from corral.scheduler.framework import (
    HOST_PORT,
    INSUFFICIENT_CPU,
    INSUFFICIENT_MEMORY,
    NODE_NAME,
    NODE_SELECTOR,
    NOT_READY,
    TAINT,
    TOO_MANY,
    UNSCHEDULABLE,
    ContainerRequest,
    NodeView,
)


class NodeName:
    """A container pinned with ``spec.node`` fits only that node."""

    name = "NodeName"
    passes_plain_nodes = False
    reason = NODE_NAME

    def applies(self, c: ContainerRequest) -> bool:
        return bool(c.node)

    def filter(self, c: ContainerRequest, n: NodeView) -> str | None:
        return None if n.name == c.node else self.reason


class NodeReady:
    """The node's ``Ready`` condition is ``True``."""

    name = "NodeReady"
    passes_plain_nodes = True
    reason = NOT_READY

    def applies(self, c: ContainerRequest) -> bool:
        return True

    def filter(self, c: ContainerRequest, n: NodeView) -> str | None:
        return None if n.ready else self.reason


class NodeSchedulable:
    """The node is not cordoned (``spec.unschedulable``), or the container tolerates that (daemons)."""

    name = "NodeSchedulable"
    passes_plain_nodes = True
    reason = UNSCHEDULABLE

    def applies(self, c: ContainerRequest) -> bool:
        return True

    def filter(self, c: ContainerRequest, n: NodeView) -> str | None:
        return self.reason if n.unschedulable and not c.tolerates_cordon else None


class TaintToleration:
    """Every NoSchedule/NoExecute taint of the node is tolerated by the container."""

    name = "TaintToleration"
    passes_plain_nodes = True
    reason = TAINT

    def applies(self, c: ContainerRequest) -> bool:
        return True

    def filter(self, c: ContainerRequest, n: NodeView) -> str | None:
        for taint in n.taints:
            if not any(t.tolerates(taint) for t in c.tolerations):
                return self.reason
        return None


class NodeSelector:
    """Every ``spec.nodeSelector`` pair is among the node's labels."""

    name = "NodeSelector"
    passes_plain_nodes = False
    reason = NODE_SELECTOR

    def applies(self, c: ContainerRequest) -> bool:
        return bool(c.node_selector)

    def filter(self, c: ContainerRequest, n: NodeView) -> str | None:
        labels = n.labels
        for k, v in c.node_selector:
            if labels.get(k) != v:
                return self.reason
        return None


class ContainerCount:
    """The node has room for one more container (``allocatable.containers``; 0 means no limit)."""

    name = "ContainerCount"
    passes_plain_nodes = False
    reason = TOO_MANY

    def applies(self, c: ContainerRequest) -> bool:
        return True

    def filter(self, c: ContainerRequest, n: NodeView) -> str | None:
        return self.reason if n.alloc_count and n.count >= n.alloc_count else None


class ResourcesFit:
    """CPU then memory requests fit allocatable minus what is bound or assumed on the node.

    One reason per node (the first resource short), so the counts in a Pending message add up
    to the number of nodes.
    """

    name = "ResourcesFit"
    passes_plain_nodes = False
    reason_cpu = INSUFFICIENT_CPU
    reason_memory = INSUFFICIENT_MEMORY

    def applies(self, c: ContainerRequest) -> bool:
        return bool(c.cpu or c.memory)

    def filter(self, c: ContainerRequest, n: NodeView) -> str | None:
        if c.cpu and n.cpu + c.cpu > n.alloc_cpu:
            return self.reason_cpu
        if c.memory and n.memory + c.memory > n.alloc_memory:
            return self.reason_memory
        return None


class HostPorts:
    """None of the container's host ports (protocol, port) is used on the node."""

    name = "HostPorts"
    passes_plain_nodes = False
    reason = HOST_PORT

    def applies(self, c: ContainerRequest) -> bool:
        return bool(c.host_ports)

    def filter(self, c: ContainerRequest, n: NodeView) -> str | None:
        ports = n.ports
        if ports:
            for p in c.host_ports:
                if p in ports:
                    return self.reason
        return None
