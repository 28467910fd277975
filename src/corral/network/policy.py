"""NetworkPolicy as nftables: the ``policy`` part of the agent's table, rendered from plain objects.

``render_policy(policies, containers, namespaces, node=…)`` is pure: it takes the cluster's
NetworkPolicies, Containers (labels, IP, node, named ports) and Namespaces (labels) and returns the
``NftPart`` that enforces them on ``node``, with Kubernetes' semantics:

- A container that no policy selects accepts and sends everything. Once some policy selects it for
  ingress (egress), only what some such policy allows gets in (out); policies add up, never subtract.
- Ingress is enforced for the containers on this node, egress for the containers on this node; a
  packet between two nodes passes the sender's egress check on its node and the receiver's ingress
  check on the other.
- Replies to allowed connections pass: ``ct state established,related accept`` comes first.
- Traffic between a container and its own node (probes, the node's DNS) is not filtered, as in most
  Kubernetes network plugins: it does not cross the ``forward`` hook.

**Sets, not rules per container.** Every selection is a named set whose elements are addresses:
``policy_<p>_sel`` (this node's containers that policy *p* selects; *p* is a short hash of the
policy's namespace and name, ``policy_key``, so one policy's sets keep their names when others come
and go), ``policy_<p>_in<j>_peers`` / ``policy_<p>_out<j>_peers`` (the addresses rule *j* admits: the
peer containers' IPs — and, for a rule with ``ipBlock``s, their ranges minus the ``except``s, merged
into one interval set), ``…_ports`` (protocol . port or port range) and ``…_named`` (container IP .
protocol . port, for ports given by name, resolved per container as Kubernetes does). The rules
depend only on the policies' shape, so a container coming or going changes set elements and never
the rule list; a policy's rules exist even while it selects nothing here, so the rule count does not
move with containers either.

**Updates.** ``delta_commands(old, new)`` turns one render into the next in the kernel without
reloading the table: changed chains are flushed and refilled, sets added or deleted, elements added
or deleted — so a container's arrival costs its few elements, a policy's change its own rules and
sets, and the table's other parts (the service proxy's) are not touched.

The chains: the base chain ``policy_forward`` (hook ``forward``) sends packets from egress-isolated
sources to ``policy_egress`` and packets to ingress-isolated destinations to ``policy_ingress``. An
egress rule that allows ``return``s (the packet must still pass the receiver's ingress check on this
same node); an ingress rule ``accept``s; both chains end in ``drop``.

**Same-node traffic.** Two containers on one Linux bridge talk at layer 2: their packets are bridged
and never reach the ``inet`` forward hook — unless ``br_netfilter`` is loaded and
``net.bridge.bridge-nf-call-iptables`` is 1 (a per-network-namespace setting), in which case the
kernel runs the IPv4 hooks for bridged packets too, with the bridge as both input and output device.
corral uses that (``ensure_bridge_filtering``) rather than a second, ``bridge``-family table: the
design keeps every rule of a node in one ``inet`` table replaced atomically, the same chains then
cover same-node, cross-node and host-port traffic alike, and conntrack (for the replies) already
runs there. It is what Kubernetes' own network plugins require of a node, too.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from corral.model.errors import CorralError
from corral.model.names import Selector
from corral.model.networkpolicy import effective_types, selector_of
from corral.model.resources import (
    Container,
    Namespace,
    NetworkPolicy,
    NetworkPolicyPeer,
    NetworkPolicyPort,
)
from corral.network.nftables import NftPart

PART = "policy"
#: every namespace carries its own name as this label (Kubernetes' ``kubernetes.io/metadata.name``)
NAMESPACE_NAME_LABEL = "corral.io/metadata.name"
_FINISHED = ("Succeeded", "Failed")


@dataclass(frozen=True, slots=True)
class RenderedPolicy:
    """The part and its size: ``rules`` and ``sets`` depend on policies only, ``elements`` on containers.

    ``skeleton`` is the part without its sets' elements; ``set_elements``, ``set_types`` and
    ``chains`` are its pieces, from which ``delta_commands`` works out what to change in the kernel
    to go from one render to the next without loading the whole table."""

    part: NftPart
    rules: int
    sets: int
    elements: int
    skeleton: str
    set_elements: dict[str, tuple[str, ...]]
    set_types: dict[str, str]  # set name -> its declaration's body without elements
    chains: dict[str, tuple[str, ...]]  # chain name -> its rules (the base chain's hook line not included)


@dataclass(frozen=True, slots=True)
class _Member:
    """A container as policy sees it (its address as an integer: ranges are cheap to merge)."""

    namespace: str
    labels: dict[str, str]
    ip: int
    node: str
    ports: tuple[tuple[str, str, int], ...]  # (name, protocol, number) of its named ports


Range = tuple[int, int]  # first and last address, inclusive


class _Writer:
    def __init__(self) -> None:
        self.sets: list[tuple[str, str]] = []  # (declaration without elements, elements)
        self.set_elements: dict[str, tuple[str, ...]] = {}
        self.set_types: dict[str, str] = {}
        self.rules: dict[str, list[str]] = {"forward": [], "egress": [], "ingress": []}
        self.elements = 0

    def set(self, name: str, type_: str, elements: Sequence[str], *, interval: bool = False) -> str:
        flags = " flags interval;" if interval else ""
        body = f" elements = {{ {', '.join(elements)} }}" if elements else ""
        self.sets.append((f"set {name} {{ type {type_};{flags} }}", f"set {name} {{ type {type_};{flags}{body} }}"))
        self.set_elements[name] = tuple(elements)
        self.set_types[name] = f"type {type_};{flags}"
        self.elements += len(elements)
        return f"@{name}"

    def text(self, *, elements: bool = True) -> str:
        lines = [full if elements else bare for bare, full in self.sets]
        lines += ["chain policy_forward {",
                  "\ttype filter hook forward priority filter; policy accept;",
                  *("\t" + r for r in self.rules["forward"]), "}"]
        for chain in ("egress", "ingress"):
            lines += [f"chain policy_{chain} {{", *("\t" + r for r in self.rules[chain]), "}"]
        return "\n".join(lines) + "\n"

    @property
    def rule_count(self) -> int:
        return sum(len(r) for r in self.rules.values())


def element_changes(old: RenderedPolicy, new: RenderedPolicy) -> dict[str, tuple[list[str], list[str]]]:
    """Per set whose elements differ: (elements to delete, elements to add) to go from ``old`` to ``new``."""
    changes = {}
    for name, items in new.set_elements.items():
        before = old.set_elements.get(name, ())
        if before != items:
            gone, kept = set(before) - set(items), set(items) - set(before)
            changes[name] = ([e for e in before if e in gone], [e for e in items if e in kept])
    return changes


def _members(containers: Iterable[Container]) -> list[_Member]:
    out = []
    for c in containers:
        if not c.status.ip or c.status.phase in _FINISHED:
            continue
        try:
            ip = int(ipaddress.IPv4Address(c.status.ip))
        except ValueError:
            continue  # not IPv4: nothing here enforces it
        ports = tuple((p.name, p.protocol, p.container_port) for p in c.spec.ports if p.name)
        out.append(_Member(c.metadata.namespace, c.metadata.labels, ip, c.spec.node or c.status.node, ports))
    return out


def _range(cidr: str) -> Range:
    net = ipaddress.IPv4Network(cidr)
    return int(net.network_address), int(net.broadcast_address)


def _block(cidr: str, excepted: Sequence[str]) -> list[Range]:
    """``cidr`` minus every ``except`` range, as disjoint ranges."""
    ranges = [_range(cidr)]
    for text in excepted:
        lo, hi = _range(text)
        kept: list[Range] = []
        for first, last in ranges:
            if last < lo or first > hi:
                kept.append((first, last))
                continue
            if first < lo:
                kept.append((first, lo - 1))
            if last > hi:
                kept.append((hi + 1, last))
        ranges = kept
    return ranges


def _address(value: int) -> str:
    return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"


def _format(ranges: Iterable[Range]) -> list[str]:
    """Interval-set elements: the ranges merged where they overlap or touch, in order."""
    merged: list[list[int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return [_address(a) if a == b else f"{_address(a)}-{_address(b)}" for a, b in merged]


def _ips(members: Iterable[_Member]) -> list[str]:
    return [_address(ip) for ip in sorted({m.ip for m in members})]


class _Cluster:
    """The containers and namespaces a render looks at, with the peer lookups it needs."""

    def __init__(self, members: list[_Member], namespaces: Iterable[Namespace]) -> None:
        self.members = members
        self.by_namespace: dict[str, list[_Member]] = {}
        for m in members:
            self.by_namespace.setdefault(m.namespace, []).append(m)
        self.namespace_labels = {ns.metadata.name: {**ns.metadata.labels, NAMESPACE_NAME_LABEL: ns.metadata.name}
                                 for ns in namespaces}
        self._peers: dict[tuple[Selector, tuple[str, ...]], list[_Member]] = {}
        for name in self.by_namespace:  # a container's namespace is always there, listed or not
            self.namespace_labels.setdefault(name, {NAMESPACE_NAME_LABEL: name})

    def peer_members(self, peer: NetworkPolicyPeer, namespace: str) -> list[_Member]:
        if peer.namespace_selector is not None:
            ns_sel = selector_of(peer.namespace_selector)
            spaces = [n for n, labels in self.namespace_labels.items() if ns_sel.matches(labels)]
        else:
            spaces = [namespace]
        pod_sel = selector_of(peer.pod_selector) if peer.pod_selector is not None else Selector()
        key = (pod_sel, tuple(spaces))  # policies often name the same peers: match them once a render
        found = self._peers.get(key)
        if found is None:
            found = self._peers[key] = [m for n in spaces for m in self.by_namespace.get(n, ())
                                        if pod_sel.matches(m.labels)]
        return found


def _rule_clauses(w: _Writer, prefix: str, *, peers: Sequence[NetworkPolicyPeer], ports: Sequence[NetworkPolicyPort],
                  cluster: _Cluster, namespace: str, peer_field: str, named_from: list[_Member] | None) -> list[str]:
    """The match clauses of one rule (one per way it can match: numbered ports, named ports).

    ``named_from`` are the containers a port name is resolved on: the selected ones (ingress) or, when
    None, the rule's peer containers (egress)."""
    peer_clause = ""
    peer_members: list[_Member] = list(cluster.members)
    if peers:
        ranges: list[Range] = []
        peer_members = []
        for peer in peers:
            if peer.ip_block is not None:
                ranges.extend(_block(peer.ip_block.cidr, peer.ip_block.except_))
            else:
                found = cluster.peer_members(peer, namespace)
                peer_members.extend(found)
                ranges.extend((m.ip, m.ip) for m in found)
        if any(peer.ip_block is not None for peer in peers):
            ref = w.set(f"{prefix}_peers", "ipv4_addr", _format(ranges), interval=True)
        else:  # addresses alone: a plain set, which nft updates without reading all its elements first
            ref = w.set(f"{prefix}_peers", "ipv4_addr", _ips(peer_members))
        peer_clause = f"ip {peer_field} {ref} "
    if not ports:
        return [peer_clause]
    numbered = []
    named: set[str] = set()
    for p in ports:
        proto = p.protocol.lower()
        if p.port is None:
            numbered.append(f"{proto} . 0-65535")
        elif isinstance(p.port, int):
            numbered.append(f"{proto} . {p.port}" + (f"-{p.end_port}" if p.end_port else ""))
        else:
            on = named_from if named_from is not None else peer_members
            named.update(f"{_address(m.ip)} . {proto} . {number}"
                         for m in on for name, protocol, number in m.ports if name == p.port and protocol == proto)
    clauses = []
    if numbered:
        ref = w.set(f"{prefix}_ports", "inet_proto . inet_service", sorted(set(numbered)), interval=True)
        clauses.append(f"{peer_clause}meta l4proto . th dport {ref} ")
    if any(isinstance(p.port, str) for p in ports):
        ref = w.set(f"{prefix}_named", "ipv4_addr . inet_proto . inet_service", sorted(named))
        clauses.append(f"{peer_clause}ip daddr . meta l4proto . th dport {ref} ")
    return clauses


