"""NetworkPolicy's meaning: its defaults, its validation, and label selectors as matchers.

The object has Kubernetes' shape (``spec.podSelector``, ``spec.policyTypes``, ``spec.ingress[].from[]``,
``spec.egress[].to[]``, ``ports[]``), and the same defaults: with no ``policyTypes`` given, a policy is
an ``Ingress`` policy, and an ``Egress`` one too if it has egress rules (``apply_defaults``, run by
``validation.validate`` before the checks, so the stored object says what is enforced).

``validate_network_policy`` names every bad field in one answer: selectors (keys, values, operators),
peers that are empty or mix an ``ipBlock`` with selectors, CIDRs that do not parse or have host bits
set, ``except`` entries outside their ``cidr``, ports out of range or badly named, ``endPort`` without
a numeric ``port`` or below it, and rules given for a direction ``policyTypes`` does not list (they
would be ignored, and an accepted field is honoured or refused). Only IPv4 is enforced (the node's
container networks are IPv4), so an IPv6 ``cidr`` is refused rather than silently ignored.

``selector_of`` turns a ``LabelSelector`` (``matchLabels`` and ``matchExpressions``) into the
``names.Selector`` matcher the rest of the code uses.
"""

from __future__ import annotations

import ipaddress
import re

from corral.model import names
from corral.model.errors import FieldError
from corral.model.resources import (
    LabelSelector,
    NetworkPolicy,
    NetworkPolicyPeer,
    NetworkPolicyPort,
)

_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}
_PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def selector_of(selector: LabelSelector) -> names.Selector:
    """A matcher for ``selector``: every matchLabels pair and every matchExpression must hold."""
    reqs = [names.Requirement(k, "=", (v,)) for k, v in sorted(selector.match_labels.items())]
    reqs += [names.Requirement(e.key, _OPERATORS[e.operator], tuple(e.values)) for e in selector.match_expressions]
    return names.Selector(tuple(reqs))


def effective_types(policy: NetworkPolicy) -> tuple[bool, bool]:
    """(isolates ingress, isolates egress) — with Kubernetes' default when policyTypes is empty."""
    types = policy.spec.policy_types
    if not types:
        return True, bool(policy.spec.egress)
    return "Ingress" in types, "Egress" in types


def apply_defaults(policy: NetworkPolicy) -> None:
    """Fill ``spec.policyTypes`` as Kubernetes does: Ingress always, Egress if egress rules are given."""
    if not policy.spec.policy_types:
        ingress, egress = effective_types(policy)
        policy.spec.policy_types = [t for t, on in (("Ingress", ingress), ("Egress", egress)) if on]  # type: ignore[misc]


