"""List and watch filters: ``labelSelector`` and ``fieldSelector``, parsed once per request.

Field selectors support ``=``, ``==`` and ``!=`` on a fixed set of fields per kind (as Kubernetes
does); anything else is a 400 that names the supported fields.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from corral.model.errors import BadRequest
from corral.model.kinds import CONTAINERS, EVENTS, NODES, VOLUMES, KindInfo
from corral.model.names import parse_selector
from corral.model.resources import Object

Predicate = Callable[[Object], bool]

_COMMON: dict[str, Callable[[Any], str]] = {
    "metadata.name": lambda o: o.metadata.name,
    "metadata.namespace": lambda o: o.metadata.namespace,
}
_FIELDS: dict[KindInfo, dict[str, Callable[[Any], str]]] = {
    CONTAINERS: {
        "spec.node": lambda o: o.spec.node,
        "status.phase": lambda o: o.status.phase,
        "spec.image": lambda o: o.spec.image,
        "spec.restartPolicy": lambda o: o.spec.restart_policy,
    },
    NODES: {"spec.unschedulable": lambda o: str(o.spec.unschedulable).lower()},
    EVENTS: {
        "involvedObject.kind": lambda o: o.spec.involved_object.kind,
        "involvedObject.name": lambda o: o.spec.involved_object.name,
        "involvedObject.uid": lambda o: o.spec.involved_object.uid,
        "reason": lambda o: o.spec.reason,
        "type": lambda o: o.spec.type,
    },
    VOLUMES: {"spec.node": lambda o: o.spec.node},
}


def supported_fields(info: KindInfo) -> list[str]:
    return [*_COMMON, *_FIELDS.get(info, {})]


def field_predicate(text: str, info: KindInfo) -> Predicate | None:
    if not text.strip():
        return None
    getters = {**_COMMON, **_FIELDS.get(info, {})}
    terms: list[tuple[Callable[[Any], str], bool, str]] = []
    for raw in text.split(","):
        term = raw.strip()
        if "!=" in term:
            field, _, value = term.partition("!=")
            equal = False
        elif "=" in term:
            field, _, value = term.partition("==") if "==" in term else term.partition("=")
            equal = True
        else:
            raise BadRequest(f"fieldSelector: {term!r} must look like field=value or field!=value")
        field = field.strip()
        getter = getters.get(field)
        if getter is None:
            raise BadRequest(
                f"fieldSelector: {info.plural} cannot be selected by {field!r}; "
                f"supported fields: {', '.join(getters)}"
            )
        terms.append((getter, equal, value.strip()))

    def predicate(obj: Object) -> bool:
        return all((getter(obj) == value) is equal for getter, equal, value in terms)

    return predicate


def label_predicate(text: str) -> Predicate | None:
    try:
        selector = parse_selector(text)
    except ValueError as e:
        raise BadRequest(f"labelSelector: {e}") from e
    if selector.empty:
        return None
    return lambda obj: selector.matches(obj.metadata.labels)


def combine(*predicates: Predicate | None) -> Predicate | None:
    active = [p for p in predicates if p is not None]
    if not active:
        return None
    if len(active) == 1:
        return active[0]
    return lambda obj: all(p(obj) for p in active)
