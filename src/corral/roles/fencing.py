"""Self-fencing of a worker that has lost the API: it stops what it runs before the cluster replaces it.

The control plane's node lifecycle controller releases a silent node's containers after
``node_grace`` plus a margin, and their owners start replacements elsewhere. A worker cut off
from the API (a partition, not a crash) would keep its copies running: two of one thing. So the
agent fences itself first: ``Fence`` remembers when a heartbeat last succeeded — the time it was
*sent*, the earliest the API could have seen it — and once ``fence_after`` (by default a second
less than the grace) passes without one, it kills every task of this node (SIGKILL: they are being
replaced anyway) and stays ``fenced``: the agent's workers start and restart nothing.

When a heartbeat succeeds again the fence resyncs before it lifts: it lists, fresh from the API,
the containers still bound here; every uid the agent knew that is not among them was released while
we were away and is remembered as ``released`` so a stale copy in the agent's watch cache (its
watch may still be catching up) can never start it again; the sweep removes their remains; then
the fence lifts and every key is reconciled — what is still ours starts again.

Fencing exists to prevent two copies, so it is only for a node the control plane might be replacing.
When every API server the agent knows answers but says its store is unavailable (``StoreUnavailable``
on the heartbeat), nobody can release this node's containers — releasing is a write — so the agent
keeps them running: ``store_unavailable`` counts such a beat as contact and says so once in the log,
and ``store_back`` (the next beat that gets through) tells how long it lasted, for an Event. A node
cut off from the API servers (or from any one of them) still fences as before.

The timing is the decision in ``due``; the effects (kill, list, sweep) are callables the agent
passes in, so the logic is tested without a cluster and the agent keeps its own handles.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterable

from corral.model.errors import Conflict, NotFound
from corral.reconcile import naming
from corral.runtime import containers as ctrs
from corral.runtime import tasks
from corral.runtime.client import Client

log = logging.getLogger(__name__)

CHECK_SECONDS = 0.2
REKILL_SECONDS = 1.0  # while fenced, anything that started meanwhile (a sync in flight) is killed again


async def kill_node_tasks(client: Client, node: str) -> int:
    """SIGKILL every running task of this node's containers; the number killed.

    The tasks are left stopped, not deleted: if the container is still ours after the fence lifts,
    its restart policy decides what happens, as after any other kill.
    """
    killed = 0
    for info in await ctrs.list_containers(client, {naming.LABEL_NODE: node}):
        task = tasks.Task(client, info.id)
        try:
            status = await task.status()
        except NotFound:
            continue
        if status.state == "stopped":
            continue
        with contextlib.suppress(NotFound, Conflict):
            await task.kill(signal.SIGKILL, all=True)
            killed += 1
    return killed


class Fence:
    def __init__(self, *, fence_after: float, kill_all: Callable[[], Awaitable[int]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.fence_after = fence_after
        self.kill_all = kill_all
        self.clock = clock
        self.last_contact = clock()
        self.fenced = False
        self.fenced_at: float | None = None
        self.released: set[str] = set()  # uids released by the control plane while we were fenced
        self.store_down_since: float | None = None  # every API server said its store is unavailable
        self._lock = asyncio.Lock()

    # --- the decision -----------------------------------------------------------------------

    def due(self, now: float | None = None) -> bool:
        """True when the fence should go up: no successful contact for ``fence_after`` seconds."""
        now = self.clock() if now is None else now
        return not self.fenced and now - self.last_contact >= self.fence_after

    def blocks(self, uid: str) -> bool:
        """Whether the agent must leave this container alone (not start, restart or report it)."""
        return self.fenced or uid in self.released

    def contact(self, sent_at: float) -> None:
        """A heartbeat sent at ``sent_at`` (monotonic) succeeded."""
        self.last_contact = max(self.last_contact, sent_at)

    def store_unavailable(self, sent_at: float) -> None:
        """Every API server answered a beat sent at ``sent_at`` with "store unavailable": nothing
        can release this node's containers, so this counts as contact (no fence)."""
        if self.store_down_since is None:
            self.store_down_since = sent_at
            log.warning("every API server answers but says its store is unavailable: nothing can release this "
                        "node's containers, so they keep running (no fence)")
        self.contact(sent_at)

    def store_back(self) -> float | None:
        """A beat got through: how long the store was unavailable (None if it was not)."""
        since, self.store_down_since = self.store_down_since, None
        if since is None:
            return None
        away = self.clock() - since
        log.warning("the API's store is back after %.1fs; this node's containers kept running", away)
        return away

    # --- the effects ------------------------------------------------------------------------

    async def fence(self) -> None:
        async with self._lock:
            if self.fenced:
                return
            self.fenced = True
            self.fenced_at = self.clock()
            silent = self.fenced_at - self.last_contact
            log.warning("no contact with the API for %.1fs (fence after %.1fs): fencing — killing every task",
                        silent, self.fence_after)
            try:
                killed = await self.kill_all()
                log.warning("fenced: killed %d task(s); nothing starts until the API answers again", killed)
            except Exception:
                log.exception("fencing could not kill every task; trying again")
                self.fenced = False  # the next check tries again

    async def watch(self) -> None:
        """Raise the fence when it is due (and keep everything killed while it is up); runs until cancelled."""
        last_kill = self.clock()
        while True:
            if self.due():
                await self.fence()
                last_kill = self.clock()
            elif self.fenced and self.clock() - last_kill >= REKILL_SECONDS:
                last_kill = self.clock()
                async with self._lock:
                    if self.fenced:
                        with contextlib.suppress(Exception):
                            if killed := await self.kill_all():
                                log.warning("fenced: killed %d more task(s)", killed)
            await asyncio.sleep(CHECK_SECONDS)

    async def lift(self, *, known: Iterable[str], bound_now: Callable[[], Awaitable[set[str]]],
                   sweep: Callable[[set[str]], Awaitable[None]], resync: Callable[[], None]) -> None:
        """After contact is back: forget what was released meanwhile, clean it up, then reconcile again.

        ``known`` are the uids the agent's cache holds; ``bound_now`` lists (fresh from the API) the
        uids bound to this node; ``sweep(wanted)`` removes the remains of everything else; ``resync``
        queues every key. If any step fails the fence stays up and the next heartbeat tries again.
        """
        async with self._lock:
            if not self.fenced:
                return
            wanted = await bound_now()
            gone = set(known) - wanted
            self.released |= gone
            await sweep(wanted)
            self.fenced = False
            away = self.clock() - (self.fenced_at or self.clock())
            log.warning("contact with the API is back after %.1fs fenced; %d container(s) were released meanwhile "
                        "and removed; the rest start again", away, len(gone))
            self.fenced_at = None
        resync()
