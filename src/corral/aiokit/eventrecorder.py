"""One EventRecorder for every writer of Events: repeats aggregated, memory bounded, drops counted.

The controllers (``Controller.record``) and the agent (its ``EventSink`` for the reconcile steps)
report what they do as Events, best effort: a lost Event never undoes the work it reports. They
share this recorder, which works like Kubernetes' event correlator:

- **Repeats are one Event.** An Event is keyed by what it says — the object it is about (kind,
  namespace, name, uid), its type, reason and message, and its source (component, node). A repeat
  of a key whose Event was written less than ``window`` seconds ago does not create another
  Event: the one written gets ``count + 1`` and a new ``lastTimestamp`` (an update). Repeats that
  come while the key still waits to be written merge into it before it is written at all, so a
  burst of the same warning costs one write.
- **Bounded.** ``record`` never blocks and never awaits: it puts the Event on a queue of at most
  ``max_pending`` keys, written by ``run`` (one task, in order). A record that finds the queue full
  is dropped. The keys remembered for aggregation are an LRU of at most ``max_keys``: the
  least recently seen key is forgotten first (its next repeat is a new Event, nothing is lost).
- **Counted.** Every dropped Event is counted by why (``queue-full``, ``write-failed``) in
  ``dropped``, which the roles export as the ``corral_events_dropped_total`` counter
  (``aiokit/metrics.py``), next to ``written`` and ``aggregated``.

Writing is the caller's: ``create(event)`` and ``update(event)`` (compare-and-swap on its
resourceVersion) — the API client for the agent, the store's ``Objects`` for the controllers. An
update that loses (the Event expired, or was changed) falls back to a new Event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from corral.model.errors import Conflict, CorralError, NotFound
from corral.model.lifecycle import new_event, now_rfc3339
from corral.model.resources import Event, ObjectReference

if TYPE_CHECKING:  # a worker loads the metrics library only when it serves its metrics
    from corral.aiokit.metrics import CallbackCollector

log = logging.getLogger(__name__)

WINDOW_SECONDS = 600.0  # Kubernetes' correlator aggregates within ten minutes too
MAX_KEYS = 4096
MAX_PENDING = 1000

# what an Event is about and says, and who says it: the aggregation key
Key = tuple[str, str, str, str, str, str, str, str, str]


@dataclass
class _Pending:
    about: ObjectReference
    reason: str
    message: str
    warning: bool
    node: str
    count: int
    first: str  # when it was first recorded (RFC 3339), for a new Event
    last: str  # when it was last recorded


@dataclass
class _Written:
    event: Event  # as last written (its resourceVersion: the next update's compare-and-swap)
    at: float  # when it was first written (monotonic): the window runs from here


class EventRecorder:
    def __init__(self, *, component: str, create: Callable[[Event], Awaitable[Event]],
                 update: Callable[[Event], Awaitable[Event]], node: str = "", window: float = WINDOW_SECONDS,
                 max_keys: int = MAX_KEYS, max_pending: int = MAX_PENDING,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.component = component
        self.node = node
        self.create = create
        self.update = update
        self.window = window
        self.max_keys = max_keys
        self.max_pending = max_pending
        self.clock = clock
        self._pending: OrderedDict[Key, _Pending] = OrderedDict()
        self._written: OrderedDict[Key, _Written] = OrderedDict()
        self._wakeup = asyncio.Event()
        # figures for /metrics
        self.written = 0  # Events created
        self.aggregated = 0  # repeats folded into an Event instead of a new one
        self.dropped: Counter[str] = Counter()  # by why: queue-full, write-failed

    def record(self, about: ObjectReference, *, reason: str, message: str, warning: bool = False,
               node: str | None = None, when: str = "") -> None:
        """Note an Event about ``about`` (written later by ``run``); never blocks, never raises."""
        node = self.node if node is None else node
        key: Key = (about.kind, about.namespace, about.name, about.uid, "Warning" if warning else "Normal",
                    reason, message, self.component, node)
        when = when or now_rfc3339()
        pending = self._pending.get(key)
        if pending is not None:  # still waiting: the repeat joins it
            pending.count += 1
            pending.last = when
            self.aggregated += 1
            return
        if len(self._pending) >= self.max_pending:
            self.dropped["queue-full"] += 1
            return
        self._pending[key] = _Pending(about, reason, message, warning, node, 1, when, when)
        self._wakeup.set()

    def pending(self) -> int:
        return len(self._pending)

    async def run(self) -> None:
        """Write what is recorded, in order, until cancelled."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write everything recorded so far (``run`` does; tests call it)."""
        while self._pending:
            key, pending = self._pending.popitem(last=False)
            try:
                await self._write(key, pending)
            except CorralError as e:
                self.dropped["write-failed"] += pending.count
                log.debug("%s: could not record event %s about %s/%s: %s", self.component, pending.reason,
                          pending.about.namespace, pending.about.name, e)
            except Exception:  # best effort, and the recorder goes on
                self.dropped["write-failed"] += pending.count
                log.exception("%s: recording event %s failed", self.component, pending.reason)

    async def _write(self, key: Key, pending: _Pending) -> None:
        seen = self._written.get(key)
        now = self.clock()
        if seen is not None and now - seen.at < self.window:
            spec = seen.event.spec
            repeated = msgspec.structs.replace(seen.event, spec=msgspec.structs.replace(
                spec, count=spec.count + pending.count, last_timestamp=pending.last))
            try:
                seen.event = await self.update(repeated)
                self._written.move_to_end(key)
                self.aggregated += pending.count
                return
            except (Conflict, NotFound):
                pass  # expired or changed meanwhile: a new Event
        event = new_event(pending.about, reason=pending.reason, message=pending.message, component=self.component,
                          warning=pending.warning, node=pending.node, when=pending.first)
        event.spec.count, event.spec.last_timestamp = pending.count, pending.last
        created = await self.create(event)
        self.written += 1
        self.aggregated += pending.count - 1
        self._written[key] = _Written(created, now)
        self._written.move_to_end(key)
        while len(self._written) > self.max_keys:
            self._written.popitem(last=False)  # the least recently seen key: its next repeat is a new Event


def add_metrics(collector: CallbackCollector, recorders: Callable[[], Iterable[EventRecorder]]) -> None:
    """``corral_events_recorded_total{component,outcome}`` (written, aggregated) and
    ``corral_events_dropped_total{component,why}`` of the recorders of the moment, read at scrape time."""

    def recorded() -> dict[tuple[str, ...], float]:
        out: dict[tuple[str, ...], float] = {}
        for r in recorders():
            out[(r.component, "written")] = float(r.written)
            out[(r.component, "aggregated")] = float(r.aggregated)
        return out

    def dropped() -> dict[tuple[str, ...], float]:
        return {(r.component, why): float(n) for r in recorders() for why, n in r.dropped.items()}

    collector.counter("corral_events_recorded", "Events recorded: created (written), or counted as a repeat of "
                      "one (aggregated).", recorded, labels=("component", "outcome"))
    collector.counter("corral_events_dropped", "Events not written: the recorder's queue was full, or the write "
                      "failed.", dropped, labels=("component", "why"))
