"""Node IPAM: every Node gets a slice of the cluster CIDR (``spec.podCIDR``), and no two get the same one.

The cluster settings (``CLUSTER_CONFIG_KEY``) say the cluster CIDR (10.42.0.0/16) and the size of a
node's slice (/24). The leader runs this controller; its key is a node name.

**One allocation record per slice, created if absent.** A slice is taken by creating the etcd key
``/corral/_podcidrs/<network>-<prefix>`` (value: the owner's name and uid) with create-if-absent, so
two allocators (a new leader while the old one's lease runs out) can never hand one slice to two
nodes: the second create fails and that allocator moves on to the next slice. Only then is the
Node's ``spec.podCIDR`` written (compare-and-swap on the Node). A crash between the two leaves a
record owned by the node; the next pass finds it and writes the same slice onto the Node, so
nothing leaks and nothing is handed out twice.

**A Node that already has a podCIDR keeps it** (one set by ``--pod-cidr`` at registration, or a
cluster older than this controller): its slices are recorded the same way. If it lies outside the
cluster CIDR, or another node's record holds it, the Node keeps it but gets a Warning Event that
says so (``PodCIDRInvalid``/``PodCIDRConflict``) and nothing is recorded for it.

**Released when the Node goes:** a record whose owner (name and uid) is no longer a Node is
deleted, both on the Node's DELETED event and in the first pass after a leader starts (records of
nodes deleted while no leader ran). A full cluster CIDR is a Warning Event on the Node,
``0 free /24s in 10.42.0.0/16`` (once, not per retry); the nodes waiting for a slice are looked at
again whenever one is released — no timer, so a thousand waiting nodes cost nothing meanwhile.

The free-slice search walks the cluster CIDR's slices in order against the records in memory
(loaded once when the controller starts, kept in step with its own writes): with a /16 of /24s that
is at most 256 cheap checks, and etcd's create-if-absent stays the arbiter.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import Iterator

import msgspec

from corral.controllers.base import Controller, Informers
from corral.model.cluster import CLUSTER_CONFIG_KEY, ClusterConfig
from corral.model.errors import AlreadyExists, NotFound
from corral.model.kinds import NODES
from corral.model.resources import Node
from corral.store.informer import Change
from corral.store.objects import Objects

log = logging.getLogger(__name__)

ALLOCATION_PREFIX = "/corral/_podcidrs/"
MAX_BLOCKS_PER_NODE = 256  # an override wider than this many slices is refused

Net = ipaddress.IPv4Network


class Allocation(msgspec.Struct):
    node: str
    uid: str


def allocation_key(block: Net) -> str:
    return f"{ALLOCATION_PREFIX}{block.network_address}-{block.prefixlen}"


def block_of_key(key: str) -> Net:
    addr, _, prefix = key.removeprefix(ALLOCATION_PREFIX).rpartition("-")
    return Net(f"{addr}/{prefix}")


def blocks_of(cidr: Net, size: int) -> list[Net]:
    """The node-sized slices a podCIDR occupies: its enclosing slice, or every slice inside it."""
    if cidr.prefixlen >= size:
        return [cidr.supernet(new_prefix=size)]
    return list(cidr.subnets(new_prefix=size))


def free_blocks(cluster: Net, size: int, taken: set[Net]) -> Iterator[Net]:
    """The cluster's node-sized slices that no record holds, in address order (pure)."""
    for block in cluster.subnets(new_prefix=size):
        if block not in taken:
            yield block


def full_message(cluster: Net, size: int) -> str:
    return f"0 free /{size}s in {cluster}"