def render_policy(policies: Iterable[NetworkPolicy], containers: Iterable[Container],
                  namespaces: Iterable[Namespace], *, node: str) -> RenderedPolicy:
    """The ``policy`` part enforcing ``policies`` for the containers on ``node`` (see the module doc)."""
    cluster = _Cluster(_members(containers), namespaces)
    local_by_namespace: dict[str, list[_Member]] = {}
    for m in cluster.members:
        if m.node == node:
            local_by_namespace.setdefault(m.namespace, []).append(m)
    w = _Writer()
    isolated_in: list[_Member] = []
    isolated_out: list[_Member] = []
    ordered = sorted(policies, key=lambda p: (p.metadata.namespace, p.metadata.name))
    for pol in ordered:
        ns = pol.metadata.namespace
        i = policy_key(ns, pol.metadata.name)
        ingress, egress = effective_types(pol)
        pod_sel = selector_of(pol.spec.pod_selector)
        selected = [m for m in local_by_namespace.get(ns, ()) if pod_sel.matches(m.labels)]
        sel = w.set(f"policy_{i}_sel", "ipv4_addr", _ips(selected))
        if ingress:
            isolated_in.extend(selected)
            for j, rule in enumerate(pol.spec.ingress):
                for clause in _rule_clauses(w, f"policy_{i}_in{j}", peers=rule.from_, ports=rule.ports,
                                            cluster=cluster, namespace=ns, peer_field="saddr", named_from=selected):
                    w.rules["ingress"].append(f"ip daddr {sel} {clause}accept")
        if egress:
            isolated_out.extend(selected)
            for j, erule in enumerate(pol.spec.egress):
                for clause in _rule_clauses(w, f"policy_{i}_out{j}", peers=erule.to, ports=erule.ports,
                                            cluster=cluster, namespace=ns, peer_field="daddr", named_from=None):
                    w.rules["egress"].append(f"ip saddr {sel} {clause}return")
    into = w.set("policy_ingress_isolated", "ipv4_addr", _ips(isolated_in))
    out = w.set("policy_egress_isolated", "ipv4_addr", _ips(isolated_out))
    w.rules["forward"] += ["ct state established,related accept",
                           f"ip saddr {out} jump policy_egress",
                           f"ip daddr {into} jump policy_ingress"]
    w.rules["egress"].append("drop")
    w.rules["ingress"].append("drop")
    return RenderedPolicy(NftPart(PART, w.text()), rules=w.rule_count, sets=len(w.sets), elements=w.elements,
                          skeleton=w.text(elements=False), set_elements=w.set_elements, set_types=w.set_types,
                          chains={f"policy_{c}": tuple(r) for c, r in w.rules.items()})


