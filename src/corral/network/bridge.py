"""The node's container bridge made ready before any container needs it, the way CNI's bridge plugin makes it.

The agent's DNS server listens on the bridge's gateway address, and a container may ask it a
question before — or without — another container being attached, so the agent creates the bridge
itself at start, with pyroute2: the link (type bridge), up, with the gateway address of the node's
container subnet. What the kernel has is read first, so an existing link or address is kept and a
restarted agent changes nothing; CNI's bridge plugin, finding the bridge with its gateway address, uses it as is. ``route_localnet`` on the bridge lets a
node port answer on 127.0.0.1 (the DNAT'd packet leaves by the bridge with a loopback source, then
is masqueraded).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
from pathlib import Path

from corral.model.errors import CorralError
from corral.network.netlink import IPRoute, NetlinkError


def _ensure(name: str, gateway: str, prefixlen: int) -> None:
    """The bridge ``name`` exists, holds ``gateway/prefixlen`` and is up (blocking; read from the
    kernel first, so running it again changes nothing)."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            try:
                ipr.link("add", ifname=name, kind="bridge")
            except NetlinkError as e:
                if e.code != errno.EEXIST:  # made meanwhile (the CNI bridge plugin): fine
                    raise
            found = ipr.link_lookup(ifname=name)
        index = found[0]
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index, family=socket.AF_INET)}
        if (gateway, prefixlen) not in have:
            ipr.addr("add", index=index, address=gateway, prefixlen=prefixlen)
        ipr.link("set", index=index, state="up")


async def ensure_bridge(name: str, *, subnet: str, gateway: str = "") -> str:
    """Make ``name`` exist, be up and hold the gateway address of ``subnet``; the gateway address."""
    net = ipaddress.IPv4Network(subnet)
    gw = gateway or str(next(net.hosts()))
    try:
        await asyncio.to_thread(_ensure, name, gw, net.prefixlen)
    except NetlinkError as e:
        raise CorralError(f"could not make bridge {name} with {gw}/{net.prefixlen}: {e}") from e
    with contextlib.suppress(OSError):
        await asyncio.to_thread(Path(f"/proc/sys/net/ipv4/conf/{name}/route_localnet").write_text, "1\n")
    return gw
