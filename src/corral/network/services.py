"""The service proxy's nftables rules, rendered from Services and their Endpoints (pure).

``render_services`` turns what the agent knows into the ``svc`` part of the agent's one table
(``network/nftables.py``), shaped like Kubernetes' nftables proxy (KEP-3866): lookups in maps, not
a rule per service.

- ``svc_vips`` maps ``cluster IP . protocol . port`` to a verdict: ``goto`` the service port's chain.
  ``svc_nodeports`` maps ``protocol . node port`` the same way; it is consulted for packets to any
  of the node's own addresses (``fib daddr type local``).
- Spreading is one map for the whole node: ``svc_backends`` maps ``cluster IP . protocol . port .
  slot`` to an endpoint's ``ip . port``, slots 0..N-1 for a service port with N ready endpoints.
  ``svc_vips`` sends a service port to ``svc_pick_<N>`` — one chain per endpoint count in use, not
  per service — whose one rule is ``dnat ip to ip daddr . meta l4proto . th dport . numgen random
  mod N map @svc_backends``: an even pick among the N. The kernel loads a table of 1,000 services x
  10 endpoints as a few chains and one 10,000-element map, not thousands of chains (which took
  0.5 s a load here). A node port's chain (``svc_n_<hash>``) marks the packet and picks with an
  anonymous ``numgen random mod N map`` (its destination is the node's address, not the cluster IP).
- With ``sessionAffinity: ClientIP`` a service port has its own chain (``svc_s_<hash>``) that first
  sends a client whose address is remembered in an endpoint's dynamic set (``svc_a_<hash>_<i>``,
  entries expire after ``AFFINITY_SECONDS``) to that endpoint's chain (``svc_e_<hash>_<i>``), which
  refreshes the entry as it DNATs; new clients are spread with ``numgen random mod N vmap``.
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
from collections.abc import Callable, Iterable, Mapping
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
    node: str = ""


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
                out.append(Backend(addr.ip, p.port, addr.node))
                break
    return sorted(set(out), key=lambda b: (tuple(int(x) for x in b.ip.split(".")), b.port))


@dataclass(frozen=True, slots=True)
class ServiceRules:
    """The ``svc`` part as data: the elements of its sets and maps, and the declarations (chains and
    affinity sets) that element changes cannot express. ``part()`` is its text."""

    elements: Mapping[str, Mapping[str, str | None]]  # set or map name -> key -> value (None in a set)
    decls: tuple[str, ...]

    def part(self) -> NftPart:
        def items(name: str) -> list[str]:
            return [k if v is None else f"{k} : {v}" for k, v in self.elements.get(name, {}).items()]

        return NftPart(PART, _assemble(items, list(self.decls)))


def render_services(services: Iterable[Service], endpoints: Mapping[tuple[str, str], Endpoints], *,
                    node: str = "") -> NftPart:
    """The ``svc`` part for ``services`` (see ``service_rules``)."""
    return service_rules(services, endpoints, node=node).part()


def service_rules(services: Iterable[Service], endpoints: Mapping[tuple[str, str], Endpoints], *,
                  node: str = "") -> ServiceRules:
    """The rules for ``services``; hairpin pairs only for endpoints on ``node`` (all when it is empty):
    a container can only reach itself through the node it runs on."""
    vips: dict[str, str | None] = {}
    nodeports: dict[str, str | None] = {}
    noep: dict[str, str | None] = {}
    noep_nodeports: dict[str, str | None] = {}
    spread: dict[str, str | None] = {}  # svc_backends
    hairpin: set[str] = set()
    chains: list[str] = []
    sets: list[str] = []
    counts: set[int] = set()  # endpoint counts with a svc_pick_<N> chain
    for svc in sorted(services, key=lambda s: (s.metadata.namespace, s.metadata.name)):
        ip = svc.spec.cluster_ip
        if not ip or ip == HEADLESS:
            continue
        ep = endpoints.get((svc.metadata.namespace, svc.metadata.name))
        affinity = svc.spec.session_affinity == "ClientIP"
        for port in svc.spec.ports:
            proto = port.protocol.lower()
            backends = backends_for(port, ep)
            vip = f"{ip} . {proto} . {port.port}"
            if not backends:
                noep[vip] = None
                if port.node_port:
                    noep_nodeports[f"{proto} . {port.node_port}"] = None
                continue
            h = _hash(svc.metadata.namespace, svc.metadata.name, port.name, str(port.port), port.protocol)
            chain = f"svc_s_{h}"
            n = len(backends)
            hairpin.update(f"{b.ip} . {b.ip}" for b in backends if not node or b.node == node)
            mark = f"meta mark set meta mark | {MASQ_MARK:#x}"
            if not affinity:
                counts.add(n)
                vips[vip] = f"goto svc_pick_{n}"
                for i, b in enumerate(backends):
                    spread[f"{vip} . {i}"] = f"{b.ip} . {b.port}"
                if port.node_port:
                    targets = ", ".join(f"{i} : {b.ip} . {b.port}" for i, b in enumerate(backends))
                    nodeports[f"{proto} . {port.node_port}"] = f"goto svc_n_{h}"
                    chains.append(f"chain svc_n_{h} {{\n\t{mark}\n\tmeta l4proto {proto} dnat ip to numgen random "
                                  f"mod {n} map {{ {targets} }}\n}}")
                continue
            vips[vip] = f"goto {chain}"
            if port.node_port:
                nodeports[f"{proto} . {port.node_port}"] = f"goto svc_n_{h}"
                chains.append(f"chain svc_n_{h} {{\n\t{mark}\n\tgoto {chain}\n}}")
            body = []
            picks = []
            for i, b in enumerate(backends):
                ep_chain, aset = f"svc_e_{h}_{i}", f"svc_a_{h}_{i}"
                sets.append(f"set {aset} {{\n\ttype ipv4_addr\n\tflags dynamic,timeout\n\ttimeout {AFFINITY_SECONDS}s\n}}")
                body.append(f"ip saddr @{aset} goto {ep_chain}")
                chains.append(f"chain {ep_chain} {{\n\tupdate @{aset} {{ ip saddr }}\n"
                              f"\tmeta l4proto {proto} dnat ip to {b.ip}:{b.port}\n}}")
                picks.append(f"{i} : goto {ep_chain}")
            body.append(f"numgen random mod {n} vmap {{ {', '.join(picks)} }}")
            chains.append(f"chain {chain} {{\n" + "".join(f"\t{ln}\n" for ln in body) + "}")
    for n in sorted(counts):
        chains.append(f"chain svc_pick_{n} {{\n\tmeta l4proto {{ tcp, udp }} dnat ip to ip daddr . meta l4proto . "
                      f"th dport . numgen random mod {n} map @svc_backends\n}}")
    elements: dict[str, Mapping[str, str | None]] = {
        "svc_vips": vips, "svc_nodeports": nodeports, "svc_noep": noep, "svc_noep_nodeports": noep_nodeports,
        "svc_hairpin": dict.fromkeys(sorted(hairpin)), "svc_backends": spread,
    }
    return ServiceRules(elements=elements, decls=(*sets, *chains))


def rules_delta(old: ServiceRules, new: ServiceRules) -> dict[str, tuple[list[str], list[str]]] | None:
    """The element changes that turn a loaded ``old`` into ``new``: per set or map, (elements to
    delete, elements to add) — what ``NftTable.update_sets`` loads in one transaction. None when
    declarations differ (a chain or set came or went): the whole table must be loaded again. Empty
    when nothing changed. A map element whose value changed is deleted and added again."""
    if old.decls != new.decls:
        return None
    changes: dict[str, tuple[list[str], list[str]]] = {}
    for name, want in new.elements.items():
        have = old.elements.get(name, {})
        gone = [k for k, v in have.items() if k not in want or want[k] != v]
        added = [k if v is None else f"{k} : {v}" for k, v in want.items() if k not in have or have[k] != v]
        if gone or added:
            changes[name] = (gone, added)
    return changes


def _elements(items: list[str]) -> str:
    return f"\telements = {{ {', '.join(items)} }}\n" if items else ""


def _assemble(items: Callable[[str], list[str]], decls: list[str]) -> str:
    out = [
        "map svc_vips {\n\ttype ipv4_addr . inet_proto . inet_service : verdict\n" + _elements(items("svc_vips")) + "}",
        "map svc_nodeports {\n\ttype inet_proto . inet_service : verdict\n" + _elements(items("svc_nodeports")) + "}",
        "set svc_noep {\n\ttype ipv4_addr . inet_proto . inet_service\n" + _elements(items("svc_noep")) + "}",
        "set svc_noep_nodeports {\n\ttype inet_proto . inet_service\n" + _elements(items("svc_noep_nodeports")) + "}",
        "set svc_hairpin {\n\ttype ipv4_addr . ipv4_addr\n" + _elements(items("svc_hairpin")) + "}",
        "map svc_backends {\n\ttypeof ip daddr . meta l4proto . th dport . numgen random mod 2 : ip daddr . th dport\n"
        + _elements(items("svc_backends")) + "}",
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
        *decls,
    ]
    return "\n".join(out) + "\n"
