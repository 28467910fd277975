"""Service cluster IPs and node ports, allocated in etcd so two Services never share one.

Every address or port handed out is a record of its own: ``/corral/_alloc/serviceips/<ip>`` and
``/corral/_alloc/nodeports/<port>``, whose value names the owning Service (its etcd key and uid) and
when the record was made. Taking one is an etcd create (``create_revision == 0``): whoever creates
the record owns the address, so two API servers racing for one cannot both win. The API takes the
records *before* it creates the Service and gives them back if that create fails; a Service's delete
gives its records back.

The leader's Endpoints controller gives back a deleted Service's records too (``after_delete`` is
idempotent), so a Service deleted by any path — the API, its namespace going — frees what it held.
A record can still outlive its Service when a process died between the two writes. Such a record is
*stale*: older than ``STALE_AFTER`` seconds and naming a Service that is not there (or has
another uid). A stale record is taken over with a compare-and-swap on its revision when its address
is wanted, so nothing leaks for good. A free address is found by a few random probes, then, when
they all hit taken ones, by listing the records: a range with nothing free is a 422 naming the field.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import time
from collections.abc import Awaitable, Callable, Iterable

import msgspec

from corral.model.cluster import CLUSTER_CONFIG_KEY, ClusterConfig
from corral.model.errors import AlreadyExists, Conflict, FieldError, Invalid, NotFound
from corral.model.kinds import SERVICES
from corral.model.resources import HEADLESS, Object, Service
from corral.model.services import NODE_PORT_MAX, NODE_PORT_MIN
from corral.store.base import Store

IP_PREFIX = "/corral/_alloc/serviceips/"
PORT_PREFIX = "/corral/_alloc/nodeports/"
STALE_AFTER = 60.0  # seconds: a younger record may belong to a Service whose create is in flight
RANDOM_PROBES = 16


Undo = Callable[[bool], Awaitable[None]]  # called with whether the write it prepared succeeded


class Owner(msgspec.Struct):
    key: str
    uid: str
    at: float


def _invalid(field: str, message: str) -> Invalid:
    return Invalid(f"{field}: {message}", details=[FieldError(field, message)])


class ServiceAllocator:
    """Cluster IPs from the cluster's service CIDR and node ports from 30000-32767, for the API."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._network: ipaddress.IPv4Network | None = None

    async def service_network(self) -> ipaddress.IPv4Network:
        if self._network is None:
            kv = await self.store.get(CLUSTER_CONFIG_KEY)
            cfg = msgspec.json.decode(kv.value, type=ClusterConfig) if kv is not None else ClusterConfig()
            self._network = ipaddress.IPv4Network(cfg.service_cidr)
        return self._network

    # --- one record ---------------------------------------------------------------------------

    async def _take(self, key: str, owner: Owner) -> bool:
        """Own ``key``: create it, or take it over when it is stale or already ours. False if taken."""
        value = msgspec.json.encode(owner)
        try:
            await self.store.create(key, value)
            return True
        except AlreadyExists:
            pass
        kv = await self.store.get(key)
        if kv is None:
            return await self._take(key, owner)
        held = msgspec.json.decode(kv.value, type=Owner)
        if held.key == owner.key and held.uid == owner.uid:
            return True
        if time.time() - held.at < STALE_AFTER or await self._owner_exists(held):
            return False
        try:
            await self.store.update(key, value, expected_revision=kv.mod_revision)
            return True
        except (Conflict, NotFound):
            return False

    async def _owner_exists(self, held: Owner) -> bool:
        kv = await self.store.get(held.key)
        if kv is None:
            return False
        meta = msgspec.json.decode(kv.value, type=_MetaOnly)
        return meta.metadata.uid == held.uid

    async def _give_back(self, key: str, owner: Owner) -> None:
        kv = await self.store.get(key)
        if kv is None:
            return
        held = msgspec.json.decode(kv.value, type=Owner)
        if held.key == owner.key and held.uid == owner.uid:
            with contextlib.suppress(Conflict, NotFound):
                await self.store.delete(key, expected_revision=kv.mod_revision)

    # --- addresses and ports ------------------------------------------------------------------

    async def _allocate_ip(self, owner: Owner, asked: str) -> str:
        network = await self.service_network()
        if asked:
            ip = ipaddress.IPv4Address(asked)
            if ip not in network or ip in (network.network_address, network.broadcast_address):
                raise _invalid("spec.clusterIP", f"{asked} is not inside the service CIDR {network}")
            if not await self._take(IP_PREFIX + asked, owner):
                raise _invalid("spec.clusterIP", f"{asked} is already allocated to another Service")
            return asked
        first, last = int(network.network_address) + 1, int(network.broadcast_address) - 1
        for _ in range(RANDOM_PROBES if last - first > 64 else 0):
            candidate = str(ipaddress.IPv4Address(random.randint(first, last)))
            if await self._take(IP_PREFIX + candidate, owner):
                return candidate
        return await self._first_free(owner, IP_PREFIX, (str(ipaddress.IPv4Address(n)) for n in range(first, last + 1)),
                                      field="spec.clusterIP", what=f"the service CIDR {network}")

    async def _allocate_port(self, owner: Owner, asked: int, field: str) -> int:
        if asked:
            if not await self._take(f"{PORT_PREFIX}{asked}", owner):
                raise _invalid(field, f"node port {asked} is already allocated to another Service")
            return asked
        for _ in range(RANDOM_PROBES):
            candidate = random.randint(NODE_PORT_MIN, NODE_PORT_MAX)
            if await self._take(f"{PORT_PREFIX}{candidate}", owner):
                return candidate
        port = await self._first_free(owner, PORT_PREFIX, (str(n) for n in range(NODE_PORT_MIN, NODE_PORT_MAX + 1)),
                                      field=field, what=f"the node port range {NODE_PORT_MIN}-{NODE_PORT_MAX}")
        return int(port)

    async def _first_free(self, owner: Owner, prefix: str, candidates: Iterable[str], *, field: str, what: str) -> str:
        """Walk ``candidates`` (an iterable of record names) past the taken ones; stale ones may be taken over."""
        page = await self.store.list(prefix)
        held = {kv.key[len(prefix):] for kv in page.items}
        for name in candidates:
            if name not in held and await self._take(prefix + name, owner):
                return name
        for name in sorted(held):  # everything is held: maybe some by Services that are gone
            if await self._take(prefix + name, owner):
                return name
        raise _invalid(field, f"{what} is full: delete a Service or ask for a larger range")

    # --- the API's hooks ------------------------------------------------------------------------

    def _owner(self, svc: Service) -> Owner:
        meta = svc.metadata
        return Owner(key=SERVICES.key(meta.namespace, meta.name), uid=meta.uid, at=time.time())

    async def before_create(self, obj: Object) -> Undo:
        """Allocate what ``obj`` (a new Service, uid set) needs, writing it into its spec."""
        assert isinstance(obj, Service)
        return await self._allocate(obj, held_ip="", held_ports=set())

    async def before_update(self, new: Object, current: Object) -> Undo:
        """Keep the cluster IP (immutable) and the node ports still used; allocate new ones."""
        assert isinstance(new, Service) and isinstance(current, Service)
        cur = current.spec
        if not new.spec.cluster_ip:
            new.spec.cluster_ip = cur.cluster_ip
        elif new.spec.cluster_ip != cur.cluster_ip:
            raise _invalid("spec.clusterIP", f"is immutable: it is {cur.cluster_ip}; delete and re-create the Service "
                                             "to change it")
        held = {p.node_port for p in cur.ports if p.node_port}
        if new.spec.type == "NodePort":
            by_key = {(p.name, p.port, p.protocol): p.node_port for p in cur.ports if p.node_port}
            for p in new.spec.ports:
                if not p.node_port:
                    p.node_port = by_key.get((p.name, p.port, p.protocol), 0)
        return await self._allocate(new, held_ip=cur.cluster_ip, held_ports=held)

    async def _allocate(self, svc: Service, *, held_ip: str, held_ports: set[int]) -> Undo:
        owner = self._owner(svc)
        taken: list[str] = []
        try:
            keep = bool(held_ip) and svc.spec.cluster_ip == held_ip
            if svc.spec.cluster_ip != HEADLESS and not keep:
                svc.spec.cluster_ip = await self._allocate_ip(owner, svc.spec.cluster_ip)
                taken.append(IP_PREFIX + svc.spec.cluster_ip)
            if svc.spec.type == "NodePort":
                for i, p in enumerate(svc.spec.ports):
                    if p.node_port in held_ports:
                        continue
                    p.node_port = await self._allocate_port(owner, p.node_port, f"spec.ports[{i}].nodePort")
                    taken.append(f"{PORT_PREFIX}{p.node_port}")
        except BaseException:
            for key in taken:
                await self._give_back(key, owner)
            raise
        kept = {p.node_port for p in svc.spec.ports if p.node_port}
        dropped = [f"{PORT_PREFIX}{n}" for n in held_ports - kept]

        async def finish(written: bool) -> None:
            for key in (dropped if written else taken):
                await self._give_back(key, owner)

        return finish

    async def after_delete(self, obj: Object) -> None:
        """Give back what a deleted Service held."""
        assert isinstance(obj, Service)
        owner = self._owner(obj)
        if obj.spec.cluster_ip and obj.spec.cluster_ip != HEADLESS:
            await self._give_back(IP_PREFIX + obj.spec.cluster_ip, owner)
        for p in obj.spec.ports:
            if p.node_port:
                await self._give_back(f"{PORT_PREFIX}{p.node_port}", owner)


class _Meta(msgspec.Struct):
    uid: str = ""


class _MetaOnly(msgspec.Struct):
    metadata: _Meta = msgspec.field(default_factory=_Meta)
