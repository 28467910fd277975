"""Placement rules of a container spec: what its affinity, spread and priority fields must say.

``placement_problems`` checks ``affinity`` (node affinity with In/NotIn/Exists/DoesNotExist/Gt/Lt,
container affinity and anti-affinity terms), ``topologySpreadConstraints`` and the priority fields,
and appends a ``FieldError`` per bad field, with its path. It is called by ``validation`` for every
container spec (a Container's, a template's). The scheduler reads the same fields; this module
keeps it from ever seeing a shape it cannot honour (an empty selector, an ``In`` without values, a
``Gt`` on a word).
"""

from __future__ import annotations

from corral.model import names
from corral.model.errors import FieldError
from corral.model.resources import (
    ContainerAffinity,
    ContainerAffinityTerm,
    ContainerSpec,
    LabelSelector,
    NodeSelectorRequirement,
    NodeSelectorTerm,
    Taint,
    Toleration,
)

#: the one field ``matchFields`` knows (Kubernetes' rule): the node's name
NODE_NAME_FIELD = "metadata.name"
MAX_WEIGHT = 100


def _requirement(r: NodeSelectorRequirement, path: str, errors: list[FieldError], *, field: bool) -> None:
    if field:
        if r.key != NODE_NAME_FIELD:
            errors.append(FieldError(f"{path}.key", f"matchFields knows only {NODE_NAME_FIELD!r}"))
        if r.operator not in ("In", "NotIn"):
            errors.append(FieldError(f"{path}.operator", "matchFields takes In or NotIn"))
    elif problem := names.label_key_problem(r.key):
        errors.append(FieldError(f"{path}.key", problem))
    if r.operator in ("In", "NotIn") and not r.values:
        errors.append(FieldError(f"{path}.values", f"{r.operator} needs at least one value"))
    elif r.operator in ("Exists", "DoesNotExist") and r.values:
        errors.append(FieldError(f"{path}.values", f"{r.operator} takes no values"))
    elif r.operator in ("Gt", "Lt") and (len(r.values) != 1 or not _is_int(r.values[0])):
        errors.append(FieldError(f"{path}.values", f"{r.operator} takes exactly one integer value, e.g. ['4']"))


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _node_term(term: NodeSelectorTerm, path: str, errors: list[FieldError]) -> None:
    if not term.match_expressions and not term.match_fields:
        errors.append(FieldError(path, "needs matchExpressions or matchFields (an empty term matches no node)"))
    for i, r in enumerate(term.match_expressions):
        _requirement(r, f"{path}.matchExpressions[{i}]", errors, field=False)
    for i, r in enumerate(term.match_fields):
        _requirement(r, f"{path}.matchFields[{i}]", errors, field=True)


def _selector(sel: LabelSelector, path: str, errors: list[FieldError]) -> None:
    if not sel.match_labels:
        errors.append(FieldError(f"{path}.matchLabels", "must not be empty (e.g. {app: web})"))
    for key, value in sel.match_labels.items():
        if (problem := names.label_key_problem(key)) or (problem := names.label_value_problem(value)):
            errors.append(FieldError(f"{path}.matchLabels.{key}", problem))


def _topology_key(key: str, path: str, errors: list[FieldError]) -> None:
    if not key:
        errors.append(FieldError(path, "is required, e.g. 'corral.io/hostname' or 'topology.corral.io/zone'"))
    elif problem := names.label_key_problem(key):
        errors.append(FieldError(path, problem))


def _weight(weight: int, path: str, errors: list[FieldError]) -> None:
    if not 1 <= weight <= MAX_WEIGHT:
        errors.append(FieldError(path, f"must be between 1 and {MAX_WEIGHT}"))


def _container_term(term: ContainerAffinityTerm, path: str, errors: list[FieldError]) -> None:
    _selector(term.label_selector, f"{path}.labelSelector", errors)
    _topology_key(term.topology_key, f"{path}.topologyKey", errors)


