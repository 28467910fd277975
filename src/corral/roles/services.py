"""The agent's service proxy and DNS: Services and Endpoints followed from the API, turned into rules and answers.

``ServiceProxy`` keeps two informers over the API (every Service, every Endpoints of the cluster). Any change
sets a flag; one task waits until both have synced, then renders the ``svc`` part of the agent's
nftables table (``network/services.py``) and loads it, and does so again after every batch of
changes (events that arrive while a load runs fold into the next). A batch that only moves set and
map elements (endpoints, addresses) is loaded as those elements' deletes and adds in one
transaction (``NftTable.update_sets``); anything else replaces the whole table atomically. Nothing
is kept but what the API says, so a restarted agent renders the same rules (and the table is
replaced, never appended to).

The same state answers DNS (``network/dns.py``): ``ServiceProxy`` is the DNS server's ``Records``.
A headless Service's name resolves to its ready endpoints' IPs; a container's name resolves from
this node's containers (the agent's own informer) or from any Endpoints that list it. When the API
is unreachable the informers keep their last state, so names keep resolving.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from corral.api.client import ApiClient
from corral.api.listwatch import NamespacedName, api_informer
from corral.model.resources import HEADLESS, Container, Endpoints, Service
from corral.network.dns import ClusterDNS, ServiceRecord, SrvPort, host_nameservers, parse_upstream
from corral.network.nftables import NftTable
from corral.network.services import ServiceRules, rules_delta, service_rules
from corral.store.informer import Change, Informer

log = logging.getLogger(__name__)

Key = tuple[str, str]


class ServiceProxy:
    def __init__(self, api: ApiClient, nft: NftTable, *,
                 containers: Callable[[], Mapping[Key, Container]] = dict, node: str = "") -> None:
        self.api = api
        self.node = node  # hairpin rules only for endpoints on this node
        self.nft = nft
        self.local_containers = containers
        self.services: Informer[NamespacedName, Service] = api_informer(api, Service)
        self.services.add_handler(self._changed)
        self.endpoints: Informer[NamespacedName, Endpoints] = api_informer(api, Endpoints)
        self.endpoints.add_handler(self._changed)
        self._dirty = asyncio.Event()
        self.rendered = 0  # how many times the part was rendered (tests and benchmarks read it)
        self.applied = asyncio.Event()  # set after the first load of the rules
        self._version = 0
        self._loaded: ServiceRules | None = None  # what the kernel holds of the part (None: not known)
        self.deltas = 0  # how many loads were element changes only

    def _changed(self, _change: Change, _key: NamespacedName, _obj: object, _old: object) -> None:
        self._version += 1
        self._dirty.set()

    def version(self) -> int:
        return self._version

    async def sync_rules(self) -> None:
        """Render the part and load it: as element changes when only endpoints and addresses moved
        (``rules_delta``), else the whole table."""
        rules = service_rules(self.services.objects.values(), self.endpoints.objects, node=self.node)
        part = rules.part()
        self.rendered += 1
        changes = rules_delta(self._loaded, rules) if self._loaded is not None else None
        self._loaded = None  # unknown until the load below succeeds
        if changes is not None and await self.nft.update_sets(part, changes):
            self.deltas += 1
        else:
            self.nft.set_part(part)
            await self.nft.apply()
        self._loaded = rules
        self.applied.set()

    async def _keep_rules(self) -> None:
        await self.services.synced.wait()
        await self.endpoints.synced.wait()
        while True:
            self._dirty.clear()
            try:
                await self.sync_rules()
            except Exception:
                log.exception("loading the service rules failed; trying again")
                await asyncio.sleep(1.0)
                self._dirty.set()
            await self._dirty.wait()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.services.run(), name="agent-services-reflector")
            tg.create_task(self.endpoints.run(), name="agent-endpoints-reflector")
            tg.create_task(self._keep_rules(), name="agent-service-rules")

    # --- Records (for DNS) ----------------------------------------------------------------------

    def service(self, namespace: str, name: str) -> ServiceRecord | None:
        svc = self.services.objects.get((namespace, name))
        if svc is None:
            return None
        ports = tuple(SrvPort(p.name, p.protocol.lower(), p.port) for p in svc.spec.ports if p.name)
        if svc.spec.cluster_ip == HEADLESS:
            ep = self.endpoints.objects.get((namespace, name))
            ips = tuple(sorted({a.ip for a in ep.spec.addresses})) if ep is not None else ()
            return ServiceRecord(ips, ports)
        return ServiceRecord((svc.spec.cluster_ip,) if svc.spec.cluster_ip else (), ports)

    def container_ip(self, namespace: str, name: str) -> str | None:
        local = self.local_containers().get((namespace, name))
        if local is not None and local.status.ip:
            return local.status.ip
        for (ns, _), ep in self.endpoints.objects.items():
            if ns != namespace:
                continue
            for a in (*ep.spec.addresses, *ep.spec.not_ready_addresses):
                if a.container == name:
                    return a.ip
        return None

    def has_namespace(self, namespace: str) -> bool:
        return any(ns == namespace for ns, _ in self.services.objects) or any(
            ns == namespace for ns, _ in self.local_containers())


def upstreams_of(configured: list[str]) -> list[tuple[str, int]]:
    """``--upstream-dns`` values, or the host's nameservers (never a loopback one we would loop on)."""
    if configured:
        return [parse_upstream(u) for u in configured]
    return host_nameservers()


async def start_dns(proxy: ServiceProxy, *, domain: str, host: str, port: int, upstreams: list[tuple[str, int]]) -> ClusterDNS:
    dns = ClusterDNS(domain=domain, records=proxy, upstreams=upstreams)
    await dns.start(host, port)
    log.info("DNS for %s on %s:%s (upstream %s)", domain, host, port,
             ", ".join(f"{h}:{p}" for h, p in upstreams) or "none")
    return dns
