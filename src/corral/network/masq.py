"""Masquerading what leaves the container subnet: one rule per node, and the bridge plugin's leftovers.

The agent keeps one ``POSTROUTING`` rule per node (``ensure_subnet_masquerade``: ``-s SUBNET ! -d
CLUSTER_CIDR -j MASQUERADE``, commented with the bridge) and runs the bridge plugin with ``ipMasq`` off:
the plugin's per-container chains cost each ADD and DEL several iptables-nft calls (~40 ms). Only
what leaves the cluster CIDR is masqueraded: a container reaching a container on another node keeps
its own source address. The rule's comment (``corral <bridge>``) is what marks it as this agent's:
ensuring it removes any other rule with that comment (a podCIDR or cluster CIDR that changed).

For containers attached with ``ipMasq`` on, this module also tears down the plugin's per-container
masquerade chain when its namespace is already gone.

The bridge plugin (``ipMasq: true``) adds, per container, a nat chain ``CNI-<24 hex>`` — the first 24
hex digits of sha512(network name + container id) — jumped to from ``POSTROUTING`` for the container's
source address. Its DEL removes it only after it has read the container's addresses off ``eth0``
inside the namespace; with the namespace gone it returns success and leaves the chain behind.

``teardown`` finishes the job from the names alone: it deletes every ``POSTROUTING`` rule that jumps
to the chain (as listed by ``iptables -S``), then flushes and deletes the chain. Missing rules and
chains are fine: it is idempotent. iptables runs as an asyncio subprocess with ``-w`` (wait for the
xtables lock other plugins may hold).
"""

from __future__ import annotations

import asyncio
import hashlib
import shlex
from collections.abc import Mapping
from typing import Any

from corral.model.errors import CorralError


def _subnet_rule(subnet: str, bridge: str, cluster_cidr: str = "") -> list[str]:
    return ["-s", subnet, "!", "-d", cluster_cidr or subnet, "-m", "comment", "--comment", f"corral {bridge}",
            "-j", "MASQUERADE"]


async def ensure_subnet_masquerade(*, subnet: str, bridge: str, cluster_cidr: str = "") -> None:
    """One POSTROUTING rule masquerading what goes from the node's container subnet to outside the
    cluster CIDR (outside the subnet when no cluster CIDR is given); idempotent.

    It replaces the bridge plugin's per-container chains (``ipMasq``), which cost each container's ADD
    and DEL several iptables calls: containers reach beyond their node all the same.
    """
    rule = _subnet_rule(subnet, bridge, cluster_cidr)
    for words in await _our_rules(bridge):
        if words != ["-A", "POSTROUTING", *rule]:
            await _iptables("-t", "nat", "-D", *words[1:])
    rc, _ = await _iptables("-t", "nat", "-C", "POSTROUTING", *rule)
    if rc == 0:
        return
    rc, out = await _iptables("-t", "nat", "-A", "POSTROUTING", *rule)
    if rc != 0:
        raise CorralError(f"could not add the masquerade rule for {subnet}: {out.strip()}")


async def _our_rules(bridge: str) -> list[list[str]]:
    """The POSTROUTING rules commented ``corral <bridge>``, as ``iptables -S`` words."""
    rc, listing = await _iptables("-t", "nat", "-S", "POSTROUTING")
    if rc != 0:
        return []
    rules = [shlex.split(line) for line in listing.splitlines()]
    return [w for w in rules if w[:2] == ["-A", "POSTROUTING"] and f"corral {bridge}" in w]


async def remove_subnet_masquerade(*, bridge: str, subnet: str = "") -> None:
    """Remove the agent's masquerade rules (those commented with its bridge); nothing happens if there are none."""
    for words in await _our_rules(bridge):
        await _iptables("-t", "nat", "-D", *words[1:])


def chain_name(network_name: str, container_id: str) -> str:
    """The bridge plugin's masquerade chain for a container (CNI's ``FormatChainName``)."""
    return "CNI-" + hashlib.sha512((network_name + container_id).encode()).hexdigest()[:24]


async def _iptables(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "iptables",
        "-w",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


async def teardown(*, network_name: str, container_id: str, result: Mapping[str, Any]) -> None:
    """Remove the container's masquerade chain and the POSTROUTING jumps to it, if any are left."""
    if not any(":" not in str(ip.get("address", "")) for ip in result.get("ips", [])):
        return  # no IPv4 address, so the plugin made no IPv4 chain
    chain = chain_name(network_name, container_id)
    rc, listing = await _iptables("-t", "nat", "-S", "POSTROUTING")
    if rc != 0:
        return
    for line in listing.splitlines():
        words = shlex.split(line)
        if words[:2] == ["-A", "POSTROUTING"] and words[-2:] == ["-j", chain]:
            await _iptables("-t", "nat", "-D", *words[1:])
    rc, _ = await _iptables("-t", "nat", "-F", chain)
    if rc == 0:
        await _iptables("-t", "nat", "-X", chain)
