"""The DaemonSet controller: one container of the template on every eligible node.

Keys are DaemonSets' etcd keys. A DaemonSet's events enqueue it; a Container's events enqueue the
DaemonSet named by its controlling ``ownerReference``; a Node added, removed, or changed in its
labels, taints or readiness enqueues every DaemonSet (there are few).

A node is *eligible* when the template's ``nodeSelector`` and required node affinity admit its
labels and every NoSchedule/NoExecute taint is tolerated (``model.placement``). The controller does
not pick nodes itself: each daemon container it creates carries a required node affinity
``matchFields metadata.name In [<node>]`` and the scheduler binds it — so ``corral why-not`` tells
why a daemon cannot run on its node (not ready, insufficient memory, a host port in use, ...).
Daemons tolerate what Kubernetes' daemons tolerate (added to the template's tolerations): a
cordoned node (``node.corral.io/unschedulable``) and NotReady/unreachable nodes
(``node.corral.io/not-ready``, ``node.corral.io/unreachable``, NoExecute).

One ``reconcile(key)``:

1. per eligible node, the DaemonSet's live containers there (label ``corral.io/daemon-node``);
   none and none terminating → create one; more than one → delete the extras;
2. containers on nodes that are gone or no longer eligible → delete;
3. rolling update (``updateStrategy RollingUpdate``): containers of an older template
   (``corral.io/template-hash``) are deleted, not-running ones first, while no more than
   ``maxUnavailable`` nodes lack a running daemon; the next sync creates the new one once the old
   one is gone. ``OnDelete`` replaces only what users delete;
4. status counts (desired, current, ready, updated, unavailable, misscheduled), written when changed.

Creations the informer has not shown yet are remembered for a while (``expected``) so that a sync
running early does not create a node's daemon twice.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

import msgspec

from corral.controllers.base import Controller, Informers, follow_owned
from corral.controllers.rollout import TEMPLATE_HASH_LABEL, scaled_value, template_hash
from corral.model.errors import AlreadyExists
from corral.model.kinds import BY_KIND
from corral.model.placement import NODE_NAME_FIELD, node_admits, tolerates
from corral.model.resources import (
    Affinity,
    Container,
    ContainerTemplate,
    DaemonSet,
    DaemonSetStatus,
    Node,
    NodeAffinity,
    NodeSelectorRequirement,
    NodeSelectorTerm,
    ObjectMeta,
    OwnerReference,
    Toleration,
)
from corral.store.indexers import BY_CONTROLLER
from corral.store.informer import Change
from corral.store.objects import Objects

log = logging.getLogger(__name__)

CONTAINERS = BY_KIND["Container"]
DAEMONSETS = BY_KIND["DaemonSet"]
DAEMON_NODE_LABEL = "corral.io/daemon-node"
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
EXPECT_FOR = 30.0
UNCONFIRMED_RECHECK = 1.0

#: What every daemon tolerates (Kubernetes' DaemonSet controller adds the same to its pods).
DAEMON_TOLERATIONS = (
    Toleration(key="node.corral.io/unschedulable", operator="Exists", effect="NoSchedule"),
    Toleration(key="node.corral.io/not-ready", operator="Exists", effect="NoExecute"),
    Toleration(key="node.corral.io/unreachable", operator="Exists", effect="NoExecute"),
)


def eligible(ds: DaemonSet, node: Node) -> bool:
    """Whether ``node`` should run a daemon of ``ds`` (selector, node affinity, taints)."""
    spec = ds.spec.template.spec
    if not node_admits(spec, node.metadata.name, node.metadata.labels):
        return False
    tolerations = [*spec.tolerations, *DAEMON_TOLERATIONS]
    return all(tolerates(tolerations, t) for t in node.spec.taints if t.effect != "PreferNoSchedule")


def build_container(ds: DaemonSet, node: str, hash_: str) -> Container:
    tpl = msgspec.json.decode(msgspec.json.encode(ds.spec.template), type=ContainerTemplate)
    spec = tpl.spec
    spec.node = ""
    spec.tolerations = [*spec.tolerations, *(t for t in DAEMON_TOLERATIONS if t not in spec.tolerations)]
    pin = NodeSelectorTerm(match_fields=[NodeSelectorRequirement(key=NODE_NAME_FIELD, operator="In", values=[node])])
    affinity = spec.affinity or Affinity()
    affinity.node_affinity = NodeAffinity(required=[pin],
                                          preferred=affinity.node_affinity.preferred if affinity.node_affinity else [])
    spec.affinity = affinity
    name = f"{ds.metadata.name[:57]}-{''.join(secrets.choice(NAME_ALPHABET) for _ in range(5))}"
    return Container(
        metadata=ObjectMeta(
            name=name, namespace=ds.metadata.namespace,
            labels={**tpl.metadata.labels, TEMPLATE_HASH_LABEL: hash_, DAEMON_NODE_LABEL: node},
            annotations=dict(tpl.metadata.annotations),
            owner_references=[OwnerReference(kind="DaemonSet", name=ds.metadata.name, uid=ds.metadata.uid,
                                             controller=True)],
        ),
        spec=spec,
    )


def running(c: Container) -> bool:
    return c.status.phase == "Running" and not c.metadata.deletion_timestamp


def _node_shape(n: Node | None) -> object:
    if n is None:
        return None
    return (n.metadata.labels, n.spec.taints, n.spec.unschedulable)


class DaemonSetController(Controller):
    name = "daemonsets"
    workers = 2

    def __init__(self, informers: Informers, objects: Objects) -> None:
        super().__init__(informers, objects)
        self.daemonsets = informers.of(DaemonSet)
        self.containers = informers.of(Container)
        self.nodes = informers.of(Node)
        follow_owned(self.containers, "DaemonSet", lambda ns, name: self.enqueue(DAEMONSETS.key(ns, name)))
        self.expected: dict[str, dict[str, float]] = {}  # daemon set key -> node -> until (loop time)
        self.daemonsets.add_handler(self._on_daemonset)
        self.nodes.add_handler(self._on_node)

    def _on_daemonset(self, _change: Change, key: str, _obj: DaemonSet, _old: DaemonSet | None) -> None:
        self.enqueue(key)

    def _on_node(self, change: Change, _key: str, node: Node, old: Node | None) -> None:
        if change is Change.MODIFIED and _node_shape(old) == _node_shape(node):
            return  # a heartbeat
        for ds in self.daemonsets.values():
            self.enqueue(DAEMONSETS.key(ds.metadata.namespace, ds.metadata.name))

    def containers_of(self, ds: DaemonSet) -> list[Container]:
        return self.containers.by_index(BY_CONTROLLER, ds.metadata.uid)

    async def reconcile(self, key: str) -> float | None:
        ds = self.daemonsets.get(key)
        if ds is None:
            self.expected.pop(key, None)
            return None
        if ds.metadata.deletion_timestamp:
            return None  # the garbage collector removes its containers
        ns = ds.metadata.namespace
        hash_ = template_hash(ds.spec.template)
        nodes = {n.metadata.name: n for n in self.nodes.values()}
        wanted = {name for name, n in nodes.items() if eligible(ds, n)}
        by_node: dict[str, list[Container]] = {}
        misplaced: list[Container] = []
        for c in self.containers_of(ds):
            if c.status.phase in ("Succeeded", "Failed") and not c.metadata.deletion_timestamp:
                misplaced.append(c)  # a daemon that ended is replaced
                continue
            node = c.metadata.labels.get(DAEMON_NODE_LABEL, "")
            if node in wanted:
                by_node.setdefault(node, []).append(c)
            elif not c.metadata.deletion_timestamp:
                misplaced.append(c)
        loop_now = asyncio.get_running_loop().time()
        expected = self.expected.setdefault(key, {})
        for node, until in list(expected.items()):
            if by_node.get(node) or until < loop_now:
                del expected[node]

        deletes = list(misplaced)
        creates: list[str] = []
        for node in sorted(wanted):
            here = by_node.get(node, [])
            live = sorted((c for c in here if not c.metadata.deletion_timestamp),
                          key=lambda c: (c.metadata.labels.get(TEMPLATE_HASH_LABEL) != hash_, not running(c),
                                         c.metadata.creation_timestamp))
            deletes.extend(live[1:])  # one daemon a node: keep the best
            if not here and node not in expected:
                creates.append(node)

        # rolling update: replace old-template daemons while few enough nodes lack a running one
        desired = len(wanted)
        unavailable = sum(1 for node in wanted if not any(running(c) for c in by_node.get(node, [])))
        strategy = ds.spec.update_strategy
        if strategy.type == "RollingUpdate":
            budget = max(scaled_value(strategy.rolling_update.max_unavailable, desired, round_up=True), 1)
            budget -= unavailable
            old = [cs[0] for node in sorted(wanted)
                   if len(cs := [c for c in by_node.get(node, []) if not c.metadata.deletion_timestamp]) == 1
                   and cs[0].metadata.labels.get(TEMPLATE_HASH_LABEL) != hash_]
            for c in sorted(old, key=running):  # the ones not running first: they cost no availability
                if running(c):
                    if budget <= 0:
                        break
                    budget -= 1
                deletes.append(c)

        for c in deletes:
            await self.objects.delete(Container, c.metadata.name, namespace=ns)
        for node in creates:
            await self._create(ds, node, hash_)
            expected[node] = loop_now + EXPECT_FOR
        if creates or deletes:
            log.info("daemonset %s: created %d, deleted %d container(s)", key, len(creates), len(deletes))

        live_by_node = {node: [c for c in cs if not c.metadata.deletion_timestamp] for node, cs in by_node.items()}
        status = DaemonSetStatus(
            observed_generation=ds.metadata.generation,
            desired_number_scheduled=desired,
            current_number_scheduled=sum(1 for cs in live_by_node.values() if cs),
            number_ready=sum(1 for cs in live_by_node.values() if any(running(c) and c.status.ready for c in cs)),
            updated_number_scheduled=sum(
                1 for cs in live_by_node.values() if any(c.metadata.labels.get(TEMPLATE_HASH_LABEL) == hash_
                                                         for c in cs)),
            number_unavailable=unavailable,
            number_misscheduled=sum(1 for c in misplaced if c.status.phase not in ("Succeeded", "Failed")),
        )
        if status != ds.status:
            ds = msgspec.structs.replace(ds, metadata=msgspec.structs.replace(ds.metadata), status=status)
            await self.objects.update_status(ds)
        return UNCONFIRMED_RECHECK if expected else None

    async def _create(self, ds: DaemonSet, node: str, hash_: str) -> None:
        for _ in range(3):
            try:
                await self.objects.create(build_container(ds, node, hash_))
            except AlreadyExists:
                continue
            return
