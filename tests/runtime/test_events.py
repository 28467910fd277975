"""containerd events as typed events: exits arrive, and the stream and tasks outlive a containerd restart."""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import AsyncIterator

from google.protobuf import any_pb2, timestamp_pb2

from corral.runtime._pb.containerd.events import task_pb2 as task_events
from corral.runtime._pb.containerd.services.events.v1 import events_pb2
from corral.runtime.client import Client
from corral.runtime.containers import create_container, delete_container
from corral.runtime.embedded import EmbeddedContainerd
from corral.runtime.events import (
    Event,
    OtherEvent,
    Resubscribed,
    TaskCreate,
    TaskExit,
    decode,
    scope_filters,
    subscribe,
)
from corral.runtime.images import Image
from corral.runtime.spec import build_spec
from corral.runtime.tasks import Task, create_task

TOPICS = ('topic=="/tasks/exit"', 'topic=="/tasks/create"', 'topic=="/tasks/oom"')


async def next_of(events: AsyncIterator[Event], kind: type, timeout: float = 20) -> Event:
    async def find() -> Event:
        async for event in events:
            if isinstance(event, kind):
                return event
        raise AssertionError("the event stream ended")

    return await asyncio.wait_for(find(), timeout)


async def created_task(
    client: Client, image: Image, command: list[str], events: AsyncIterator[Event], *, cid: str
) -> Task:
    """Create the container and its task, and see the TaskCreate event: the subscription is live."""
    spec = build_spec(container_id=cid, image_config=image.config, command=command)
    await create_container(client, id=cid, image=image, spec=spec)
    task = await create_task(client, cid)
    while (await next_of(events, TaskCreate)).container_id != cid:  # type: ignore[attr-defined]
        pass
    return task


def test_an_envelope_is_decoded_by_its_type_and_unknown_types_keep_their_topic() -> None:
    exit_ = task_events.TaskExit(
        container_id="c1", id="c1", pid=42, exit_status=3, exited_at=timestamp_pb2.Timestamp(seconds=1_700_000_000)
    )
    env = events_pb2.Envelope(
        namespace="corral",
        topic="/tasks/exit",
        event=any_pb2.Any(type_url="containerd.events.TaskExit", value=exit_.SerializeToString()),
    )
    got = decode(env)
    assert isinstance(got, TaskExit)
    assert (got.container_id, got.pid, got.exit_status, got.namespace) == ("c1", 42, 3, "corral")
    assert got.exited_at is not None and got.exited_at.year == 2023
    other = decode(events_pb2.Envelope(topic="/images/create", event=any_pb2.Any(type_url="x.ImageCreate")))
    assert other == OtherEvent("/images/create", "x.ImageCreate", "")


def test_filters_are_narrowed_to_the_clients_namespace() -> None:
    assert scope_filters(['topic=="/tasks/exit"'], "corral") == ['topic=="/tasks/exit",namespace=="corral"']
    assert scope_filters([], "n") == ['namespace=="n"']
    assert scope_filters(['namespace=="x"'], "n") == ['namespace=="x"']


async def test_a_task_exit_arrives_as_an_event_with_its_status(ctr_client: Client, busybox_image: Image) -> None:
    cid = f"evt-{secrets.token_hex(3)}"
    try:
        async with subscribe(ctr_client, TOPICS) as events:
            task = await created_task(ctr_client, busybox_image, ["sh", "-c", "exit 3"], events, cid=cid)
            await task.start()
            event = await next_of(events, TaskExit)
        assert isinstance(event, TaskExit)
        assert (event.container_id, event.exit_status, event.namespace) == (cid, 3, "corral")
        assert event.exited_at is not None
    finally:
        await delete_container(ctr_client, cid)


async def test_a_task_keeps_running_across_a_containerd_restart_and_events_resume(
    containerd: EmbeddedContainerd, ctr_client: Client, busybox_image: Image
) -> None:
    cid = f"evt-{secrets.token_hex(3)}"
    try:
        async with subscribe(ctr_client, TOPICS, max_backoff=0.5) as events:
            task = await created_task(ctr_client, busybox_image, ["sleep", "600"], events, cid=cid)
            exit_ = await task.start()
            pid = (await task.status()).pid
            await containerd.stop()
            await containerd.start()
            assert isinstance(await next_of(events, Resubscribed), Resubscribed)
            status = await task.status()
            assert (status.state, status.pid) == ("running", pid)
            await task.kill(signal.SIGKILL)
            event = await next_of(events, TaskExit)
        assert isinstance(event, TaskExit) and event.container_id == cid
        assert (await exit_.wait(timeout=10)).code == 137  # the Wait in flight rode out the restart
    finally:
        await delete_container(ctr_client, cid)
