"""The Endpoints controller: one ``Endpoints`` object per Service, listing where its traffic may go.

Keys are Services' etcd keys. A Service's events enqueue it; a Container's events enqueue every
Service of its namespace whose selector matches the container's labels before or after the change
(an index from namespace to Service keys and to container keys keeps that from walking the whole
cache). Container events enqueue with a short delay (``COALESCE_SECONDS``) so a burst of changes —
a Deployment scaling, a rollout, a node going away — becomes one write per Service, not one per
container; the queue holds each key once however many events name it.

``reconcile(key)`` builds the Endpoints the Service should have from the informers' caches:

- every container of the namespace that the selector matches and that has an IP (``status.ip``)
  and is not finished becomes an address: IP, node, container name and uid, and per service port
  the container port it reaches (``targetPort`` resolved: a named target port is looked up in the
  container's ports; a container without that name gets no entry for that port);
- an address is *ready* when the container is Running and ready (its readiness probe passes, or it
  has none) and is not being deleted: a container whose deletion has started leaves the ready set
  at once, so a proxy stops sending it new connections before it stops; the rest go to
  ``notReadyAddresses``.

It writes only when the result differs from the stored Endpoints (``spec`` compared whole), owns
it by an ownerReference to the Service, and deletes it when the Service is gone — and then gives
back the Service's cluster IP and node ports (``store/allocation.py``), whichever path deleted it
(the API's delete does too; giving back twice is harmless).
"""

from __future__ import annotations

import logging

import msgspec

from corral.controllers.base import Controller, Informers
from corral.model.errors import AlreadyExists, NotFound
from corral.model.kinds import BY_KIND
from corral.model.names import selector_from_labels
from corral.model.resources import (
    Container,
    EndpointAddress,
    EndpointPort,
    Endpoints,
    EndpointsSpec,
    ObjectMeta,
    OwnerReference,
    Service,
)
from corral.model.services import resolve_target_port
from corral.store.allocation import ServiceAllocator
from corral.store.indexers import BY_NAMESPACE, namespace_of
from corral.store.informer import Change
from corral.store.objects import Objects

log = logging.getLogger(__name__)

SERVICES = BY_KIND["Service"]
ENDPOINTS = BY_KIND["Endpoints"]
COALESCE_SECONDS = 0.05


def is_ready(c: Container) -> bool:
    return c.status.phase == "Running" and c.status.ready and not c.metadata.deletion_timestamp


def address_of(c: Container, svc: Service) -> EndpointAddress:
    ports = []
    for p in svc.spec.ports:
        target = resolve_target_port(p, c.spec)
        if target is not None:
            ports.append(EndpointPort(port=target, name=p.name, protocol=p.protocol))
    return EndpointAddress(ip=c.status.ip, node=c.status.node or c.spec.node, container=c.metadata.name,
                           uid=c.metadata.uid, ports=ports)


def desired_endpoints(svc: Service, containers: list[Container]) -> EndpointsSpec:
    """The Endpoints spec of ``svc`` given the containers of its namespace (pure)."""
    selector = selector_from_labels(svc.spec.selector)
    ready: list[EndpointAddress] = []
    not_ready: list[EndpointAddress] = []
    for c in containers:
        if not c.status.ip or c.status.phase in ("Succeeded", "Failed") or not selector.matches(c.metadata.labels):
            continue
        (ready if is_ready(c) else not_ready).append(address_of(c, svc))
    ready.sort(key=lambda a: (a.ip, a.uid))
    not_ready.sort(key=lambda a: (a.ip, a.uid))
    return EndpointsSpec(addresses=ready, not_ready_addresses=not_ready)


class EndpointsController(Controller):
    name = "endpoints"

    def __init__(self, informers: Informers, objects: Objects) -> None:
        super().__init__(informers, objects)
        self.services = informers.of(Service)
        self.containers = informers.of(Container)
        self.endpoints = informers.of(Endpoints)
        self.services.add_index(BY_NAMESPACE, namespace_of)
        self.containers.add_index(BY_NAMESPACE, namespace_of)
        self.allocator = ServiceAllocator(objects.store)
        self._deleted: dict[str, Service] = {}  # service key -> the Service as it was, until its addresses are free
        self.services.add_handler(self._on_service)
        self.containers.add_handler(self._on_container)
        self.endpoints.add_handler(self._on_endpoints)

    # --- handlers: keys only ------------------------------------------------------------------

    def _on_service(self, change: Change, key: str, svc: Service, _old: Service | None) -> None:
        if change is Change.DELETED:
            self._deleted[key] = svc
        self.enqueue(key)

    def _on_container(self, _change: Change, _key: str, c: Container, old: Container | None) -> None:
        labels = [c.metadata.labels] if old is None else [c.metadata.labels, old.metadata.labels]
        for skey in self.services.keys_by_index(BY_NAMESPACE, c.metadata.namespace):
            svc = self.services.get(skey)
            if svc is None:
                continue
            selector = selector_from_labels(svc.spec.selector)
            if any(selector.matches(lbl) for lbl in labels):
                self.queue.add_after(skey, COALESCE_SECONDS)

    def _on_endpoints(self, _change: Change, _key: str, ep: Endpoints, _old: Endpoints | None) -> None:
        self.enqueue(SERVICES.key(ep.metadata.namespace, ep.metadata.name))  # a hand edit is put right

    # --- reconcile ----------------------------------------------------------------------------

    def containers_in(self, namespace: str) -> list[Container]:
        return self.containers.by_index(BY_NAMESPACE, namespace)

    async def reconcile(self, key: str) -> float | None:
        _, _, rest = key.partition(SERVICES.prefix())
        namespace, _, name = rest.partition("/")
        svc = self.services.get(key)
        current = self.endpoints.get(ENDPOINTS.key(namespace, name))
        if svc is None or svc.metadata.deletion_timestamp:
            if current is not None:
                await self.objects.delete(Endpoints, name, namespace=namespace)
            gone = self._deleted.get(key)
            if gone is not None and svc is None:
                await self.allocator.after_delete(gone)
                self._deleted.pop(key, None)
            return None
        spec = desired_endpoints(svc, self.containers_in(namespace))
        owner = OwnerReference(kind="Service", name=name, uid=svc.metadata.uid, controller=True)
        if current is None:
            ep = Endpoints(metadata=ObjectMeta(name=name, namespace=namespace, labels=dict(svc.metadata.labels),
                                               owner_references=[owner]), spec=spec)
            try:
                await self.objects.create(ep)
            except AlreadyExists:
                return 0.1  # the cache has not shown it yet: look again
            return None
        if current.spec == spec and current.metadata.owner_references == [owner]:
            return None
        meta = msgspec.structs.replace(current.metadata, owner_references=[owner])
        try:
            await self.objects.update(msgspec.structs.replace(current, metadata=meta, spec=spec))
        except NotFound:
            return 0.1
        return None
