"""The agent's side of node IPAM: which subnet its containers get.

The control plane hands every Node a slice of the cluster CIDR (``controllers/podcidrs.py``); the
agent registers its Node without one and waits until ``spec.podCIDR`` is there. ``--pod-cidr`` is
only an explicit override, written once at registration and checked first, here, with a clear
error: it must lie inside the cluster CIDR and overlap no other Node's podCIDR (the controller
checks again, atomically, and warns on the Node if a race lost). The agent never writes
``spec.podCIDR`` after that: a Node that has one keeps it, and an override that differs from it is
an error (delete the Node to change it).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Mapping

from corral.api.client import ApiClient
from corral.model import errors
from corral.model.cluster import ClusterConfig
from corral.model.resources import Event, Node

log = logging.getLogger(__name__)

WAIT_LOG_EVERY = 10.0


def check_override(override: str, *, cluster_cidr: str, others: Mapping[str, str]) -> None:
    """Raise ``Invalid`` unless ``override`` lies in the cluster CIDR and overlaps no other node's
    podCIDR (``others``: node name → podCIDR); pure."""
    try:
        net = ipaddress.IPv4Network(override)
    except ValueError as e:
        raise errors.Invalid(f"--pod-cidr {override!r} is not an IPv4 network ({e})") from None
    cluster = ipaddress.IPv4Network(cluster_cidr)
    if not net.subnet_of(cluster):
        raise errors.Invalid(f"--pod-cidr {net} lies outside the cluster CIDR {cluster}; pick a slice of it, "
                             "or leave --pod-cidr out and the control plane assigns one")
    for name, cidr in sorted(others.items()):
        try:
            theirs = ipaddress.IPv4Network(cidr)
        except ValueError:
            continue
        if net.overlaps(theirs):
            raise errors.Invalid(f"--pod-cidr {net} overlaps node {name}'s podCIDR {theirs}")


async def check_override_with_api(api: ApiClient, override: str, *, node: str, cluster: ClusterConfig) -> None:
    nodes, _ = await api.list(Node, namespace=None)
    others = {n.metadata.name: n.spec.pod_cidr for n in nodes if n.metadata.name != node and n.spec.pod_cidr}
    check_override(override, cluster_cidr=cluster.cluster_cidr, others=others)


async def wait_for_pod_cidr(api: ApiClient, node: str, *, poll: float = 0.3) -> str:
    """The Node's ``spec.podCIDR`` once the control plane has written it; logs why it waits."""
    loop = asyncio.get_running_loop()
    started = last_log = loop.time()
    while True:
        current = await api.get(Node, node)
        if current.spec.pod_cidr:
            return current.spec.pod_cidr
        if loop.time() - last_log >= WAIT_LOG_EVERY:
            last_log = loop.time()
            log.warning("node %s has no podCIDR after %.0fs: %s", node, last_log - started,
                        await _why(api, node) or "is the control plane's leader running?")
        await asyncio.sleep(poll)


async def _why(api: ApiClient, node: str) -> str:
    """The last Warning Event on the Node (e.g. ``0 free /24s in 10.42.0.0/16``), if any."""
    try:
        events, _ = await api.list(Event, namespace=None)
    except errors.CorralError:
        return ""
    mine = [e for e in events if e.spec.involved_object.kind == Node.KIND and e.spec.involved_object.name == node
            and e.spec.type == "Warning"]
    return max(mine, key=lambda e: e.spec.last_timestamp).spec.message if mine else ""