def _container_affinity(a: ContainerAffinity, path: str, errors: list[FieldError]) -> None:
    for i, term in enumerate(a.required):
        _container_term(term, f"{path}.required[{i}]", errors)
    for i, w in enumerate(a.preferred):
        _weight(w.weight, f"{path}.preferred[{i}].weight", errors)
        _container_term(w.term, f"{path}.preferred[{i}].term", errors)


def placement_problems(spec: ContainerSpec, path: str, errors: list[FieldError]) -> None:
    """Append a FieldError for every bad affinity, spread or priority field of ``spec``."""
    a = spec.affinity
    if a is not None:
        if (na := a.node_affinity) is not None:
            for i, term in enumerate(na.required):
                _node_term(term, f"{path}.affinity.nodeAffinity.required[{i}]", errors)
            for i, p in enumerate(na.preferred):
                _weight(p.weight, f"{path}.affinity.nodeAffinity.preferred[{i}].weight", errors)
                _node_term(p.preference, f"{path}.affinity.nodeAffinity.preferred[{i}].preference", errors)
        if a.container_affinity is not None:
            _container_affinity(a.container_affinity, f"{path}.affinity.containerAffinity", errors)
        if a.container_anti_affinity is not None:
            _container_affinity(a.container_anti_affinity, f"{path}.affinity.containerAntiAffinity", errors)
    seen: set[tuple[str, str]] = set()
    for i, t in enumerate(spec.topology_spread_constraints):
        tpath = f"{path}.topologySpreadConstraints[{i}]"
        if t.max_skew < 1:
            errors.append(FieldError(f"{tpath}.maxSkew", "must be at least 1"))
        _topology_key(t.topology_key, f"{tpath}.topologyKey", errors)
        _selector(t.label_selector, f"{tpath}.labelSelector", errors)
        if (t.topology_key, t.when_unsatisfiable) in seen:
            errors.append(FieldError(f"{tpath}.topologyKey", "a second constraint on the same key and "
                                     "whenUnsatisfiable; merge them"))
        seen.add((t.topology_key, t.when_unsatisfiable))
    if spec.priority_class_name and (problem := names.subdomain_problem(spec.priority_class_name)):
        errors.append(FieldError(f"{path}.priorityClassName", problem))


# --- node matching, for controllers (the scheduler has its own parsed, faster form) -------------


def requirement_holds(r: NodeSelectorRequirement, labels: dict[str, str]) -> bool:
    """Whether a node with ``labels`` satisfies one ``matchExpressions`` requirement."""
    value = labels.get(r.key)
    if r.operator == "In":
        return value is not None and value in r.values
    if r.operator == "NotIn":
        return value is None or value not in r.values
    if r.operator == "Exists":
        return value is not None
    if r.operator == "DoesNotExist":
        return value is None
    if value is None or not _is_int(value) or len(r.values) != 1 or not _is_int(r.values[0]):
        return False
    return int(value) > int(r.values[0]) if r.operator == "Gt" else int(value) < int(r.values[0])


def term_holds(term: NodeSelectorTerm, node_name: str, labels: dict[str, str]) -> bool:
    """Whether node ``node_name`` with ``labels`` satisfies every requirement of ``term``."""
    for r in term.match_fields:
        named = node_name in r.values
        if named != (r.operator == "In"):
            return False
    return all(requirement_holds(r, labels) for r in term.match_expressions)


def node_admits(spec: ContainerSpec, node_name: str, labels: dict[str, str]) -> bool:
    """The node's labels satisfy ``spec``'s nodeSelector and one of its required node affinity terms."""
    if any(labels.get(k) != v for k, v in spec.node_selector.items()):
        return False
    na = spec.affinity.node_affinity if spec.affinity is not None else None
    return na is None or not na.required or any(term_holds(t, node_name, labels) for t in na.required)


def tolerates(tolerations: list[Toleration], taint: Taint) -> bool:
    for t in tolerations:
        if t.effect and t.effect != taint.effect:
            continue
        if t.operator == "Exists" and (not t.key or t.key == taint.key):
            return True
        if t.operator == "Equal" and t.key == taint.key and t.value == taint.value:
            return True
    return False
