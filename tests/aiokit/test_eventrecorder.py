"""The EventRecorder (aiokit/eventrecorder.py): repeats aggregated into one Event, bounded, drops counted."""

from __future__ import annotations

import msgspec
from prometheus_client import CollectorRegistry, generate_latest

from corral.aiokit.eventrecorder import EventRecorder, add_metrics
from corral.aiokit.metrics import CallbackCollector
from corral.model.errors import Conflict, NotFound, Unavailable
from corral.model.resources import Event, ObjectReference

POD = ObjectReference(kind="Container", namespace="default", name="web", uid="u1")
OTHER = ObjectReference(kind="Container", namespace="default", name="db", uid="u2")


class Events:
    """An in-memory Event store with a compare-and-swap update, as the API and ``Objects`` have."""

    def __init__(self) -> None:
        self.by_name: dict[str, Event] = {}
        self.revision = 0
        self.creates = 0
        self.updates = 0
        self.fail: Exception | None = None

    async def create(self, event: Event) -> Event:
        if self.fail is not None:
            raise self.fail
        self.creates += 1
        return self._store(event)

    async def update(self, event: Event) -> Event:
        current = self.by_name.get(event.metadata.name)
        if current is None:
            raise NotFound("gone")
        if current.metadata.resource_version != event.metadata.resource_version:
            raise Conflict("changed")
        self.updates += 1
        return self._store(event)

    def _store(self, event: Event) -> Event:
        self.revision += 1
        stored = msgspec.structs.replace(event, metadata=msgspec.structs.replace(
            event.metadata, resource_version=str(self.revision)))
        self.by_name[stored.metadata.name] = stored
        return stored

    def all(self) -> list[Event]:
        return list(self.by_name.values())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def recorder(store: Events, clock: Clock | None = None, **kw: int) -> EventRecorder:
    return EventRecorder(component="agent", node="node-1", create=store.create, update=store.update,
                         clock=clock or Clock(), **kw)


async def test_a_repeat_within_the_window_counts_on_the_event_already_written() -> None:
    store, clock = Events(), Clock()
    r = recorder(store, clock)
    r.record(POD, reason="BackOff", message="back-off 10s", warning=True, when="2026-01-01T00:00:00Z")
    await r.flush()
    clock.now += 60
    r.record(POD, reason="BackOff", message="back-off 10s", warning=True, when="2026-01-01T00:01:00Z")
    await r.flush()
    [event] = store.all()
    assert (event.spec.count, event.spec.type, event.spec.reason) == (2, "Warning", "BackOff")
    assert (event.spec.first_timestamp, event.spec.last_timestamp) == ("2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z")
    assert (event.spec.source.component, event.spec.source.node) == ("agent", "node-1")
    assert (store.creates, store.updates, r.written, r.aggregated) == (1, 1, 1, 1)


async def test_repeats_that_wait_together_are_written_once_with_their_count() -> None:
    store = Events()
    r = recorder(store)
    for _ in range(50):
        r.record(POD, reason="Unhealthy", message="probe failed")
    assert r.pending() == 1
    await r.flush()
    [event] = store.all()
    assert event.spec.count == 50 and (store.creates, store.updates) == (1, 0)


async def test_another_object_reason_or_message_is_another_event() -> None:
    store = Events()
    r = recorder(store)
    r.record(POD, reason="BackOff", message="a")
    r.record(POD, reason="BackOff", message="b")
    r.record(POD, reason="Started", message="a")
    r.record(OTHER, reason="BackOff", message="a")
    r.record(POD, reason="BackOff", message="a", warning=True)
    await r.flush()
    assert len(store.all()) == 5 and all(e.spec.count == 1 for e in store.all())


async def test_a_repeat_after_the_window_is_a_new_event() -> None:
    store, clock = Events(), Clock()
    r = recorder(store, clock)
    r.record(POD, reason="BackOff", message="a")
    await r.flush()
    clock.now += 601
    r.record(POD, reason="BackOff", message="a")
    await r.flush()
    assert sorted(e.spec.count for e in store.all()) == [1, 1] and store.updates == 0


async def test_an_event_gone_or_changed_meanwhile_is_written_anew() -> None:
    store = Events()
    r = recorder(store)
    r.record(POD, reason="BackOff", message="a")
    await r.flush()
    store.by_name.clear()  # expired (its lease) or deleted
    r.record(POD, reason="BackOff", message="a")
    await r.flush()
    [event] = store.all()
    assert event.spec.count == 1 and store.creates == 2


async def test_the_keys_it_remembers_are_bounded_least_recently_seen_first() -> None:
    store = Events()
    r = recorder(store, max_keys=2)
    refs = [ObjectReference(kind="Container", namespace="default", name=f"c{i}", uid=f"u{i}") for i in range(3)]
    for ref in refs:
        r.record(ref, reason="Started", message="x")
        await r.flush()
    assert len(r._written) == 2
    r.record(refs[2], reason="Started", message="x")  # remembered: counted on its Event
    r.record(refs[0], reason="Started", message="x")  # forgotten: a new Event (nothing lost)
    await r.flush()
    assert store.updates == 1 and store.creates == 4


async def test_a_full_queue_drops_and_counts_and_so_does_a_failed_write() -> None:
    store = Events()
    r = recorder(store, max_pending=3)
    for i in range(5):
        r.record(ObjectReference(kind="Container", namespace="default", name=f"c{i}"), reason="R", message="m")
    r.record(ObjectReference(kind="Container", namespace="default", name="c0"), reason="R", message="m")  # joins
    assert r.dropped["queue-full"] == 2 and r.pending() == 3
    store.fail = Unavailable("the API is down")
    await r.flush()
    assert r.dropped["write-failed"] == 4  # c0 twice, c1, c2
    registry = CollectorRegistry()
    collector = CallbackCollector()
    add_metrics(collector, lambda: [r])
    registry.register(collector)
    text = generate_latest(registry).decode()
    assert 'corral_events_dropped_total{component="agent",why="queue-full"} 2.0' in text
    assert 'corral_events_dropped_total{component="agent",why="write-failed"} 4.0' in text