def port_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a port (an IANA service name: ≤15 of a-z, 0-9, '-', with a letter)."""
    if (len(name) > 15 or not _PORT_NAME.match(name) or "--" in name
            or not any(c.isalpha() for c in name)):
        return (f"{name!r} is neither a port number nor a port name (up to 15 lowercase letters, digits "
                "and '-', with at least one letter, e.g. 'http')")
    return None


def validate_selector(selector: LabelSelector, path: str, errors: list[FieldError]) -> None:
    for key, value in selector.match_labels.items():
        if (problem := names.label_key_problem(key)) or (problem := names.label_value_problem(value)):
            errors.append(FieldError(f"{path}.matchLabels.{key}", problem))
    for i, expr in enumerate(selector.match_expressions):
        epath = f"{path}.matchExpressions[{i}]"
        if problem := names.label_key_problem(expr.key):
            errors.append(FieldError(f"{epath}.key", problem))
        if expr.operator in ("In", "NotIn") and not expr.values:
            errors.append(FieldError(f"{epath}.values", f"must not be empty with operator {expr.operator}"))
        if expr.operator in ("Exists", "DoesNotExist") and expr.values:
            errors.append(FieldError(f"{epath}.values", f"must be empty with operator {expr.operator}"))
        for j, value in enumerate(expr.values):
            if problem := names.label_value_problem(value):
                errors.append(FieldError(f"{epath}.values[{j}]", problem))


def _network(text: str, path: str, errors: list[FieldError]) -> ipaddress.IPv4Network | None:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        errors.append(FieldError(path, f"{text!r} is not a CIDR such as '10.0.0.0/16'"))
        return None
    if "/" not in text:
        errors.append(FieldError(path, f"{text!r} needs a prefix length, e.g. '{text}/32'"))
        return None
    if net.version != 4:
        errors.append(FieldError(path, f"{text!r}: only IPv4 is enforced (the container networks are IPv4)"))
        return None
    if str(net) != text:
        errors.append(FieldError(path, f"{text!r} has host bits set; did you mean '{net}'?"))
        return None
    assert isinstance(net, ipaddress.IPv4Network)
    return net


def _validate_peer(peer: NetworkPolicyPeer, path: str, errors: list[FieldError]) -> None:
    selectors = [(s, name) for s, name in ((peer.pod_selector, "podSelector"),
                                          (peer.namespace_selector, "namespaceSelector")) if s is not None]
    if not selectors and peer.ip_block is None:
        errors.append(FieldError(path, "must have podSelector, namespaceSelector or ipBlock"))
    if selectors and peer.ip_block is not None:
        errors.append(FieldError(f"{path}.ipBlock", "cannot be combined with podSelector or namespaceSelector "
                                                    "in one peer; make it a peer of its own"))
    for selector, name in selectors:
        validate_selector(selector, f"{path}.{name}", errors)
    if peer.ip_block is None:
        return
    block = _network(peer.ip_block.cidr, f"{path}.ipBlock.cidr", errors)
    for i, text in enumerate(peer.ip_block.except_):
        epath = f"{path}.ipBlock.except[{i}]"
        excluded = _network(text, epath, errors)
        if block is None or excluded is None:
            continue
        if not excluded.subnet_of(block) or excluded.prefixlen <= block.prefixlen:
            errors.append(FieldError(epath, f"{text} must lie strictly inside the cidr {block}"))


def _validate_port(port: NetworkPolicyPort, path: str, errors: list[FieldError]) -> None:
    if isinstance(port.port, int):
        if not 1 <= port.port <= 65535:
            errors.append(FieldError(f"{path}.port", "must be a port number between 1 and 65535"))
    elif isinstance(port.port, str) and (problem := port_name_problem(port.port)):
        errors.append(FieldError(f"{path}.port", problem))
    if port.end_port is None:
        return
    if not isinstance(port.port, int):
        errors.append(FieldError(f"{path}.endPort", "needs a numeric port to start the range"))
    elif not port.port <= port.end_port <= 65535:
        errors.append(FieldError(f"{path}.endPort", f"must be between port ({port.port}) and 65535"))


def validate_network_policy(policy: NetworkPolicy, errors: list[FieldError]) -> None:
    """Append a FieldError for every bad field of ``policy.spec``."""
    spec = policy.spec
    validate_selector(spec.pod_selector, "spec.podSelector", errors)
    if len(set(spec.policy_types)) != len(spec.policy_types):
        errors.append(FieldError("spec.policyTypes", "lists a type twice"))
    ingress, egress = effective_types(policy)
    if spec.ingress and not ingress:
        errors.append(FieldError("spec.ingress", "rules are given but spec.policyTypes does not include Ingress"))
    if spec.egress and not egress:
        errors.append(FieldError("spec.egress", "rules are given but spec.policyTypes does not include Egress"))
    sides = [(f"spec.ingress[{i}]", "from", r.from_, r.ports) for i, r in enumerate(spec.ingress)]
    sides += [(f"spec.egress[{i}]", "to", r.to, r.ports) for i, r in enumerate(spec.egress)]
    for rpath, peers_name, peers, ports in sides:
        for j, peer in enumerate(peers):
            _validate_peer(peer, f"{rpath}.{peers_name}[{j}]", errors)
        for j, port in enumerate(ports):
            _validate_port(port, f"{rpath}.ports[{j}]", errors)
