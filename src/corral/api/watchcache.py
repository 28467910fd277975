"""The API's watch cache: one etcd watch per kind, fanned out to every HTTP watcher.

A ``WatchCache`` lists its kind once, then follows one store watch from the list's revision. It keeps
the current objects (decoded, for selectors, and as JSON bytes with their resourceVersion spliced in,
so nothing is encoded twice) and a window of recent events in one shared log. An HTTP watcher is a
cursor into that log: it replays what it missed from its resourceVersion, then waits on a single
shared "something changed" future — no queue per watcher, no etcd watch per client.

Resuming from a revision older than the window answers ``Gone`` (410) and the client relists. When
the store compacts under the cache, it relists and appends the difference to the log as ordinary
ADDED/MODIFIED/DELETED events, so watchers stay consistent without noticing. A watcher that falls
more than the window behind is cut off (its stream ends) and resumes like any client would.

Objects this API process creates are not decoded a second time: the create handler hands its
decoded object to ``expect`` with the exact bytes it stores, and when the watch brings a put of those
very bytes for that key, the cache takes the handler's object instead of decoding the event (equal
bytes decode to an equal object; the event still decides *when* and at which revision the object
enters the cache, so the cache follows etcd's order exactly). A mismatch, or an event that never
comes (a failed create, a relist), just means a decode as usual; the hand-over table is bounded.

Watchers of one node (``fieldSelector=spec.node=<name>``, every agent and hollow node) are indexed:
the cache keeps, per node, the log positions of the events whose old or new object is bound there,
and a "something changed on this node" future. Such a watcher wakes only for its own node's events
and reads only those, so a thousand node watchers cost O(events) per change, not O(nodes * events).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from corral.model.errors import Gone, Unavailable
from corral.model.kinds import KindInfo
from corral.model.resources import Object
from corral.store import typed
from corral.store.base import Compacted, EventType, Store

log = logging.getLogger(__name__)

_META = b'"metadata":{'


def splice_rv(raw: bytes, revision: int) -> bytes:
    """The stored JSON with ``metadata.resourceVersion`` put in, without decoding it."""
    at = raw.find(_META)
    if at < 0:  # pragma: no cover - every stored object has metadata
        return raw
    at += len(_META)
    sep = b"" if raw[at : at + 1] == b"}" else b","
    return b"%s\"resourceVersion\":\"%d\"%s%s" % (raw[:at], revision, sep, raw[at:])


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _with_rv(json: bytes, old: int, new: int) -> bytes:
    return json.replace(b'"resourceVersion":"%d"' % old, b'"resourceVersion":"%d"' % new, 1)


# Events kept per kind for watches to resume from. Each holds its object decoded and as JSON, and the
# lines rendered for its watchers (~5 KB in all for a Container), so the window is most of the API's
# memory at scale: 20,000 is ~30 s of a 30,000-container burst, hours of a quiet cluster. A watch
# that falls further behind gets 410 Gone and lists again, as with Kubernetes' watch cache.
DEFAULT_WINDOW = 20_000

# Created objects handed over by this process's create handlers and not yet seen on the watch; past
# this many (events lost to a relist, failed creates not withdrawn) the table starts over.
MAX_EXPECTED = 10_000


@dataclass(slots=True)
class Entry:
    obj: Object
    json: bytes  # the API form, resourceVersion included
    revision: int


@dataclass(slots=True)
class CacheEvent:
    type: str  # ADDED | MODIFIED | DELETED
    key: str
    revision: int
    new: Entry | None
    old: Entry | None
    # the NDJSON line (or None: not seen) per watch filter, rendered once for all watchers sharing it
    rendered: dict[tuple[str, ...], bytes | None] = field(default_factory=dict)


class WatchCache:
    def __init__(self, store: Store, info: KindInfo, *, window: int = DEFAULT_WINDOW) -> None:
        self.store = store
        self.info = info
        self.window = window
        self.objects: dict[str, Entry] = {}
        self.revision = 0
        self.ready = asyncio.Event()
        self._log: list[CacheEvent] = []
        self._base = 0  # absolute index of self._log[0]
        self._oldest = 0  # watches may resume from any revision >= this
        self._waiters: set[asyncio.Future[None]] = set()  # watchers of everything, parked until a change
        self._node_log: dict[str, list[int]] = {}  # node → absolute log indexes of its events
        self._node_keys: dict[str, set[str]] = {}  # node → keys of the objects bound to it now
        self.closing = False  # the server is shutting down: watchers end their streams
        self._node_waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._expected: dict[str, tuple[bytes, Object]] = {}  # key → (stored bytes, decoded object)

    # --- reading ------------------------------------------------------------------------------

    @property
    def end(self) -> int:
        """Absolute index one past the newest event."""
        return self._base + len(self._log)

    def start_index(self, from_revision: int) -> int:
        """The log index of the first event after ``from_revision``; Gone if that is no longer kept."""
        if from_revision < self._oldest:
            raise Gone(
                f"resourceVersion {from_revision} is too old (the oldest kept for {self.info.plural} is "
                f"{self._oldest}); list again and watch from the list's resourceVersion"
            )
        lo, hi = 0, len(self._log)
        while lo < hi:  # first event with revision > from_revision
            mid = (lo + hi) // 2
            if self._log[mid].revision <= from_revision:
                lo = mid + 1
            else:
                hi = mid
        return self._base + lo

    def events_from(self, index: int) -> tuple[list[CacheEvent], int]:
        """Events from absolute ``index`` on, and the index after them. Gone if the watcher fell behind."""
        if index < self._base:
            raise Gone(f"watch fell more than {self.window} events behind; resume from your last resourceVersion")
        return self._log[index - self._base :], self.end

    def node_events_from(self, node: str, index: int) -> tuple[list[CacheEvent], int]:
        """Like ``events_from``, only the events whose old or new object is bound to ``node``."""
        if index < self._base:
            raise Gone(f"watch fell more than {self.window} events behind; resume from your last resourceVersion")
        positions = self._node_log.get(node, [])
        at = bisect.bisect_left(positions, index)
        return [self._log[i - self._base] for i in positions[at:]], self.end

    async def wait_changed(self, timeout: float, *, node: str | None = None) -> None:
        """Until something changes (on ``node``, when given) or ``timeout`` passes.

        Each waiter is a bare future woken by ``_notify`` and by one timer: no task, no shield —
        this is on the path of every event to every watcher.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        waiters = self._waiters if node is None else self._node_waiters.setdefault(node, set())
        waiters.add(fut)
        timer = loop.call_later(timeout, _wake, fut)
        try:
            await fut
        finally:
            timer.cancel()
            waiters.discard(fut)

    async def wait_for_revision(self, revision: int, timeout: float) -> bool:
        """Until the cache has caught up with ``revision`` (True), or ``timeout`` passed (False)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.revision < revision:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            await self.wait_changed(left)
        return True

    def close(self) -> None:
        """Tell every watcher to end its stream now (the server is shutting down); clients resume
        elsewhere from their last resourceVersion."""
        self.closing = True
        self._notify()

    async def wait_ready(self, timeout: float = 10.0) -> None:
        try:
            await asyncio.wait_for(self.ready.wait(), timeout)
        except TimeoutError as e:
            raise Unavailable(f"the {self.info.plural} cache is not ready (is etcd reachable?)") from e

    def matching(self, predicate: Callable[[Object], bool] | None = None, *, node: str | None = None) -> list[Entry]:
        """The current objects ``predicate`` accepts; with ``node``, only those bound to it are
        looked at (an agent's list: its node's few, not every object)."""
        if node is not None:
            keys = sorted(self._node_keys.get(node, ()))
            return [e for k in keys if (e := self.objects.get(k)) is not None and (predicate is None or predicate(e.obj))]
        return [e for e in self.objects.values() if predicate is None or predicate(e.obj)]

    def _index(self, key: str, before: str | None, after: str | None) -> None:
        """``key`` moved from node ``before`` to node ``after`` (None: none)."""
        if before == after:
            return
        if before is not None:
            keys = self._node_keys.get(before)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._node_keys[before]
        if after is not None:
            self._node_keys.setdefault(after, set()).add(key)

    # --- objects handed over by this process's writes -----------------------------------------

    def expect(self, key: str, value: bytes, obj: Object) -> None:
        """``obj`` is about to be stored at ``key`` as exactly ``value``: when the watch brings that
        put, use ``obj`` rather than decoding ``value`` again. The caller gives ``obj`` up: the cache
        owns it from now on (and sets its resourceVersion)."""
        if len(self._expected) >= MAX_EXPECTED:
            self._expected.clear()
        self._expected[key] = (value, obj)

    def withdraw(self, key: str, value: bytes) -> None:
        """The write ``expect`` announced did not happen."""
        held = self._expected.get(key)
        if held is not None and held[0] is value:
            del self._expected[key]

    # --- filling ------------------------------------------------------------------------------

    def _notify(self, nodes: tuple[str, ...] | None = None) -> None:
        """Wake the watchers of everything, and those of ``nodes`` (of every node when None)."""
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            _wake(waiter)
        if nodes is None:
            groups, self._node_waiters = list(self._node_waiters.values()), {}
        else:
            groups = [g for g in (self._node_waiters.pop(n, None) for n in nodes) if g is not None]
        for group in groups:
            for waiter in group:
                _wake(waiter)

    @staticmethod
    def _node_of(entry: Entry | None) -> str | None:
        spec = getattr(entry.obj, "spec", None) if entry is not None else None
        node = getattr(spec, "node", None)
        return node if isinstance(node, str) else None

    def _append(self, event: CacheEvent) -> tuple[str, ...]:
        """Log ``event`` and keep the per-node indexes in step; the nodes it concerns."""
        index = self.end
        self._log.append(event)
        before, after = self._node_of(event.old), self._node_of(event.new)
        self._index(event.key, before, after)
        nodes = tuple({n for n in (before, after) if n is not None})
        for node in nodes:
            self._node_log.setdefault(node, []).append(index)
        if len(self._log) > self.window + self.window // 4:  # trim in steps of a quarter window
            cut = len(self._log) - self.window
            self._oldest = self._log[cut - 1].revision
            del self._log[:cut]
            self._base += cut
            for node, positions in list(self._node_log.items()):
                kept = positions[bisect.bisect_left(positions, self._base):]
                if kept:
                    self._node_log[node] = kept
                else:
                    del self._node_log[node]
        return nodes

    def _entry(self, raw: bytes, revision: int) -> Entry:
        obj = typed.decode_bytes(raw, self.info.type, revision=revision)
        return Entry(obj, splice_rv(raw, revision), revision)

    async def _relist(self) -> int:
        self._expected.clear()  # events from before the list are not coming
        page = await self.store.list(self.info.prefix())
        fresh = {kv.key: self._entry(kv.value, kv.mod_revision) for kv in page.items}
        if self.ready.is_set():  # a relist after compaction: tell watchers what changed meanwhile
            for key, old in self.objects.items():
                if key not in fresh:
                    gone = Entry(old.obj, _with_rv(old.json, old.revision, page.revision), page.revision)
                    self._append(CacheEvent("DELETED", key, page.revision, None, gone))
            for key, new in fresh.items():
                old_entry = self.objects.get(key)
                if old_entry is None:
                    self._append(CacheEvent("ADDED", key, page.revision, new, None))
                elif old_entry.revision != new.revision:
                    self._append(CacheEvent("MODIFIED", key, page.revision, new, old_entry))
        else:  # the first list: no watcher yet, no events; the per-node key index from scratch
            self._oldest = page.revision
            for key, entry in fresh.items():
                self._index(key, None, self._node_of(entry))
        self.objects = fresh
        self.revision = page.revision
        self._notify()
        return page.revision

    async def run(self) -> None:
        """List, then follow the store's watch; relist on compaction or a lost watch. Runs until cancelled."""
        delay = 0.1
        while True:
            try:
                revision = await self._relist()
                self.ready.set()
                delay = 0.1
                async for ev in self.store.watch(self.info.prefix(), from_revision=revision + 1):
                    self._apply(ev.type, ev.key, ev.value, ev.revision)
                    delay = 0.1
            except Compacted:
                log.info("%s watch compacted; relisting", self.info.plural)
            except Unavailable as e:
                log.warning("%s watch cache: %s; retrying in %.1fs", self.info.plural, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _apply(self, type_: EventType, key: str, value: bytes, revision: int) -> None:
        old = self.objects.get(key)
        if type_ is EventType.DELETE:
            if old is None:
                return
            del self.objects[key]
            gone = Entry(old.obj, splice_rv(value, revision) if value else old.json, revision)
            gone.obj.metadata.resource_version = str(revision)
            nodes = self._append(CacheEvent("DELETED", key, revision, None, gone))
        else:
            held = self._expected.pop(key, None) if self._expected else None
            if held is not None and held[0] == value:  # this process's create: decoded already
                obj = held[1]
                obj.metadata.resource_version = str(revision)
                new = Entry(obj, splice_rv(value, revision), revision)
            else:
                new = self._entry(value, revision)
            self.objects[key] = new
            nodes = self._append(CacheEvent("MODIFIED" if old else "ADDED", key, revision, new, old))
        self.revision = max(self.revision, revision)
        self._notify(nodes)
