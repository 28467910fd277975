"""Namespace deletion against the session's real control plane: Terminating, emptied, then gone."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable

import pytest
import pytest_asyncio

from corral.api.client import ApiClient
from corral.model.errors import Forbidden, NotFound
from corral.model.lifecycle import NAMESPACE_FINALIZER
from corral.model.resources import (
    Container,
    ContainerSpec,
    Event,
    EventSpec,
    Namespace,
    NetworkPolicy,
    ObjectMeta,
    ObjectReference,
    Volume,
)
from tests.fixtures.cluster import eventually
from tests.fixtures.control import RunningControl

IMAGE = "127.0.0.1:5000/busybox:1"
HOLD = "corral-test/hold"


async def absent(read: Awaitable[object]) -> None:
    try:
        await read
    except NotFound:
        return
    raise AssertionError("still there")


@pytest_asyncio.fixture
async def client(control_plane: RunningControl) -> AsyncIterator[ApiClient]:
    async with ApiClient(control_plane.url, control_plane.admin_token, ssl_context=control_plane.ssl) as c:
        yield c


def unbound(name: str, namespace: str) -> Container:
    spec = ContainerSpec(image=IMAGE, node_selector={"corral-test/no-such-node": "true"})
    return Container(metadata=ObjectMeta(name=name, namespace=namespace), spec=spec)


async def test_a_new_namespace_carries_the_namespace_finalizer(client: ApiClient) -> None:
    name = f"ns-{uuid.uuid4().hex[:8]}"
    ns = await client.create(Namespace(metadata=ObjectMeta(name=name)))
    try:
        assert ns.metadata.finalizers == [NAMESPACE_FINALIZER]
        assert ns.status.phase == "Active"
    finally:
        with contextlib.suppress(NotFound):
            await client.delete(Namespace, name, namespace="")


async def test_deleting_a_namespace_deletes_everything_in_it_and_then_the_namespace(
        client: ApiClient) -> None:
    name = f"ns-{uuid.uuid4().hex[:8]}"
    await client.create(Namespace(metadata=ObjectMeta(name=name)))
    await client.create(unbound("a", name))
    await client.create(unbound("b", name))
    await client.create(Volume(metadata=ObjectMeta(name="data", namespace=name)))
    await client.create(NetworkPolicy(metadata=ObjectMeta(name="deny", namespace=name)))
    await client.create(Event(metadata=ObjectMeta(name="a.created", namespace=name),
                              spec=EventSpec(involved_object=ObjectReference(kind="Container", name="a"))))
    held = unbound("held", name)  # a finalizer nobody removes keeps the namespace waiting
    held.metadata.finalizers = [HOLD]
    await client.create(held)

    marked = await client.delete(Namespace, name, namespace="")
    assert marked.status.phase == "Terminating" and marked.metadata.deletion_timestamp
    with pytest.raises(Forbidden):
        await client.create(unbound("late", name))

    async def only_the_held_one_is_left() -> None:
        items = [c for c in (await client.list(Container, namespace=name))[0]]
        assert [c.metadata.name for c in items] == ["held"] and items[0].metadata.deletion_timestamp
        for tp in (Volume, NetworkPolicy, Event):
            assert (await client.list(tp, namespace=name))[0] == []

    await eventually(only_the_held_one_is_left, timeout=15, what="the namespace emptied but for the held container")
    ns = await client.get(Namespace, name, namespace="")
    assert ns.status.phase == "Terminating" and ns.metadata.finalizers == [NAMESPACE_FINALIZER]

    # whoever held it lets go: the container goes, and with it the namespace
    held = await client.get(Container, "held", namespace=name)
    held.metadata.finalizers = [f for f in held.metadata.finalizers if f != HOLD]
    await client.update(held)

    async def namespace_gone() -> None:
        await absent(client.get(Namespace, name, namespace=""))

    await eventually(namespace_gone, timeout=15, what="the empty namespace removed")


async def test_the_default_namespace_cannot_be_deleted(client: ApiClient) -> None:
    with pytest.raises(Forbidden):
        await client.delete(Namespace, "default", namespace="")
    assert (await client.get(Namespace, "default", namespace="")).status.phase == "Active"
