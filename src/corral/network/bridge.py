"""The node's container bridge made ready before any container needs it, the way CNI's bridge plugin makes it.

The agent's DNS server listens on the bridge's gateway address, and a container may ask it a
question before — or without — another container being attached, so the agent creates the bridge
itself at start: the link (type bridge), up, with the gateway address of the node's container
subnet. Every step is idempotent (an existing link or address is kept), and CNI's bridge plugin,
finding the bridge with its gateway address, uses it as is. ``route_localnet`` on the bridge lets a
node port answer on 127.0.0.1 (the DNAT'd packet leaves by the bridge with a loopback source, then
is masqueraded).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from pathlib import Path

from corral.model.errors import CorralError


async def _ip(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec("ip", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


async def ensure_bridge(name: str, *, subnet: str, gateway: str = "") -> str:
    """Make ``name`` exist, be up and hold the gateway address of ``subnet``; the gateway address."""
    net = ipaddress.IPv4Network(subnet)
    gw = gateway or str(next(net.hosts()))
    code, out = await _ip("link", "add", "name", name, "type", "bridge")
    if code != 0 and "exists" not in out:
        raise CorralError(f"could not create bridge {name}: {out.strip()}")
    code, out = await _ip("addr", "add", f"{gw}/{net.prefixlen}", "dev", name)
    if code != 0 and "exists" not in out and "already assigned" not in out:  # (the kernel's two ways to say it)
        raise CorralError(f"could not put {gw} on bridge {name}: {out.strip()}")
    code, out = await _ip("link", "set", name, "up")
    if code != 0:
        raise CorralError(f"could not bring bridge {name} up: {out.strip()}")
    with contextlib.suppress(OSError):
        await asyncio.to_thread(Path(f"/proc/sys/net/ipv4/conf/{name}/route_localnet").write_text, "1\n")
    return gw
