"""containerd's event stream as typed events, resubscribing after containerd restarts.

``subscribe(client, filters)`` (an async context manager and iterator) streams ``Events.Subscribe``: each envelope's
``Any`` payload is decoded by its type into ``TaskExit``, ``TaskOOM``, ``TaskStart``,
``TaskCreate``, ``TaskDelete`` — anything else comes as ``OtherEvent`` with the topic. Filters are
containerd's (``topic=="/tasks/exit"``); containerd streams every namespace's events, so each
filter is narrowed to the client's namespace unless it names one itself.

When the connection drops (containerd restarting), the iterator resubscribes with exponential
backoff (0.1 s doubling to ``max_backoff``) and goes on; the caller sees a ``Resubscribed`` marker
first so it can resync. Events published while no subscription was open are *not* replayed —
containerd keeps no event history — so whoever acts on events must also resync from the world
(list tasks, ``Task.status``) after a ``Resubscribed``, and periodically: the agent's resync
loop is what makes a missed exit harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from google.protobuf import any_pb2
from google.protobuf.message import Message

from corral.aiokit.backoff import Backoff
from corral.model.errors import CorralError, Unavailable
from corral.runtime._pb.containerd.events import task_pb2 as task_events
from corral.runtime._pb.containerd.services.events.v1 import events_pb2
from corral.runtime.client import Client
from corral.runtime.tasks import _time

TASK_EXIT = "/tasks/exit"
TASK_OOM = "/tasks/oom"
EXIT_AND_OOM = (f'topic=="{TASK_EXIT}"', f'topic=="{TASK_OOM}"')


@dataclass(frozen=True, slots=True)
class TaskExit:
    """A process of a task exited (the init process when ``id == container_id``)."""

    container_id: str
    id: str
    pid: int
    exit_status: int
    exited_at: datetime | None
    namespace: str = ""


@dataclass(frozen=True, slots=True)
class TaskOOM:
    """The kernel's OOM killer hit the task's cgroup."""

    container_id: str
    namespace: str = ""


@dataclass(frozen=True, slots=True)
class TaskStart:
    container_id: str
    pid: int
    namespace: str = ""


@dataclass(frozen=True, slots=True)
class TaskCreate:
    container_id: str
    pid: int
    namespace: str = ""


@dataclass(frozen=True, slots=True)
class TaskDelete:
    container_id: str
    pid: int
    exit_status: int
    exited_at: datetime | None
    namespace: str = ""


@dataclass(frozen=True, slots=True)
class OtherEvent:
    """An event corral does not decode; its topic and raw type."""

    topic: str
    type_url: str
    namespace: str = ""


@dataclass(frozen=True, slots=True)
class Resubscribed:
    """The stream was lost and is open again; events in the gap are gone — resync now."""

    attempts: int


Event = TaskExit | TaskOOM | TaskStart | TaskCreate | TaskDelete | OtherEvent | Resubscribed


def decode(envelope: events_pb2.Envelope) -> Event:
    """The typed event carried by one envelope."""
    ns, payload = envelope.namespace, envelope.event
    name = payload.type_url.rsplit("/", 1)[-1]
    if name == "containerd.events.TaskExit":
        e = _unpack(payload, task_events.TaskExit())
        return TaskExit(e.container_id, e.id, int(e.pid), int(e.exit_status), _time(e.exited_at), ns)
    if name == "containerd.events.TaskOOM":
        return TaskOOM(_unpack(payload, task_events.TaskOOM()).container_id, ns)
    if name == "containerd.events.TaskStart":
        s = _unpack(payload, task_events.TaskStart())
        return TaskStart(s.container_id, int(s.pid), ns)
    if name == "containerd.events.TaskCreate":
        c = _unpack(payload, task_events.TaskCreate())
        return TaskCreate(c.container_id, int(c.pid), ns)
    if name == "containerd.events.TaskDelete":
        d = _unpack(payload, task_events.TaskDelete())
        return TaskDelete(d.container_id, int(d.pid), int(d.exit_status), _time(d.exited_at), ns)
    return OtherEvent(envelope.topic, payload.type_url, ns)


_M = TypeVar("_M", bound=Message)


def _unpack(payload: any_pb2.Any, message: _M) -> _M:
    message.ParseFromString(payload.value)
    return message


class Subscription:
    """An open event subscription: ``async with subscribe(client) as events: async for e in events``.

    Entering starts a pump task (owned here, cancelled on exit) that reads the stream into a queue,
    so the stream is opened before the caller does anything whose events it wants, and reopened
    right away after a reconnect even while the caller is busy resyncing on ``Resubscribed``.
    A bad filter (or any error other than unavailability) ends the iteration with that error.
    """

    def __init__(self, client: Client, filters: Sequence[str], *, max_backoff: float = 5.0) -> None:
        self.client = client
        self.filters = scope_filters(filters, client.namespace)
        self.max_backoff = max_backoff
        self._queue: asyncio.Queue[Event | CorralError] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Subscription:
        self._pump = asyncio.create_task(self._run(), name=f"containerd events {self.filters}")
        await asyncio.sleep(0)  # let the pump send the Subscribe request
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        if self._pump is None:
            raise RuntimeError("use the subscription inside `async with`")
        item = await self._queue.get()
        if isinstance(item, CorralError):
            raise item
        return item

    async def _run(self) -> None:
        request = events_pb2.SubscribeRequest(filters=self.filters)
        attempts, backoff = 0, Backoff(initial=0.1, maximum=self.max_backoff)
        while True:
            try:
                if attempts:
                    await self.client.version()  # Unavailable until containerd answers again
                    self._queue.put_nowait(Resubscribed(attempts))
                    attempts = 0
                    backoff.succeeded()
                async for envelope in self.client.stream(self.client.events.Subscribe, request):
                    self._queue.put_nowait(decode(envelope))
                attempts += 1  # the server ended the stream (containerd stopping): open a new one
            except Unavailable:
                attempts += 1
                await asyncio.sleep(backoff.next())
            except CorralError as e:
                self._queue.put_nowait(e)
                return


def subscribe(client: Client, filters: Sequence[str] = EXIT_AND_OOM, *, max_backoff: float = 5.0) -> Subscription:
    """Typed events matching any of ``filters``, forever, resubscribing after connection loss:
    ``async with subscribe(client) as events: async for event in events: ...``."""
    return Subscription(client, filters, max_backoff=max_backoff)


def scope_filters(filters: Sequence[str], namespace: str) -> list[str]:
    """containerd sends every namespace's events; AND each filter with the client's namespace
    unless it names one itself (filters in the list are OR'ed, terms within one are AND'ed)."""
    own = f'namespace=="{namespace}"'
    if not filters:
        return [own]
    return [f if "namespace" in f else f"{f},{own}" for f in filters]
