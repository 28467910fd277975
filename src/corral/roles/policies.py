"""The agent's network-policy enforcer: follows policies, namespaces and containers; keeps the nft parts.

Three informers (over the API) follow the cluster's NetworkPolicies, Namespaces and Containers (all of them,
not only this node's: a peer may run anywhere). The containers are followed only while at least one
policy exists: without policies no container matters, and a cluster that uses none keeps every
agent's container watch to its own node (which the API serves from a per-node index). Any change
that matters to policy — a policy, a namespace's labels, a container's IP, labels, phase, node or
named ports — wakes one loop that renders the ``policy`` part (``network.policy.render_policy``) and
loads just the difference from the last render (``delta_commands``, ``NftTable.update_part``): a
container that came, went or was relabelled changes a few set elements; a policy's change flushes
and refills the policy chains and adds or deletes its own sets. Only the first load, or one after a
failed update, loads the agent's whole table (``NftTable.apply``). A burst of changes (a deployment
scaling up) is folded into one load: the loop waits a few milliseconds after the first change, and
everything that arrives while nft runs goes into the next load. Container status updates that change
nothing policy looks at (readiness, restart counts) do not wake it.

At start the enforcer makes bridged traffic visible to the inet hooks (``ensure_bridge_filtering``),
puts the ``loopback`` guard part in the table, and loads the table once the informers have
synced — not before, so a restarted agent does not open what its previous run closed with a table
rendered from half the cluster; and it announces its part (``NftTable.await_part``), so no other part
(the service proxy's) loads the table without the policy rules in the meantime. The same objects
always render the same text, so a restarted agent loads exactly the table it had. A failed load is
retried with backoff; nothing is appended, ever.
"""

from __future__ import annotations

import asyncio
import logging
import time

from corral.aiokit.backoff import Backoff
from corral.api.client import ApiClient
from corral.api.listwatch import NamespacedName, api_informer
from corral.model.errors import CorralError
from corral.model.resources import Container, Namespace, NetworkPolicy
from corral.network.loopback_guard import render_loopback_guard
from corral.network.nftables import NftError, NftTable
from corral.network.policy import PART, RenderedPolicy, delta_commands, ensure_bridge_filtering, render_policy
from corral.store.informer import Change, Informer

log = logging.getLogger(__name__)

_Fingerprint = tuple[object, ...]


def _fingerprint(c: Container) -> _Fingerprint:
    """What policy reads of a container: a change elsewhere in it does not cost a render."""
    return (c.status.ip, c.status.phase in ("Succeeded", "Failed"), c.spec.node or c.status.node,
            tuple(sorted(c.metadata.labels.items())),
            tuple((p.name, p.protocol, p.container_port) for p in c.spec.ports if p.name))


