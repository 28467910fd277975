"""An aggregated Event (aiokit/eventrecorder.py) shows how often and over how long, as kubectl does."""

from __future__ import annotations

from datetime import UTC, datetime

from corral.cli import tables
from corral.model.resources import Event, EventSpec, ObjectMeta, ObjectReference

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def event(count: int) -> Event:
    return Event(metadata=ObjectMeta(name="web.1", namespace="default"),
                 spec=EventSpec(involved_object=ObjectReference(kind="Container", name="web"), reason="BackOff",
                                message="back-off", type="Warning", count=count,
                                first_timestamp="2026-01-01T11:57:00Z", last_timestamp="2026-01-01T11:59:55Z"))


def test_a_repeated_event_says_how_many_times_over_how_long() -> None:
    assert tables.event_seen(event(5), NOW) == "5s (x5 over 3m)"


def test_a_single_event_says_only_when() -> None:
    assert tables.event_seen(event(1), NOW) == "5s"
