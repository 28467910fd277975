"""Node lifecycle: a node that stops heartbeating becomes NotReady, then its containers are released.

Agents write ``status.lastHeartbeat`` every couple of seconds. This controller does not compare
that timestamp with its own clock (hosts' clocks differ); it notes *when it saw the heartbeat
change* on its own monotonic clock, as the Kubernetes node lifecycle controller does with its
probe timestamps. A node is silent for ``now - seen``:

- ``silent < node_grace``: healthy; the key comes back when the grace would run out.
- ``silent >= node_grace``: lost. Its Ready condition becomes ``Unknown`` (reason
  ``NodeStatusUnknown``, a message with the silence and the countdown to release) — so the
  scheduler's NodeReady filter leaves it out — and each container bound to it gets phase
  ``Unknown`` with "node node-2 lost; released in 3s". The countdown is refreshed every second.
- ``silent >= node_grace + release_margin``: its containers are released: the agent's finalizer is
  removed on the node's behalf and they are deleted, with an Event each; whatever owns them (a
  Deployment) replaces them elsewhere. Containers that tolerate ``node.corral.io/unreachable``
  (NoExecute) — every DaemonSet's — stay, Unknown, as long as the Node object does.

Releasing is safe because the agent fences itself: with no successful heartbeat for its
``fence_after`` (less than ``node_grace``) it kills every task it runs (roles/fencing.py). So by
the time a replacement can start, the lost node has stopped its copy, even if it is still up
behind a partition. When it comes back it heartbeats Ready again, and its sweep removes whatever is
no longer bound to it.

The controller judges silence only while it can see: a probe reads the store every half second, and
while the store is unavailable no node is judged (agents cannot store their beats then, and nothing
could be written anyway); when it is back, every node's clock starts afresh, so a store outage
never makes the controller release the containers of nodes that were beating all along.

A Node that never heartbeated (no ``lastHeartbeat``: made by hand, not by an agent) is left alone.
Containers bound to a node that does not exist are released after the same grace and margin,
counted from when the controller first saw them so.

Level-based: ``reconcile(node name)`` reads the informers' caches, writes only what changed (the
countdown changes once a second), and returns when to look again. A new leader starts every
node's clock afresh, which only delays a release, never hastens it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from corral.controllers.base import Controller, Informers
from corral.model.errors import CorralError, NotFound
from corral.model.kinds import NODES
from corral.model.lifecycle import AGENT_FINALIZER, HEARTBEAT_PREFIX, now_rfc3339
from corral.model.placement import tolerates
from corral.model.resources import (
    Condition,
    Container,
    Node,
    Taint,
)
from corral.store.base import KeyValue
from corral.store.indexers import BY_NODE, node_of
from corral.store.informer import Change, Informer
from corral.store.objects import Objects

log = logging.getLogger(__name__)

NODE_STATUS_UNKNOWN = "NodeStatusUnknown"
NODE_LOST = "NodeLost"
RELEASED = "Released"
RELEASE_MARGIN = 3.0
STORE_PROBE_KEY = "/corral/_health"
STORE_PROBE_SECONDS = 0.5


@dataclass
class _Seen:
    heartbeat: str
    at: float  # this controller's monotonic clock when the heartbeat last changed


def release_countdown(silent: float, *, grace: float, margin: float) -> float:
    """Seconds until a node silent for ``silent`` seconds has its containers released (<= 0: now)."""
    return grace + margin - silent


def node_lost_message(name: str, silent: float, *, grace: float, release_in: float) -> str:
    if release_in <= 0:  # no seconds in it: a node that stays down is not rewritten every second
        return f"no heartbeat from {name} within the grace of {grace:g}s; its containers were released"
    return f"no heartbeat from {name} for {int(silent)}s (grace {grace:g}s); " \
        f"its containers are released in {math.ceil(release_in)}s"


def container_lost_message(node: str, release_in: float) -> str:
    return f"node {node} lost; released in {max(math.ceil(release_in), 0)}s"


UNREACHABLE = Taint(key="node.corral.io/unreachable", effect="NoExecute")


def stays_on_lost_node(c: Container) -> bool:
    """Whether ``c`` tolerates its node being unreachable (NoExecute), as DaemonSets' containers do:
    it is marked Unknown but not released while the Node object exists."""
    return tolerates(c.spec.tolerations, UNREACHABLE)


def _beat_of(kv: KeyValue) -> str:
    return kv.value.decode()


def _copy(obj: Container) -> Container:
    return msgspec.json.decode(msgspec.json.encode(obj), type=Container)


class NodeLifecycle(Controller):
    name = "node-lifecycle"
    workers = 2

    def __init__(self, informers: Informers, objects: Objects, *, node_grace: float = 5.0,
                 release_margin: float = RELEASE_MARGIN, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(informers, objects)
        self.node_grace = node_grace
        self.release_margin = release_margin
        self.clock = clock
        self.nodes = informers.of(Node)
        self.containers = informers.of(Container)
        self._seen: dict[str, _Seen] = {}
        self._status_beat: dict[str, str] = {}  # node -> the status.lastHeartbeat last seen
        self._lost: set[str] = set()
        self.store_down_at: float | None = None  # when the store probe first failed (None: it answers)
        self.containers.add_index(BY_NODE, node_of)
        self.nodes.add_handler(self._on_node)
        self.containers.add_handler(self._on_container)
        # agents beat with one small key each (HEARTBEAT_PREFIX); a renewal counts like a status beat
        self.beats: Informer[str, str] = informers.of_prefix(HEARTBEAT_PREFIX, _beat_of)
        self.beats.add_handler(self._on_beat)

    def _on_beat(self, change: Change, key: str, renewed: str, _old: str | None) -> None:
        """Note the beat. A live node already has its next check queued (when its grace would run
        out), so only a node seen for the first time or one judged lost needs a reconcile now; at
        1,000 nodes that is 500 reconciles a second saved."""
        if change is Change.DELETED:
            return
        name = key.removeprefix(HEARTBEAT_PREFIX)
        first = name not in self._seen
        self._seen[name] = _Seen("beat:" + renewed, self.clock())
        if first or name in self._lost:
            self.enqueue(name)

    async def run(self, synced: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._probe_store(), name="node-lifecycle-store-probe")
            tg.create_task(super().run(synced), name=f"{self.name}-workers")

    async def _probe_store(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self.objects.store.get(STORE_PROBE_KEY), STORE_PROBE_SECONDS * 2)
                answers = True
            except (CorralError, TimeoutError):
                answers = False
            if not answers and self.store_down_at is None:
                self.store_down_at = self.clock()
                log.warning("the store does not answer: no node is judged until it does")
            elif answers and self.store_down_at is not None:
                now = self.clock()
                log.warning("the store answers again after %.1fs: every node's clock starts afresh",
                            now - self.store_down_at)
                self.store_down_at = None
                for name, seen in list(self._seen.items()):
                    self._seen[name] = _Seen(seen.heartbeat, now)
                    self.enqueue(name)
            await asyncio.sleep(STORE_PROBE_SECONDS)

    # --- handlers: keys in ------------------------------------------------------------------

    def _on_node(self, change: Change, _key: str, node: Node, _old: Node | None) -> None:
        name = node.metadata.name
        if change is Change.DELETED:
            self._seen[name] = _Seen("", self.clock())  # gone: its containers' clock starts now
        else:
            beat = node.status.last_heartbeat  # a change of it is a beat; other status writes are not
            if self._status_beat.get(name) != beat:
                self._status_beat[name] = beat
                self._seen[name] = _Seen(beat, self.clock())
        self.enqueue(name)

    def _on_container(self, change: Change, _key: str, c: Container, old: Container | None) -> None:
        before = old.spec.node if old is not None else ""
        after = c.spec.node if change is not Change.DELETED else ""
        if after and (before != after or after in self._lost):
            self.enqueue(after)

    # --- reconcile --------------------------------------------------------------------------

    async def reconcile(self, key: str) -> float | None:
        name = key
        now = self.clock()
        if self.store_down_at is not None:
            return STORE_PROBE_SECONDS  # blind while the store is down: judge nobody
        node = self.nodes.get(NODES.key("", name))
        if node is not None and not node.status.last_heartbeat:
            return None  # not run by an agent: nothing to judge it by
        if node is None and not self._bound(name):
            self._seen.pop(name, None)
            self._status_beat.pop(name, None)
            self._lost.discard(name)
            return None
        seen = self._seen.setdefault(name, _Seen(node.status.last_heartbeat if node else "", now))
        silent = now - seen.at
        if silent < self.node_grace:
            self._lost.discard(name)
            return self.node_grace - silent + 0.05
        self._lost.add(name)
        bound = self._bound(name)
        release_in = release_countdown(silent, grace=self.node_grace, margin=self.release_margin)
        if node is not None:
            await self._mark_node(node, silent, release_in)
        if release_in > 0:
            for c in bound:
                await self._mark_unknown(c, name, release_in)
            return (release_in - math.floor(release_in) or 1.0) + 0.01  # when the countdown's second turns
        for c in bound:
            if node is not None and stays_on_lost_node(c):
                continue  # a daemon: it tolerates its node being unreachable (and goes with the node)
            await self._release(c, name)
        return None

    def _bound(self, name: str) -> list[Container]:
        return [c for k in sorted(self.containers.keys_by_index(BY_NODE, name))
                if (c := self.containers.get(k)) is not None]

    async def _mark_node(self, node: Node, silent: float, release_in: float) -> None:
        message = node_lost_message(node.metadata.name, silent, grace=self.node_grace, release_in=release_in)
        ready = next((c for c in node.status.conditions if c.type == "Ready"), None)
        if ready is not None and ready.status == "Unknown" and ready.message == message:
            return
        transition = ready.last_transition_time if ready is not None and ready.status == "Unknown" else now_rfc3339()
        cond = Condition(type="Ready", status="Unknown", reason=NODE_STATUS_UNKNOWN, message=message,
                         last_transition_time=transition)
        status = msgspec.structs.replace(node.status, conditions=[
            *(c for c in node.status.conditions if c.type != "Ready"), cond])
        await self.objects.update_status(msgspec.structs.replace(node, status=status))
        if ready is None or ready.status != "Unknown":
            log.warning("node %s is NotReady: %s", node.metadata.name, message)
            await self.record(node, "NodeNotReady", message)

    async def _mark_unknown(self, c: Container, node: str, release_in: float) -> None:
        message = container_lost_message(node, release_in)
        if c.status.phase == "Unknown" and c.status.message == message:
            return
        first = c.status.phase != "Unknown"
        status = msgspec.structs.replace(c.status, phase="Unknown", reason=NODE_LOST, message=message, ready=False)
        await self.objects.update_status(msgspec.structs.replace(c, status=status))
        if first:
            await self.record(c, NODE_LOST, message, warning=True)

    async def _release(self, c: Container, node: str) -> None:
        """Remove the agent's finalizer on the lost node's behalf and delete the container."""
        meta = c.metadata
        if AGENT_FINALIZER in meta.finalizers:
            fresh = _copy(c)
            fresh.metadata.finalizers = [f for f in meta.finalizers if f != AGENT_FINALIZER]
            try:
                await self.objects.update(fresh)
            except NotFound:
                return
        await self.objects.delete(Container, meta.name, namespace=meta.namespace)
        message = f"node {node} lost for longer than {self.node_grace + self.release_margin:g}s; " \
                  "released from it and deleted"
        log.warning("container %s/%s: %s", meta.namespace, meta.name, message)
        await self.record(c, RELEASED, message, warning=True)

