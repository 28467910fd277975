"""What a node's container network is, and what a container gets from it — as plain data.

``NetworkConfig`` is one node's network: a Linux bridge (``corral0``) that is the gateway of the node's
pod subnet (``10.88.0.0/24``), with addresses handed out by ``host-local`` IPAM whose allocation files
live under the agent's data dir (so each agent's IPAM state is its own and is cleaned with it).
``conflist()`` turns it into the CNI chain corral runs for ``eth0``:

1. ``bridge`` — a veth pair from the namespace to the bridge; ``isGateway`` puts the gateway address
   on the bridge (and turns on ip_forward), ``ipMasq`` masquerades traffic leaving the subnet,
   ``hairpinMode`` lets a container reach itself through its own host port.
2. ``portmap`` — host ports (``runtimeConfig.portMappings``, granted by its ``capabilities``) as
   iptables DNAT chains; ``snat`` makes a host port answer on 127.0.0.1 too (it sets route_localnet).

``loopback_conflist()`` brings ``lo`` up; it runs as its own one-plugin list with ``CNI_IFNAME=lo``.

``Attachment`` is what the agent needs from a CNI result: the address, gateway, interface and MAC.
cniVersion 1.0.0: Debian 12's plugins (1.1.1) speak it, and its result is the simplest to read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.model.errors import Invalid
from corral.network.cni import DEFAULT_PLUGIN_DIRS
from corral.network.netns import DEFAULT_PREFIX

CNI_VERSION = "1.0.0"


@dataclass(frozen=True, slots=True)
class PortMapping:
    """A host port forwarded to a container port (CNI's ``portMappings`` entry)."""

    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""

    def to_cni(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "hostPort": self.host_port,
            "containerPort": self.container_port,
            "protocol": self.protocol.lower(),
        }
        if self.host_ip:
            out["hostIP"] = self.host_ip
        return out

    @classmethod
    def from_cni(cls, d: Mapping[str, Any]) -> PortMapping:
        return cls(
            host_port=int(d["hostPort"]),
            container_port=int(d["containerPort"]),
            protocol=str(d.get("protocol", "tcp")),
            host_ip=str(d.get("hostIP", "")),
        )


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    """One node's container network. ``data_dir`` is the agent's; the rest has working defaults."""

    data_dir: Path
    name: str = "corral"
    bridge: str = "corral0"
    subnet: str = "10.88.0.0/24"
    gateway: str = ""  # empty: the subnet's first address
    mtu: int = 1500
    plugin_dirs: tuple[Path, ...] = DEFAULT_PLUGIN_DIRS
    netns_prefix: str = DEFAULT_PREFIX
    ifname: str = "eth0"
    timeout: float = 60.0
    extra: Mapping[str, Any] = field(default_factory=dict)  # merged into the bridge plugin's config
    # per-container masquerade by the bridge plugin (a chain and rules per container: ~40 ms of iptables
    # per ADD and DEL); the agent turns it off and keeps one rule for the whole subnet instead (masq.py)
    ip_masq: bool = True

    def __post_init__(self) -> None:
        try:
            net = ipaddress.ip_network(self.subnet)
        except ValueError as e:
            raise Invalid(f"network subnet {self.subnet!r}: {e}") from None
        if net.version != 4 or net.num_addresses < 4:
            raise Invalid(f"network subnet {self.subnet!r}: need an IPv4 subnet with room for containers")
        if not 0 < len(self.bridge) <= 15:
            raise Invalid(f"bridge name {self.bridge!r}: 1-15 characters (a Linux interface name)")

    @property
    def state_dir(self) -> Path:
        """Where the saved CNI results live: ``<data_dir>/network/<container id>.json``."""
        return self.data_dir / "network"

    @property
    def ipam_dir(self) -> Path:
        """host-local's ``dataDir``; its allocations are files under ``<ipam_dir>/<name>/``."""
        return self.data_dir / "ipam"

    @property
    def gateway_ip(self) -> str:
        return self.gateway or str(next(ipaddress.ip_network(self.subnet).hosts()))

    def conflist(self, *, portmap: bool = True) -> dict[str, Any]:
        """The CNI chain for the container's main interface: bridge (+ host-local) then portmap.

        Without port mappings portmap would only cost time (its DEL is ~0.1 s of iptables calls), so
        the agent leaves it out; the saved conflist of each container says which chain its DEL runs.
        """
        bridge: dict[str, Any] = {
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": True,
            "ipMasq": self.ip_masq,
            "hairpinMode": True,
            "mtu": self.mtu,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": self.subnet, "gateway": self.gateway_ip}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": str(self.ipam_dir),
            },
            **self.extra,
        }
        portmapper = {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}
        plugins = [bridge, portmapper] if portmap else [bridge]
        return {"cniVersion": CNI_VERSION, "name": self.name, "plugins": plugins}

    def loopback_conflist(self) -> dict[str, Any]:
        return {"cniVersion": CNI_VERSION, "name": f"{self.name}-lo", "plugins": [{"type": "loopback"}]}


@dataclass(frozen=True, slots=True)
class Attachment:
    """A container's place on the network, read from the CNI result of its ADD."""

    container_id: str
    netns: str
    interface: str
    ip: str
    prefix_len: int
    gateway: str
    mac: str
    port_mappings: tuple[PortMapping, ...] = ()

    @classmethod
    def from_result(
        cls,
        result: Mapping[str, Any],
        *,
        container_id: str,
        netns: str,
        port_mappings: tuple[PortMapping, ...],
    ) -> Attachment:
        """Pick the IPv4 address on the interface inside the namespace (the one with a ``sandbox``)."""
        interfaces = result.get("interfaces", [])
        for entry in result.get("ips", []):
            iface: Mapping[str, Any] = {}
            index = entry.get("interface")
            if isinstance(index, int) and 0 <= index < len(interfaces):
                iface = interfaces[index]
            if interfaces and not iface.get("sandbox"):
                continue
            addr = ipaddress.ip_interface(entry["address"])
            if addr.version != 4:
                continue
            return cls(
                container_id=container_id,
                netns=netns,
                interface=str(iface.get("name", "")),
                ip=str(addr.ip),
                prefix_len=addr.network.prefixlen,
                gateway=str(entry.get("gateway", "")),
                mac=str(iface.get("mac", "")),
                port_mappings=port_mappings,
            )
        raise Invalid(f"CNI result for {container_id} has no IPv4 address in the container: {dict(result)}")
