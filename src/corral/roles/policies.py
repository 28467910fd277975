"""The agent's network-policy enforcer: follows policies, namespaces and containers; keeps the nft parts.

Three ``Reflector``s follow the cluster's NetworkPolicies, Namespaces and Containers (all of them,
not only this node's: a peer may run anywhere). Any change that matters to policy — a policy, a
namespace's labels, a container's IP, labels, phase, node or named ports — wakes one loop that
renders the ``policy`` part (``network.policy.render_policy``) and loads it: when only set elements
changed (a container came, went or was relabelled; the rules are the same) by deleting and adding
just those elements (``NftTable.update_sets``), otherwise by loading the agent's whole table
with ``NftTable.apply``. A burst of changes (a deployment scaling up) is folded into one load: the loop
waits a few milliseconds after the first change, and everything that arrives while nft runs goes
into the next load. Container status updates that change nothing policy looks at (heartbeats of
readiness, restart counts) do not wake it.

At start the enforcer makes bridged traffic visible to the inet hooks (``ensure_bridge_filtering``),
puts the ``loopback`` guard part in the table, and loads the table once the three reflectors have
synced — not before, so a restarted agent does not open what its previous run closed with a table
rendered from half the cluster. The same objects always render the same text, so a restarted agent
loads exactly the table it had. A failed load is retried with backoff; nothing is appended, ever.
"""

from __future__ import annotations

import asyncio
import logging
import time

from corral.api.client import ApiClient, Reflector
from corral.model.errors import CorralError
from corral.model.resources import Container, Namespace, NetworkPolicy
from corral.network.loopback_guard import render_loopback_guard
from corral.network.nftables import NftError, NftTable
from corral.network.policy import RenderedPolicy, element_changes, ensure_bridge_filtering, render_policy

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
        self.node = node
        self.bridge = bridge
        self.coalesce = coalesce
        self.policies: Reflector[NetworkPolicy] = Reflector(api, NetworkPolicy, namespace=None, on_event=self._changed)
        self.namespaces: Reflector[Namespace] = Reflector(api, Namespace, on_event=self._changed)
        self.containers: Reflector[Container] = Reflector(api, Container, namespace=None,
                                                          on_event=self._container_changed)
        self._seen: dict[tuple[str, str], _Fingerprint] = {}
        self._wake = asyncio.Event()
        self.last: RenderedPolicy | None = None
        self.enforced = asyncio.Event()  # set by the first successful load
        self.last_render_seconds = 0.0  # how long the last render took, and render + load
        self.last_load_seconds = 0.0

    def _changed(self, _type: str, _obj: object) -> None:
        self._wake.set()

    def _container_changed(self, type_: str, obj: Container) -> None:
        key = (obj.metadata.namespace, obj.metadata.name)
        if type_ == "DELETED":
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
            tg.create_task(self.containers.run(), name="policy-reflector-containers")
            tg.create_task(self._enforce(), name="policy-enforce")

    async def _load(self, rendered: RenderedPolicy) -> None:
        """Only the changed sets' elements when the rules are the same as loaded; else the whole table."""
        last = self.last
        if last is not None and last.skeleton == rendered.skeleton:
            try:
                if await self.nft.update_sets(rendered.part, element_changes(last, rendered)):
                    return
            except NftError as e:  # the kernel's table is not what was loaded (someone changed it)
                log.warning("updating the policy sets failed, loading the whole table: %s", e)
        self.nft.set_part(rendered.part)
        await self.nft.apply()

    async def _enforce(self) -> None:
        for reflector in (self.policies, self.namespaces, self.containers):
            await reflector.synced.wait()
        delay = 0.2
        while True:
            self._wake.clear()
            started = time.monotonic()
            try:
                rendered = self.render()
                self.last_render_seconds = time.monotonic() - started
                await self._load(rendered)
            except CorralError as e:
                log.warning("could not load the network policy rules: %s (retry in %.1fs)", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                self._wake.set()
                continue
            delay = 0.2
            self.last = rendered
            self.last_load_seconds = time.monotonic() - started
            self.enforced.set()
            await self._wake.wait()
            await asyncio.sleep(self.coalesce)  # fold the rest of a burst into this load
