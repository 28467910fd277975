"""The loopback guard: containers must not reach the node's 127.0.0.0/8 services through the bridge.

portmap's ``snat`` (which makes a host port answer on 127.0.0.1) sets ``route_localnet`` on the
container bridge, so the kernel accepts packets arriving on the bridge for 127.0.0.0/8: a container
that routes 127.0.0.1 via its gateway would reach etcd, containerd's debug port or anything else
listening on the node's loopback (Kubernetes' CVE-2020-8558). The guard drops, at the ``input`` hook,
every packet that comes in on the bridge for 127.0.0.0/8 and is not part of a connection the node
itself opened: the replies of a host-port connection made to 127.0.0.1 on the node (portmap DNATs it
to the container and masquerades it; the reply is un-NATed back to 127.0.0.1 before ``input``) are
``established`` and pass; a container's own new connection is dropped. It is the ``loopback`` part of
the agent's one table, independent of network policy.
"""

from __future__ import annotations

from corral.network.nftables import NftPart

PART = "loopback"


def render_loopback_guard(bridge: str) -> NftPart:
    return NftPart(PART, "\n".join([
        "chain loopback_input {",
        "\ttype filter hook input priority filter; policy accept;",
        f'\tiifname "{bridge}" ip daddr 127.0.0.0/8 ct state != {{ established, related }} drop',
        "}",
    ]) + "\n")
