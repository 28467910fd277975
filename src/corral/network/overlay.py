"""The way to other nodes' containers: host-gw routes, or a VXLAN overlay as flannel's vxlan backend makes it.

``plan(backend, peers)`` says, as plain data, what the kernel must hold for a set of remote nodes
(``Peer``: its podCIDR, its InternalIP and, for VXLAN, its VTEP's MAC):

- **host-gw** — a route ``podCIDR via <node IP>``: the nodes share an L2 segment and forward for
  each other's containers.
- **vxlan** — one device per node (``corral.vxlan``, the cluster's VNI and UDP port, local address
  the node's IP, MTU 50 below the uplink's, learning off), whose own address is the network address
  of the node's podCIDR (10.42.1.0/32: its *VTEP address*). Per remote node: an FDB entry (its VTEP
  MAC → its node IP: where to send the encapsulated frame), a permanent neighbour entry (its VTEP
  address → its VTEP MAC: no ARP over the overlay) and a route ``podCIDR via <its VTEP address> dev
  corral.vxlan onlink``. Nodes on different L2 segments work: only UDP between node IPs is needed.

``Overlay`` applies a plan level-based (blocking pyroute2 calls: run them in a thread): it reads
what the kernel holds, removes what is ours and not wanted, and adds what is missing. Ours means: a
route in the main table with protocol ``ROUTE_PROTO`` (74, a number no routing daemon uses), and
an FDB or neighbour entry on our VXLAN device. Applying the same plan twice changes nothing, so an
agent restart neither doubles nor drops anything; the VXLAN device is kept across restarts (its MAC,
which the other nodes know, stays the same) unless its VNI, port, local IP or MTU changed.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from corral.model.errors import CorralError
from corral.network.netlink import IPRoute, NetlinkError

log = logging.getLogger(__name__)

ROUTE_PROTO = 74  # marks corral's routes (see /etc/iproute2/rt_protos for the numbers taken)
VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
DEFAULT_DEVICE = "corral.vxlan"
RTNH_F_ONLINK = 4
NUD_PERMANENT = 0x80
MAIN_TABLE = 254


@dataclass(frozen=True, slots=True, order=True)
class Peer:
    """A remote node as far as reaching its containers goes."""

    name: str
    pod_cidr: str
    node_ip: str
    vtep_mac: str = ""


@dataclass(frozen=True, slots=True, order=True)
class Route:
    dst: str  # "10.42.2.0/24"
    gateway: str
    onlink_vxlan: bool = False  # via the VXLAN device, onlink


@dataclass(frozen=True, slots=True)
class Plan:
    routes: frozenset[Route] = frozenset()
    fdb: frozenset[tuple[str, str]] = frozenset()  # (remote VTEP MAC, remote node IP)
    neighbours: frozenset[tuple[str, str]] = frozenset()  # (remote VTEP address, remote VTEP MAC)


@dataclass(slots=True)
class Changes:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def vtep_address(pod_cidr: str) -> str:
    """A node's VTEP address: the network address of its podCIDR (never handed to a container)."""
    return str(ipaddress.IPv4Network(pod_cidr).network_address)


def device_for(bridge: str) -> str:
    """The VXLAN device of the agent whose container bridge is ``bridge``: ``corral.vxlan`` for the
    default bridge, else derived from the bridge (agents that share one network namespace)."""
    return DEFAULT_DEVICE if bridge == "corral0" else f"{bridge[:12]}.vx"


def plan(backend: str, peers: Iterable[Peer]) -> Plan:
    """What the kernel must hold to reach ``peers``' containers (pure). A VXLAN peer that has not
    published its VTEP MAC yet is left out until it has."""
    routes: set[Route] = set()
    fdb: set[tuple[str, str]] = set()
    neighbours: set[tuple[str, str]] = set()
    for p in peers:
        if backend == "host-gw":
            routes.add(Route(p.pod_cidr, p.node_ip))
        elif p.vtep_mac:
            vtep = vtep_address(p.pod_cidr)
            routes.add(Route(p.pod_cidr, vtep, onlink_vxlan=True))
            fdb.add((p.vtep_mac, p.node_ip))
            neighbours.add((vtep, p.vtep_mac))
    return Plan(frozenset(routes), frozenset(fdb), frozenset(neighbours))


