"""Taint nodes by condition: a Node whose ``DiskPressure`` condition is ``True`` carries the taint
``corral.io/disk-pressure:NoSchedule``, and loses it when the condition is ``False`` or gone.

This is Kubernetes' TaintNodesByCondition, and it runs in the control plane for the same reason:
a node may report its conditions (its agent writes them in the Node's status) but may not change
its own taints (NodeRestriction). With the taint, the scheduler's taint filter keeps new containers
away (unless they tolerate it) and why-not shows the untolerated taint; running containers stay.

Level-based: every change of a Node enqueues it; ``reconcile`` compares the wanted taint with the
Node's taints and writes only a difference (a compare-and-swap on the resourceVersion read).
"""

from __future__ import annotations

import msgspec

from corral.controllers.base import Controller, Informers
from corral.model.conditions import DISK_PRESSURE as DISK_PRESSURE
from corral.model.conditions import DISK_PRESSURE_TAINT as DISK_PRESSURE_TAINT
from corral.model.kinds import BY_KIND
from corral.model.resources import Node, Taint
from corral.store.informer import Change
from corral.store.objects import Objects

NODES = BY_KIND["Node"]


def wanted_taints(node: Node) -> list[Taint]:
    """The Node's taints with the disk-pressure taint present exactly when its condition says so."""
    pressure = any(c.type == DISK_PRESSURE and c.status == "True" for c in node.status.conditions)
    kept = [t for t in node.spec.taints if t.key != DISK_PRESSURE_TAINT]
    return [*kept, Taint(key=DISK_PRESSURE_TAINT, effect="NoSchedule")] if pressure else kept


class NodeConditionTaints(Controller):
    name = "node-condition-taints"

    def __init__(self, informers: Informers, objects: Objects) -> None:
        super().__init__(informers, objects)
        self.nodes = informers.of(Node)
        self.nodes.add_handler(self._on_node)

    def _on_node(self, change: Change, _key: str, node: Node, _old: Node | None) -> None:
        if change is not Change.DELETED:
            self.enqueue(node.metadata.name)

    async def reconcile(self, key: str) -> float | None:
        node = self.nodes.get(NODES.key("", key))
        if node is None:
            return None
        taints = wanted_taints(node)
        if taints != node.spec.taints:  # a copy: never change the informer's object
            await self.objects.update(msgspec.structs.replace(node, spec=msgspec.structs.replace(node.spec, taints=taints)))
        return None