class PolicyEnforcer:
    """Keeps the ``policy`` and ``loopback`` parts of ``nft`` equal to what the cluster says."""

    def __init__(self, api: ApiClient, nft: NftTable, *, node: str, bridge: str, coalesce: float = 0.01) -> None:
        self.nft = nft
        nft.await_part(PART)  # the table is not loaded without the policy rules (see NftTable.await_part)
        self.node = node
        self.bridge = bridge
        self.coalesce = coalesce
        self.api = api
        self.policies: Informer[NamespacedName, NetworkPolicy] = api_informer(api, NetworkPolicy)
        self.policies.add_handler(self._policy_changed)
        self.namespaces: Informer[NamespacedName, Namespace] = api_informer(api, Namespace)
        self.namespaces.add_handler(self._changed)
        self.containers: Informer[NamespacedName, Container] = self._container_informer()
        self._seen: dict[tuple[str, str], _Fingerprint] = {}
        self._wake = asyncio.Event()
        self._policies_exist = asyncio.Event()  # the containers are followed only while some policy exists
        self._no_policies = asyncio.Event()
        self.last: RenderedPolicy | None = None
        self.enforced = asyncio.Event()  # set by the first successful load
        self.last_render_seconds = 0.0  # how long the last render took, and render + load
        self.last_load_seconds = 0.0

    def _container_informer(self) -> Informer[NamespacedName, Container]:
        """Every container of the cluster (followed only while some policy exists)."""
        containers: Informer[NamespacedName, Container] = api_informer(self.api, Container)
        containers.add_handler(self._container_changed)
        return containers

    def _changed(self, _change: Change, _key: NamespacedName, _obj: object, _old: object) -> None:
        self._wake.set()

    def _policy_changed(self, _change: Change, _key: NamespacedName, _obj: object, _old: object) -> None:
        self._policies_now()

    def _policies_now(self) -> None:
        exist = bool(self.policies.objects)
        (self._policies_exist if exist else self._no_policies).set()
        (self._no_policies if exist else self._policies_exist).clear()
        self._wake.set()

    def _container_changed(self, change: Change, key: NamespacedName, obj: Container, _old: Container | None) -> None:
        if change is Change.DELETED:
            self._seen.pop(key, None)
            self._wake.set()
            return
        fp = _fingerprint(obj)
        if self._seen.get(key) != fp:
            self._seen[key] = fp
            self._wake.set()

    def render(self) -> RenderedPolicy:
        return render_policy(self.policies.objects.values(), self.containers.objects.values(),
                             self.namespaces.objects.values(), node=self.node)

    async def run(self) -> None:
        try:
            await ensure_bridge_filtering()
        except CorralError as e:
            log.error("%s", e)
        self.nft.set_part(render_loopback_guard(self.bridge))
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.policies.run(), name="policy-reflector-networkpolicies")
            tg.create_task(self.namespaces.run(), name="policy-reflector-namespaces")
            tg.create_task(self._follow_containers(), name="policy-reflector-containers")
            tg.create_task(self._enforce(), name="policy-enforce")

    async def _load(self, rendered: RenderedPolicy) -> None:
        """Only what changed (``delta_commands``) once the table is loaded; else the whole table."""
        last = self.last
        if last is not None:
            commands = delta_commands(last, rendered, family=self.nft.family, table=self.nft.table)
            try:
                if await self.nft.update_part(rendered.part, commands):
                    return
            except NftError as e:  # the kernel's table is not what was loaded (someone changed it)
                log.warning("updating the policy rules failed, loading the whole table: %s", e)
        self.nft.set_part(rendered.part)
        await self.nft.apply()

    async def _follow_containers(self) -> None:
        """Watch every container while at least one policy exists; with none, no container matters
        (and a cluster without policies keeps its agents' watches to their own node's containers)."""
        while True:
            await self._policies_exist.wait()
            following = asyncio.create_task(self.containers.run(), name="policy-containers-watch")
            try:
                await self._no_policies.wait()
            finally:
                following.cancel()
                await asyncio.gather(following, return_exceptions=True)
            self.containers = self._container_informer()  # a fresh, empty one for the next policy
            self._seen.clear()
            self._wake.set()

    async def _containers_ready(self) -> None:
        """Wait until the containers are known, if any policy needs them (a policy may go meanwhile)."""
        while self.policies.objects and not self.containers.synced.is_set():
            self._wake.clear()
            waits = [asyncio.ensure_future(self.containers.synced.wait()), asyncio.ensure_future(self._wake.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()

    async def _enforce(self) -> None:
        for reflector in (self.policies, self.namespaces):
            await reflector.synced.wait()
        self._policies_now()
        backoff = Backoff(initial=0.2, maximum=10.0)
        while True:
            await self._containers_ready()
            self._wake.clear()
            started = time.monotonic()
            try:
                rendered = self.render()
                self.last_render_seconds = time.monotonic() - started
                await self._load(rendered)
            except CorralError as e:
                delay = backoff.next()
                log.warning("could not load the network policy rules: %s (retry in %.1fs)", e, delay)
                await asyncio.sleep(delay)
                self._wake.set()
                continue
            backoff.succeeded()
            self.last = rendered
            self.last_load_seconds = time.monotonic() - started
            self.enforced.set()
            await self._wake.wait()
            await asyncio.sleep(self.coalesce)  # fold the rest of a burst into this load
