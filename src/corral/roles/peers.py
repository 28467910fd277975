"""The agent's routes to other nodes' containers, kept from the watched Nodes (network/overlay.py does the kernel).

``PeerRoutes`` follows every Node through an informer over the API. The peers are the *other* nodes that are
Ready, have a podCIDR and a non-loopback InternalIP (and, for VXLAN, have published their VTEP MAC in
the annotation ``node.corral.io/vxlan-mac``). On every Node change it computes the plan for them and, if
the plan differs from the last one applied (most Node writes are heartbeats), applies it level-based
(``Overlay.apply`` in a thread): whatever of ours the kernel holds and the plan does not is removed.
On start and every ``resync`` seconds it applies whatever the plan, so drift is repaired. A node deleted or no longer Ready loses its
route on every other node; an agent restarted finds the kernel as it left it and changes nothing.

The backend, VNI and port come from the cluster settings (``GET /cluster``), so nodes cannot
disagree. With VXLAN the agent first makes its device and writes its MAC on its own Node.

A node whose own InternalIP is a loopback address (every node of a single-host cluster, where all
agents share one network namespace) routes nothing: there is no other host to reach.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Iterable

from corral.aiokit.backoff import Backoff
from corral.api.client import ApiClient
from corral.api.listwatch import NamespacedName, api_informer
from corral.model import errors
from corral.model.cluster import ClusterConfig
from corral.model.resources import Node
from corral.network.overlay import Overlay, Peer, Plan, device_for, plan
from corral.store.informer import Change, Informer

log = logging.getLogger(__name__)

VXLAN_MAC_ANNOTATION = "node.corral.io/vxlan-mac"  # a node may write node.corral.io/ annotations (NodeRestriction)


def is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return True


def internal_ip(node: Node) -> str:
    return next((a.address for a in node.status.addresses if a.type == "InternalIP"), "")


def peers_of(nodes: Iterable[Node], *, me: str) -> list[Peer]:
    """The nodes whose containers this node routes to (pure)."""
    out = []
    for n in nodes:
        ip = internal_ip(n)
        ready = any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)
        if n.metadata.name == me or not ready or not n.spec.pod_cidr or not ip or is_loopback(ip):
            continue
        out.append(Peer(n.metadata.name, n.spec.pod_cidr, ip, n.metadata.annotations.get(VXLAN_MAC_ANNOTATION, "")))
    return sorted(out)


def link_mtu(cluster: ClusterConfig, *, node_ip: str, uplink_mtu: int) -> int:
    """The MTU of the containers' links: the uplink's, less the VXLAN header with that backend."""
    if is_loopback(node_ip):
        return 1500
    return uplink_mtu - 50 if cluster.backend == "vxlan" else uplink_mtu


class PeerRoutes:
    def __init__(self, api: ApiClient, *, node: str, node_ip: str, pod_cidr: str, bridge: str,
                 cluster: ClusterConfig, resync: float = 30.0) -> None:
        self.api = api
        self.node = node
        self.cluster = cluster
        self.resync = resync
        self.overlay = Overlay(backend=cluster.backend, device=device_for(bridge), vni=cluster.vxlan_vni,
                               port=cluster.vxlan_port, node_ip=node_ip, pod_cidr=pod_cidr)
        self.enabled = not is_loopback(node_ip)
        self.reflector: Informer[NamespacedName, Node] = api_informer(api, Node)
        self.reflector.add_handler(self._on_node)
        self._changed = asyncio.Event()
        self.applied: Plan | None = None

    def _on_node(self, _change: Change, _key: NamespacedName, _obj: Node, _old: Node | None) -> None:
        self._changed.set()

    async def run(self) -> None:
        if not self.enabled:
            log.info("node IP is a loopback address: no routes to other nodes (single-host cluster)")
            return
        while True:
            try:
                mac = await asyncio.to_thread(self.overlay.ensure_device)
                break
            except errors.CorralError as e:  # the agent keeps running its containers; it tries again
                log.warning("%s; trying again in 5 s", e)
                await asyncio.sleep(5.0)
        if mac:
            await self._publish_mac(mac)
        log.info("backend %s: keeping routes to the other nodes' containers", self.cluster.backend)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.reflector.run(), name="agent-node-reflector")
            await self.reflector.synced.wait()
            changed = True
            while True:
                self._changed.clear()
                await self._apply(force=not changed)
                try:
                    await asyncio.wait_for(self._changed.wait(), self.resync)
                    changed = True
                except TimeoutError:
                    changed = False

    async def _apply(self, *, force: bool) -> None:
        """Apply the plan for the current Nodes: when it differs from the last one applied, and on
        every resync (``force``: the kernel is read again, whatever changed it meanwhile)."""
        wanted = plan(self.cluster.backend, peers_of(self.reflector.objects.values(), me=self.node))
        if wanted == self.applied and not force:
            return  # a heartbeat's status write: nothing for the routes
        try:
            changes = await asyncio.to_thread(self.overlay.apply, wanted)
        except (errors.CorralError, OSError) as e:
            log.warning("routes to other nodes: %s", e)
            return
        self.applied = wanted  # what failed is tried again at the next resync (not at every heartbeat)
        for what in changes.added:
            log.info("added %s", what)
        for what in changes.removed:
            log.info("removed %s", what)
        for what in changes.failed:
            log.warning("could not apply %s%s", what, " (host-gw needs every node on one L2 segment; the "
                        "vxlan backend does not)" if self.cluster.backend == "host-gw" else "")

    async def _publish_mac(self, mac: str) -> None:
        """Write this node's VTEP MAC on its Node (the other nodes' FDB and neighbour entries use it).
        Until it is written no other node can reach this one's containers, so it is retried until it
        is, and said why meanwhile (e.g. the API refusing the write)."""
        backoff = Backoff(initial=1.0, maximum=30.0)
        while True:
            try:
                node = await self.api.get(Node, self.node)
                if node.metadata.annotations.get(VXLAN_MAC_ANNOTATION) == mac:
                    return
                # a merge patch of one annotation: the server lays it over the newest version (no race to lose)
                await self.api.patch(Node, self.node, {"metadata": {"annotations": {VXLAN_MAC_ANNOTATION: mac}}})
                log.info("VXLAN device %s has MAC %s", self.overlay.device, mac)
                return
            except errors.CorralError as e:
                log.warning("could not publish this node's VTEP MAC (%s) on its Node: %s", mac, e)
                await asyncio.sleep(backoff.next())