def policy_key(namespace: str, name: str) -> str:
    """A policy's own short name in set names: stable, so one policy's change leaves the others' sets be."""
    return hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:10]


def delta_commands(old: RenderedPolicy, new: RenderedPolicy, *, family: str, table: str) -> list[str]:
    """The nft commands that turn the kernel's ``old`` policy part into ``new`` and touch nothing else.

    Chains whose rules changed are flushed and refilled; sets that went are deleted (after the flush:
    rules refer to them), new sets are added with their elements, and sets in both change by element
    (delete what left, add what came). A set whose type changed is deleted and added again, with every
    chain flushed first. One ``nft -f`` transaction of these is atomic, and leaves every other part of
    the table — and every set the kernel fills itself, such as the service proxy's affinity — alone."""
    at = f"{family} {table}"
    retyped = {n for n, t in new.set_types.items() if n in old.set_types and old.set_types[n] != t}
    gone = [n for n in old.set_types if n not in new.set_types] + sorted(retyped)
    came = [n for n in new.set_types if n not in old.set_types or n in retyped]
    changed_chains = [c for c, rules in new.chains.items() if retyped or gone or old.chains.get(c) != rules]
    lines = [f"flush chain {at} {c}" for c in changed_chains]
    lines += [f"delete set {at} {n}" for n in gone]
    for n in came:
        items = new.set_elements[n]
        body = f" elements = {{ {', '.join(items)} }}" if items else ""
        lines.append(f"add set {at} {n} {{ {new.set_types[n]}{body} }}")
    for n, items in new.set_elements.items():
        if n in came or old.set_elements.get(n) == items:
            continue
        before = old.set_elements.get(n, ())
        left, joined = set(before) - set(items), set(items) - set(before)
        if left:
            lines.append(f"delete element {at} {n} {{ {', '.join(e for e in before if e in left)} }}")
        if joined:
            lines.append(f"add element {at} {n} {{ {', '.join(e for e in items if e in joined)} }}")
    for c in changed_chains:
        lines += [f"add rule {at} {c} {rule}" for rule in new.chains[c]]
    return lines


# --- the kernel setting it relies on ---------------------------------------------------------

BRIDGE_NF_CALL = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")


async def ensure_bridge_filtering() -> None:
    """Make bridged IPv4 packets pass the inet hooks in this network namespace (see the module doc).

    Loads ``br_netfilter`` when its sysctl is missing, then sets it to 1; a CorralError says what to do
    when neither works (same-node traffic would then bypass every policy)."""
    if not await asyncio.to_thread(BRIDGE_NF_CALL.exists):
        proc = await asyncio.create_subprocess_exec("modprobe", "br_netfilter", stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.DEVNULL)
        await proc.wait()
    try:
        if (await asyncio.to_thread(BRIDGE_NF_CALL.read_text)).strip() != "1":
            await asyncio.to_thread(BRIDGE_NF_CALL.write_text, "1\n")
    except OSError as e:
        raise CorralError(f"network policy cannot see traffic between containers on one bridge: {e}; "
                          "load the br_netfilter module (modprobe br_netfilter) and set "
                          "net.bridge.bridge-nf-call-iptables=1") from e