class NodeIpam(Controller):
    name = "node-ipam"
    workers = 1  # one writer: the in-memory view of the records needs no locking

    def __init__(self, informers: Informers, objects: Objects) -> None:
        super().__init__(informers, objects)
        self.nodes = informers.of(Node)
        self.nodes.add_handler(self._on_node)
        self.config: ClusterConfig | None = None
        self.records: dict[Net, Allocation] = {}  # slice -> owner, as etcd holds them
        self._warned: dict[str, str] = {}  # node -> the last warning given (given once)
        self._waiting: set[str] = set()  # nodes that found the cluster CIDR full

    def _on_node(self, change: Change, _key: str, node: Node, old: Node | None) -> None:
        if old is None or change is Change.DELETED or not node.spec.pod_cidr or old.spec.pod_cidr != node.spec.pod_cidr:
            self.enqueue(node.metadata.name)  # heartbeats (status only) never get here

    async def _load(self) -> ClusterConfig:
        if self.config is None:
            kv = await self.objects.store.get(CLUSTER_CONFIG_KEY)
            self.config = msgspec.json.decode(kv.value, type=ClusterConfig) if kv is not None else ClusterConfig()
            page = await self.objects.store.list(ALLOCATION_PREFIX)
            for item in page.items:
                self.records[block_of_key(item.key)] = msgspec.json.decode(item.value, type=Allocation)
            for owner in {a.node for a in self.records.values()}:
                self.enqueue(owner)  # released if its node is gone
        return self.config

    async def reconcile(self, key: str) -> float | None:
        cfg = await self._load()
        cluster, size = Net(cfg.cluster_cidr), cfg.node_cidr_size
        node = self.nodes.get(NODES.key("", key))
        owned = {b for b, a in self.records.items() if a.node == key}
        if node is None:
            self._waiting.discard(key)
            self._warned.pop(key, None)
            await self._release(owned)
            return None
        mine = Allocation(node=key, uid=node.metadata.uid)
        stale = {b for b in owned if self.records[b] != mine}
        await self._release(stale)  # an older Node of the same name
        owned -= stale
        if node.spec.pod_cidr:
            return await self._keep(node, mine, owned, cluster, size)
        if owned:  # taken in a pass that failed before the Node was written
            block = min(owned)
        else:
            got = await self._take_free(mine, cluster, size)
            if got is None:
                self._waiting.add(key)  # looked at again when a slice is released
                await self._warn(node, "PodCIDRUnavailable", full_message(cluster, size))
                return None
            block = got
        fresh = msgspec.structs.replace(node, spec=msgspec.structs.replace(node.spec, pod_cidr=str(block)))
        await self.objects.update(fresh)  # Conflict: retried at once, and the record above is found
        self._waiting.discard(key)
        self._warned.pop(key, None)
        log.info("node %s: podCIDR %s", key, block)
        return None

    async def _keep(self, node: Node, mine: Allocation, owned: set[Net], cluster: Net, size: int) -> float | None:
        """Record a podCIDR the Node came with; warn if it cannot be."""
        name = node.metadata.name
        try:
            cidr = Net(node.spec.pod_cidr)
        except ValueError:
            await self._warn(node, "PodCIDRInvalid", f"podCIDR {node.spec.pod_cidr!r} is not an IPv4 network")
            return None
        if not cidr.subnet_of(cluster):
            await self._warn(node, "PodCIDRInvalid", f"podCIDR {cidr} lies outside the cluster CIDR {cluster}; "
                                                     "other nodes will not route to it")
            return None
        wanted = blocks_of(cidr, size)
        if len(wanted) > MAX_BLOCKS_PER_NODE:
            await self._warn(node, "PodCIDRInvalid", f"podCIDR {cidr} is wider than {MAX_BLOCKS_PER_NODE} /{size}s")
            return None
        await self._release(owned - set(wanted))  # what it held before its podCIDR changed
        for block in wanted:
            holder = self.records.get(block)
            if holder is None:
                holder = await self._create(block, mine)
            if holder != mine:
                await self._warn(node, "PodCIDRConflict", f"podCIDR {cidr} overlaps {block}, which is node "
                                                          f"{holder.node}'s; one of the two must change")
                return None
        if self._warned.pop(name, None) is not None:
            log.info("node %s: podCIDR %s is now recorded", name, cidr)
        return None

    async def _take_free(self, mine: Allocation, cluster: Net, size: int) -> Net | None:
        for block in free_blocks(cluster, size, set(self.records)):
            if await self._create(block, mine) == mine:
                return block
        return None

    async def _create(self, block: Net, owner: Allocation) -> Allocation:
        """Create the slice's record for ``owner``; whoever holds it afterwards (etcd decides)."""
        key = allocation_key(block)
        try:
            await self.objects.store.create(key, msgspec.json.encode(owner))
            self.records[block] = owner
            return owner
        except AlreadyExists:
            kv = await self.objects.store.get(key)
            if kv is None:  # released meanwhile: the next pass tries again
                raise
            holder = msgspec.json.decode(kv.value, type=Allocation)
            self.records[block] = holder
            return holder

    async def _release(self, blocks: set[Net]) -> None:
        for block in sorted(blocks):
            with contextlib.suppress(NotFound):
                await self.objects.store.delete(allocation_key(block))
            owner = self.records.pop(block, None)
            log.info("released podCIDR %s (node %s)", block, owner.node if owner else "?")
        if blocks:
            for name in sorted(self._waiting):  # a slice is free: the nodes waiting for one try again
                self.enqueue(name)

    async def _warn(self, node: Node, reason: str, message: str) -> None:
        name = node.metadata.name
        if self._warned.get(name) == message:
            return
        self._warned[name] = message
        log.warning("node %s: %s", name, message)
        await self.record(node, reason, message, warning=True)

