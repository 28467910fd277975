"""The agent's side of named volumes: make a volume's directory only on the node it is bound to.

The leader binds each Volume to one node (``controllers.volumes``) and the scheduler places the
containers that mount it there (``scheduler.volumes``). The agent checks again — defense in depth
against a stale scheduler or a hand-pinned container: ``volume_placement`` answers the storage step
(``reconcile.storage.VolumeStep.placement``) from the agent's Volume reflector, and any answer
but "bound here" keeps the container Pending with that reason instead of handing it an empty
directory. ``requeue_mounting`` wakes the containers waiting for a volume as soon as it is bound.

Sizes: the data dir's file system has no project quotas here (see ``storage/usage.py``), so
``UsageWatch`` measures, every ``interval`` seconds and off the event loop, each emptyDir that has
a ``sizeLimit`` and each named volume bound to this node. It reports a named volume's usage in its
``status.used`` (written only when the rounded figure changes), and evicts a container whose
emptyDir is over its ``sizeLimit``, or that mounts a named volume over its ``spec.size``: the
container's status becomes Failed with reason ``Evicted`` and a Warning Event says why
(``emptyDir data uses 12Mi, over its sizeLimit 10Mi``); the agent then stops it and never starts it
again (``is_evicted``). The data of a named volume stays; an evicted container's emptyDir goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping

import msgspec

from corral.api.client import ApiClient
from corral.model import errors
from corral.model.quantities import QuantityError, parse_memory
from corral.model.resources import Container, Volume
from corral.storage.usage import disk_usage, human_size
from corral.storage.volumes import Volumes

log = logging.getLogger(__name__)

Key = tuple[str, str]
EVICTED = "Evicted"
FINISHED = ("Succeeded", "Failed")


def volume_placement(volumes: Mapping[tuple[str, str], Volume], node: str) -> Callable[[str, str], str | None]:
    """(namespace, name) → None when that Volume is bound to ``node``, else why it may not be used here."""

    def check(namespace: str, name: str) -> str | None:
        volume = volumes.get((namespace, name))
        if volume is None:
            return f"volume {namespace}/{name} is not created or bound yet"
        bound = volume.status.node
        if volume.metadata.deletion_timestamp:
            return f"volume {namespace}/{name} is being deleted"
        if not bound:
            return f"volume {namespace}/{name} is not bound to a node yet"
        if bound != node:
            return f"volume {namespace}/{name} is bound to node {bound}, not {node}: its data is there"
        return None

    return check


def requeue_mounting(add: Callable[[tuple[str, str]], None], containers: Iterable[Container], volume: Volume) -> None:
    """Requeue this node's containers that mount ``volume``."""
    ns, name = volume.metadata.namespace, volume.metadata.name
    for c in containers:
        if c.metadata.namespace == ns and any(v.volume == name for v in c.spec.volumes):
            add((ns, c.metadata.name))


def is_evicted(c: Container) -> bool:
    return c.status.phase == "Failed" and c.status.reason == EVICTED


def _limit(text: str) -> int:
    try:
        return parse_memory(text) if text else 0
    except QuantityError:
        return 0  # the API validates it; an unreadable one is no limit


class UsageWatch:
    """Measures limited volumes every ``interval`` seconds; evicts what is over; reports named volumes' usage."""

    def __init__(self, *, node: str, api: ApiClient, store: Volumes, containers: Mapping[Key, Container],
                 volumes: Mapping[Key, Volume], record: Callable[..., None], requeue: Callable[[Key], None],
                 interval: float = 5.0) -> None:
        self.node, self.api, self.store = node, api, store
        self.containers, self.volumes = containers, volumes
        self.record, self.requeue, self.interval = record, requeue, interval

    async def run(self) -> None:
        while True:
            try:
                await self.check_once()
            except errors.CorralError as e:
                log.warning("volume usage check failed: %s", e)
            await asyncio.sleep(self.interval)

    async def check_once(self) -> None:
        over_named = await self._named_volumes()
        for key, c in list(self.containers.items()):
            if c.metadata.deletion_timestamp or c.status.phase in FINISHED or not c.spec.node:
                continue
            ns = c.metadata.namespace
            why = next((over_named[(ns, v.volume)] for v in c.spec.volumes if (ns, v.volume) in over_named), "")
            for v in c.spec.volumes:
                if why or v.empty_dir is None or not (limit := _limit(v.empty_dir.size_limit)):
                    continue
                used = await disk_usage(self.store.emptydir_path(c.metadata.uid, v.name))
                if used > limit:
                    why = f"emptyDir {v.name} uses {human_size(used)}, over its sizeLimit {v.empty_dir.size_limit}"
            if why:
                await self.evict(key, c, why)

    async def _named_volumes(self) -> dict[Key, str]:
        """Report usage of the named volumes bound here; (namespace, name) → why it is over its size."""
        over: dict[Key, str] = {}
        for (namespace, name), volume in list(self.volumes.items()):
            if volume.status.node != self.node or volume.metadata.deletion_timestamp:
                continue
            used = await disk_usage(self.store.named_path(namespace, name))
            text = human_size(used)
            if text != volume.status.used:
                status = msgspec.structs.replace(volume.status, used=text)
                with contextlib.suppress(errors.Conflict, errors.NotFound):  # changed meanwhile: next round
                    await self.api.update_status(msgspec.structs.replace(volume, status=status))
            limit = _limit(volume.spec.size)
            if limit and used > limit:
                over[(namespace, name)] = f"volume {name} uses {text}, over its size {volume.spec.size}"
        return over

    async def evict(self, key: Key, c: Container, why: str) -> None:
        status = msgspec.structs.replace(c.status, phase="Failed", reason=EVICTED, message=why, ready=False)
        try:
            await self.api.update_status(msgspec.structs.replace(c, status=status))
        except (errors.Conflict, errors.NotFound):
            return  # changed meanwhile: looked at again next round
        log.info("evicted %s/%s: %s", *key, why)
        self.record(c, type="Warning", reason=EVICTED, message=why)
        self.requeue(key)
