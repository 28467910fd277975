"""The informers' standard named indexes (client-go's ``byNode``, ``byOwner``…), one place for all.

An index function maps an object to the values it is filed under (a tuple; ``()``: not filed).
Register one on a shared informer with ``informer.add_index(NAME, fn)`` — adding a name twice is
a no-op, so every controller that needs "containers by node" asks for it and they share one — and
read it with ``informer.by_index(NAME, value)``. The functions must be pure functions of the
object (the informer calls them again on the old object to unfile it).
"""

from __future__ import annotations

from collections.abc import Callable

from corral.model.resources import Container, Object

BY_NODE = "by-node"
"""Containers by the node they are bound to (``spec.node``)."""
BY_CONTROLLER = "by-controller"
"""Objects by the uid of their controlling owner (the ownerReference with ``controller: true``)."""
BY_OWNER = "by-owner"
"""Objects by the uid of every owner they name."""
BY_UID = "by-uid"
"""Objects by their own uid."""
BY_NAMESPACE = "by-namespace"
"""Objects by their namespace."""


def node_of(c: Container) -> tuple[str, ...]:
    return (c.spec.node,) if c.spec.node else ()


def controller_uid(obj: Object) -> tuple[str, ...]:
    for ref in obj.metadata.owner_references:
        if ref.controller:
            return (ref.uid,)
    return ()


def owner_uids(obj: Object) -> tuple[str, ...]:
    refs = obj.metadata.owner_references
    if not refs:
        return ()
    return tuple(dict.fromkeys(ref.uid for ref in refs))


def uid_of(obj: Object) -> tuple[str, ...]:
    return (obj.metadata.uid,) if obj.metadata.uid else ()


def namespace_of(obj: Object) -> tuple[str, ...]:
    return (obj.metadata.namespace,)


def by_label(label: str) -> tuple[str, Callable[[Object], tuple[str, ...]]]:
    """The index of objects by the value of their label ``label``: its name and function."""

    def value_of(obj: Object) -> tuple[str, ...]:
        value = obj.metadata.labels.get(label)
        return (value,) if value is not None else ()

    return f"label:{label}", value_of