def uplink(node_ip: str) -> tuple[int, int]:
    """(ifindex, MTU) of the link that holds ``node_ip``; blocking."""
    with IPRoute() as ipr:
        for addr in ipr.get_addr(family=socket.AF_INET):
            if addr.get_attr("IFA_ADDRESS") == node_ip or addr.get_attr("IFA_LOCAL") == node_ip:
                index = int(addr["index"])
                link = ipr.get_links(index)[0]
                return index, int(link.get_attr("IFLA_MTU"))
    raise CorralError(f"no link on this host has the node IP {node_ip} (--node-ip)")


class Overlay:
    """This node's side of the backend, in this process's network namespace. Every method blocks."""

    def __init__(self, *, backend: str, device: str, vni: int, port: int, node_ip: str, pod_cidr: str) -> None:
        self.backend = backend
        self.device = device
        self.vni = vni
        self.port = port
        self.node_ip = node_ip
        self.pod_cidr = pod_cidr

    # --- the VXLAN device --------------------------------------------------------------------

    def ensure_device(self) -> str:
        """Make the VXLAN device (or keep the one there, if it fits); its MAC. For host-gw, remove it."""
        try:
            return self._ensure_device()
        except NetlinkError as e:
            raise CorralError(f"VXLAN device {self.device}: {e}") from e

    def _ensure_device(self) -> str:
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=self.device)
            if self.backend != "vxlan":
                if found:
                    ipr.link("del", index=found[0])
                return ""
            up_index, up_mtu = uplink(self.node_ip)
            mtu = up_mtu - VXLAN_OVERHEAD
            if found and not self._fits(ipr, found[0], mtu):
                log.info("VXLAN device %s has other settings: made again", self.device)
                ipr.link("del", index=found[0])
                found = []
            if not found:
                ipr.link("add", ifname=self.device, kind="vxlan", vxlan_id=self.vni, vxlan_port=self.port,
                         vxlan_local=self.node_ip, vxlan_learning=0, vxlan_link=up_index)
                found = ipr.link_lookup(ifname=self.device)
            index = found[0]
            ipr.link("set", index=index, mtu=mtu, state="up")
            vtep = vtep_address(self.pod_cidr)
            have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index, family=socket.AF_INET)}
            for address, prefixlen in have - {(vtep, 32)}:
                ipr.addr("del", index=index, address=address, prefixlen=prefixlen)
            if (vtep, 32) not in have:
                ipr.addr("add", index=index, address=vtep, prefixlen=32)
            return str(ipr.get_links(index)[0].get_attr("IFLA_ADDRESS"))

    def _fits(self, ipr: IPRoute, index: int, mtu: int) -> bool:
        link = ipr.get_links(index)[0]
        info = link.get_attr("IFLA_LINKINFO")
        if info is None or info.get_attr("IFLA_INFO_KIND") != "vxlan":
            return False
        data = info.get_attr("IFLA_INFO_DATA")
        return bool(data.get_attr("IFLA_VXLAN_ID") == self.vni and data.get_attr("IFLA_VXLAN_PORT") == self.port
                    and data.get_attr("IFLA_VXLAN_LOCAL") == self.node_ip and link.get_attr("IFLA_MTU") == mtu)

    # --- routes, FDB, neighbours ----------------------------------------------------------------

    def apply(self, wanted: Plan) -> Changes:
        """Make the kernel hold ``wanted`` and nothing else of ours."""
        try:
            return self._apply(wanted)
        except NetlinkError as e:  # reading the kernel's state failed; a failed change is in Changes.failed
            raise CorralError(f"routes to other nodes: {e}") from e

    def _apply(self, wanted: Plan) -> Changes:
        changes = Changes()
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=self.device)
            index = found[0] if found else 0
            have_routes = self._routes(ipr, index)
            have_fdb = self._fdb(ipr, index) if index else set()
            have_neigh = self._neighbours(ipr, index) if index else set()
            for route in sorted(have_routes.keys() - wanted.routes):  # the way first, then what it needs
                self._try(changes, f"route {route.dst} via {route.gateway}",
                          partial(ipr.route, "del", **have_routes[route]), removing=True)
            for ip, mac in sorted(have_neigh - wanted.neighbours):
                self._try(changes, f"neighbour {ip} {mac}",
                          partial(ipr.neigh, "del", dst=ip, ifindex=index), removing=True)
            for mac, ip in sorted(have_fdb - wanted.fdb):
                self._try(changes, f"fdb {mac} {ip}",
                          partial(ipr.fdb, "del", ifindex=index, lladdr=mac, dst=ip),
                          removing=True)
            if (wanted.fdb or wanted.neighbours) and not index:
                raise CorralError(f"the VXLAN device {self.device} is missing")
            for mac, ip in sorted(wanted.fdb - have_fdb):
                self._try(changes, f"fdb {mac} {ip}",
                          partial(ipr.fdb, "append", ifindex=index, lladdr=mac, dst=ip))
            for ip, mac in sorted(wanted.neighbours - have_neigh):
                self._try(changes, f"neighbour {ip} {mac}",
                          partial(ipr.neigh, "replace", dst=ip, lladdr=mac, ifindex=index,
                                  state=NUD_PERMANENT))
            for route in sorted(wanted.routes - have_routes.keys()):
                self._try(changes, f"route {route.dst} via {route.gateway}",
                          partial(ipr.route, "replace", **self._route_args(route, index)))
        return changes

    @staticmethod
    def _try(changes: Changes, what: str, call: Callable[[], object], *, removing: bool = False) -> None:
        try:
            call()
        except NetlinkError as e:
            if removing and e.code in (errno.ENOENT, errno.ESRCH):
                return  # gone already
            changes.failed.append(f"{what}: {e.args[1] if len(e.args) > 1 else e}")
            return
        (changes.removed if removing else changes.added).append(what)

    @staticmethod
    def _route_args(route: Route, index: int) -> dict[str, Any]:
        args: dict[str, Any] = {"dst": route.dst, "gateway": route.gateway, "proto": ROUTE_PROTO,
                                "table": MAIN_TABLE}
        if route.onlink_vxlan:
            args.update(oif=index, flags=RTNH_F_ONLINK)
        return args

    def _routes(self, ipr: IPRoute, vxlan_index: int) -> dict[Route, dict[str, Any]]:
        """Our routes in the main table, each with the arguments that delete exactly it."""
        out: dict[Route, dict[str, Any]] = {}
        for r in ipr.route("dump", family=socket.AF_INET):
            if r["proto"] != ROUTE_PROTO or (r.get_attr("RTA_TABLE") or r["table"]) != MAIN_TABLE:
                continue
            dst = f"{r.get_attr('RTA_DST')}/{r['dst_len']}"
            gateway = r.get_attr("RTA_GATEWAY") or ""
            oif = r.get_attr("RTA_OIF")
            onlink = bool(vxlan_index and oif == vxlan_index and r["flags"] & RTNH_F_ONLINK)
            out[Route(dst, gateway, onlink)] = {"dst": dst, "gateway": gateway or None, "oif": oif,
                                                "proto": ROUTE_PROTO, "table": MAIN_TABLE}
        return out

    @staticmethod
    def _fdb(ipr: IPRoute, index: int) -> set[tuple[str, str]]:
        out = set()
        for entry in ipr.fdb("dump", ifindex=index):
            dst = entry.get_attr("NDA_DST")
            if entry["ifindex"] == index and dst:
                out.add((str(entry.get_attr("NDA_LLADDR")), str(dst)))
        return out

    @staticmethod
    def _neighbours(ipr: IPRoute, index: int) -> set[tuple[str, str]]:
        out = set()
        for n in ipr.neigh("dump", ifindex=index, family=socket.AF_INET):
            if n["ifindex"] == index and n["state"] & NUD_PERMANENT and n.get_attr("NDA_LLADDR"):
                out.add((str(n.get_attr("NDA_DST")), str(n.get_attr("NDA_LLADDR"))))
        return out
