"""How the reconcile steps report what they did: a sink of Events, implemented by the agent role.

The steps never talk to the API themselves (they sit below ``roles/`` and beside ``api/``); they
call ``EventSink.record`` and the agent turns that into an Event object through the API.
"""

from __future__ import annotations

from typing import Literal, Protocol

from corral.model.resources import Container

EventType = Literal["Normal", "Warning"]


class EventSink(Protocol):
    def record(self, obj: Container, *, type: EventType, reason: str, message: str) -> None: ...

    def record_orphan(self, *, namespace: str, name: str, uid: str, reason: str, message: str) -> None:
        """An Event about something no longer in the API (a removed or adopted leftover)."""
        ...
