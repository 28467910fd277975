"""The kinds the API serves: their wire names, plural path segments, scope and Python types.

Each kind is one ``KindInfo`` constant (``CONTAINERS``, ``EVENTS``, …); code asks which kind it has
by identity (``info is EVENTS``, ``info in OWNERS``) or by the object's class (``isinstance``), never
by comparing names as strings. The name (``kind`` in JSON, ``BY_KIND``) is for the wire and for
what a user types (``lookup``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, NewType, TypeVar

from corral.model.resources import (
    Container,
    CronJob,
    DaemonSet,
    Deployment,
    Endpoints,
    Event,
    Job,
    Namespace,
    NetworkPolicy,
    Node,
    Object,
    PriorityClass,
    Secret,
    Service,
    Volume,
)

ObjectKey = NewType("ObjectKey", str)  # an object's etcd key: /corral/<plural>/[<namespace>/]<name>

ObjT_co = TypeVar("ObjT_co", bound=Object, covariant=True)


@dataclass(frozen=True, slots=True)
class Kind(Generic[ObjT_co]):
    """One kind, generic in its Python type: ``CONTAINERS`` is a ``Kind[Container]``, so what is read
    or decoded through it is a ``Container`` to the type checker; ``KindInfo`` is any kind."""

    kind: str
    plural: str
    type: type[ObjT_co]
    namespaced: bool
    short_names: tuple[str, ...] = ()
    #: whether ``status`` is written only through the ``/status`` subresource
    status_subresource: bool = True

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def key(self, namespace: str, name: str) -> ObjectKey:
        if self.namespaced:
            return ObjectKey(f"/corral/{self.plural}/{namespace}/{name}")
        return ObjectKey(f"/corral/{self.plural}/{name}")

    def prefix(self, namespace: str = "") -> str:
        if self.namespaced and namespace:
            return f"/corral/{self.plural}/{namespace}/"
        return f"/corral/{self.plural}/"


#: each kind as a constant, compared by identity (``info is CONTAINERS``), never by its name as a string
NAMESPACES = Kind("Namespace", "namespaces", Namespace, namespaced=False, short_names=("ns",),
                      status_subresource=False)
CONTAINERS = Kind("Container", "containers", Container, namespaced=True, short_names=("c", "ctr", "pod", "pods"))
NODES = Kind("Node", "nodes", Node, namespaced=False, short_names=("no",))
DEPLOYMENTS = Kind("Deployment", "deployments", Deployment, namespaced=True, short_names=("deploy",))
VOLUMES = Kind("Volume", "volumes", Volume, namespaced=True, short_names=("vol",))
NETWORKPOLICIES = Kind("NetworkPolicy", "networkpolicies", NetworkPolicy, namespaced=True, short_names=("netpol",),
                           status_subresource=False)
SECRETS = Kind("Secret", "secrets", Secret, namespaced=True, status_subresource=False)
EVENTS = Kind("Event", "events", Event, namespaced=True, short_names=("ev",), status_subresource=False)
SERVICES = Kind("Service", "services", Service, namespaced=True, short_names=("svc",), status_subresource=False)
ENDPOINTS = Kind("Endpoints", "endpoints", Endpoints, namespaced=True, short_names=("ep",),
                     status_subresource=False)
JOBS = Kind("Job", "jobs", Job, namespaced=True)
CRONJOBS = Kind("CronJob", "cronjobs", CronJob, namespaced=True, short_names=("cj",))
DAEMONSETS = Kind("DaemonSet", "daemonsets", DaemonSet, namespaced=True, short_names=("ds",))
PRIORITYCLASSES = Kind("PriorityClass", "priorityclasses", PriorityClass, namespaced=False, short_names=("pc",),
                           status_subresource=False)

KindInfo = Kind[Object]  # any kind (what code that serves every kind takes)

KINDS: tuple[KindInfo, ...] = (
    NAMESPACES, CONTAINERS, NODES, DEPLOYMENTS, VOLUMES, NETWORKPOLICIES, SECRETS, EVENTS, SERVICES,
    ENDPOINTS, JOBS, CRONJOBS, DAEMONSETS, PRIORITYCLASSES,
)
#: kinds whose objects own others (ownerReferences point at them)
OWNERS = frozenset({DEPLOYMENTS, JOBS, CRONJOBS, DAEMONSETS})

BY_KIND: dict[str, KindInfo] = {k.kind: k for k in KINDS}
BY_PLURAL: dict[str, KindInfo] = {k.plural: k for k in KINDS}


def lookup(word: str) -> KindInfo | None:
    """A kind by any name a user may type: ``Container``, ``containers``, ``container``, ``ctr``."""
    w = word.lower()
    for k in KINDS:
        if w in (k.kind.lower(), k.plural, *k.short_names):
            return k
    return None
