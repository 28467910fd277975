"""The service proxy's nftables rules, rendered from Services and their Endpoints (pure).

``render_services`` turns what the agent knows into the ``svc`` part of the agent's one table
(``network/nftables.py``), shaped like Kubernetes' nftables proxy (KEP-3866): lookups in maps, not
a rule per service.

- ``svc_vips`` maps ``cluster IP . protocol . port`` to a verdict: ``goto`` the service port's chain.
  ``svc_nodeports`` maps ``protocol . node port`` the same way; it is consulted for packets to any
  of the node's own addresses (``fib daddr type local``).
- A service port's chain (``svc_s_<hash>``) spreads new connections evenly over its ready
  endpoints with one rule, ``dnat ip to numgen random mod N map { 0 : ip . port, … }``: one chain
  and one rule per service port, however many endpoints (the table for 1,000 services x 10
  endpoints stays small enough to load in well under a second). With ``sessionAffinity: ClientIP``
  the chain instead first sends a client whose address is remembered in an endpoint's dynamic set
  (``svc_a_<hash>_<i>``, entries expire after ``AFFINITY_SECONDS``) to that endpoint's chain
  (``svc_e_<hash>_<i>``), which refreshes the entry as it DNATs; new clients are spread with
  ``numgen random mod N vmap``.
- ``svc_postrouting`` masquerades hairpin connections — an endpoint reaching its own service; its
  address pairs ``ip . ip`` are in ``svc_hairpin`` and DNAT'd traffic whose source and destination
  make such a pair is masqueraded, so the reply comes back through the node — and what is marked
  (``MASQ_MARK``): node-port traffic, which may come from the node's own loopback or another host
  and must come back the way it went.
- A service port with no ready endpoint gets no DNAT; its ``cluster IP . protocol . port`` (and
  node port) are in ``svc_noep`` / ``svc_noep_nodeports``, which filter chains on ``forward``,
  ``output`` and ``input`` reject — a TCP reset, an ICMP port-unreachable for UDP — so a client is
  refused at once instead of waiting for a timeout.

The NAT base chains hook ``prerouting`` (traffic from containers and other hosts) and ``output``
(traffic from the node itself) at ``dstnat`` priority. Chain and set names derive from the service
and port, so re-rendering the same state gives the same text (the table is not reloaded when
nothing changed), and a restarted agent renders exactly what it had.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from corral.model.resources import HEADLESS, Endpoints, Service, ServicePort
from corral.network.nftables import NftPart

PART = "svc"
MASQ_MARK = 0x4000
AFFINITY_SECONDS = 10800  # Kubernetes' default sessionAffinityConfig.clientIP.timeoutSeconds


@dataclass(frozen=True, slots=True)
class Backend:
    ip: str
    port: int


def _hash(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:12]


def backends_for(port: ServicePort, ep: Endpoints | None) -> list[Backend]:
    """The ready endpoints a service port reaches, in a stable order."""
    if ep is None:
        return []
    out = []
    for addr in ep.spec.addresses:
        for p in addr.ports:
            if p.name == port.name and p.protocol == port.protocol:
                out.append(Backend(addr.ip, p.port))
                break
    return sorted(set(out), key=lambda b: (tuple(int(x) for x in b.ip.split(".")), b.port))


def render_services(services: Iterable[Service], endpoints: Mapping[tuple[str, str], Endpoints]) -> NftPart:
    vips: list[str] = []
    nodeports: list[str] = []
    noep: list[str] = []
    noep_nodeports: list[str] = []
    chains: list[str] = []
    sets: list[str] = []
    hairpin: set[str] = set()
    for svc in sorted(services, key=lambda s: (s.metadata.namespace, s.metadata.name)):
        ip = svc.spec.cluster_ip
        if not ip or ip == HEADLESS:
            continue
        ep = endpoints.get((svc.metadata.namespace, svc.metadata.name))
        affinity = svc.spec.session_affinity == "ClientIP"
        for port in svc.spec.ports:
            proto = port.protocol.lower()
            backends = backends_for(port, ep)
            if not backends:
                noep.append(f"{ip} . {proto} . {port.port}")
                if port.node_port:
                    noep_nodeports.append(f"{proto} . {port.node_port}")
                continue
            h = _hash(svc.metadata.namespace, svc.metadata.name, port.name, str(port.port), port.protocol)
            chain = f"svc_s_{h}"
            vips.append(f"{ip} . {proto} . {port.port} : goto {chain}")
            if port.node_port:
                nodeports.append(f"{proto} . {port.node_port} : goto svc_n_{h}")
                chains.append(f"chain svc_n_{h} {{\n\tmeta mark set meta mark | {MASQ_MARK:#x}\n\tgoto {chain}\n}}")
            hairpin.update(f"{b.ip} . {b.ip}" for b in backends)
            if not affinity:
                targets = ", ".join(f"{i} : {b.ip} . {b.port}" for i, b in enumerate(backends))
                chains.append(f"chain {chain} {{\n\tmeta l4proto {proto} dnat ip to numgen random mod {len(backends)} "
                              f"map {{ {targets} }}\n}}")
                continue
            body = []
            picks = []
            for i, b in enumerate(backends):
                ep_chain, aset = f"svc_e_{h}_{i}", f"svc_a_{h}_{i}"
                sets.append(f"set {aset} {{\n\ttype ipv4_addr\n\tflags dynamic,timeout\n\ttimeout {AFFINITY_SECONDS}s\n}}")
                body.append(f"ip saddr @{aset} goto {ep_chain}")
                chains.append(f"chain {ep_chain} {{\n\tupdate @{aset} {{ ip saddr }}\n"
                              f"\tmeta l4proto {proto} dnat ip to {b.ip}:{b.port}\n}}")
                picks.append(f"{i} : goto {ep_chain}")
            body.append(f"numgen random mod {len(backends)} vmap {{ {', '.join(picks)} }}")
            chains.append(f"chain {chain} {{\n" + "".join(f"\t{ln}\n" for ln in body) + "}")
    return NftPart(PART, _assemble(vips, nodeports, noep, noep_nodeports, sorted(hairpin), sets, chains))


def _elements(items: list[str]) -> str:
    return f"\telements = {{ {', '.join(items)} }}\n" if items else ""


def _assemble(vips: list[str], nodeports: list[str], noep: list[str], noep_nodeports: list[str],
              hairpin: list[str], sets: list[str], chains: list[str]) -> str:
    out = [
        "map svc_vips {\n\ttype ipv4_addr . inet_proto . inet_service : verdict\n" + _elements(vips) + "}",
        "map svc_nodeports {\n\ttype inet_proto . inet_service : verdict\n" + _elements(nodeports) + "}",
        "set svc_noep {\n\ttype ipv4_addr . inet_proto . inet_service\n" + _elements(noep) + "}",
        "set svc_noep_nodeports {\n\ttype inet_proto . inet_service\n" + _elements(noep_nodeports) + "}",
        "set svc_hairpin {\n\ttype ipv4_addr . ipv4_addr\n" + _elements(hairpin) + "}",
        *sets,
        "chain svc_services {\n"
        "\tip daddr . meta l4proto . th dport vmap @svc_vips\n"
        "\tfib daddr type local meta l4proto . th dport vmap @svc_nodeports\n"
        "}",
        "chain svc_prerouting {\n\ttype nat hook prerouting priority dstnat; policy accept;\n\tjump svc_services\n}",
        "chain svc_output {\n\ttype nat hook output priority -100; policy accept;\n\tjump svc_services\n}",
        "chain svc_postrouting {\n\ttype nat hook postrouting priority srcnat; policy accept;\n"
        f"\tmeta mark & {MASQ_MARK:#x} == {MASQ_MARK:#x} masquerade\n"
        "\tct status dnat ip saddr . ip daddr @svc_hairpin masquerade\n}",
        "chain svc_reject {\n"
        "\tmeta l4proto tcp reject with tcp reset\n"
        "\treject\n"
        "}",
        "chain svc_filter_forward {\n\ttype filter hook forward priority filter - 10; policy accept;\n"
        "\tct state new ip daddr . meta l4proto . th dport @svc_noep goto svc_reject\n}",
        "chain svc_filter_output {\n\ttype filter hook output priority filter - 10; policy accept;\n"
        "\tct state new ip daddr . meta l4proto . th dport @svc_noep goto svc_reject\n}",
        "chain svc_filter_input {\n\ttype filter hook input priority filter - 10; policy accept;\n"
        "\tct state new fib daddr type local meta l4proto . th dport @svc_noep_nodeports goto svc_reject\n}",
        *chains,
    ]
    return "\n".join(out) + "\n"
