"""Writers racing on one object through the API: the server's guaranteed_update for writes without a
resourceVersion, the client's read-change-write-again helper (api/retrying.py) for those with one."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from corral.api import retrying
from corral.api.client import ApiClient
from corral.model.errors import AlreadyExists, Conflict
from corral.model.resources import (
    ContainerSpec,
    ContainerTemplate,
    Deployment,
    DeploymentSpec,
    LabelSelector,
    ObjectMeta,
    TemplateMeta,
)
from tests.api.conftest import Api
from tests.api.test_contract import unique


async def made(client: ApiClient) -> Deployment:
    """A paused Deployment (its controller is not running here anyway): only this test writes it."""
    app = {"app": unique()}
    spec = DeploymentSpec(replicas=0, paused=True, selector=LabelSelector(match_labels=app),
                          template=ContainerTemplate(metadata=TemplateMeta(labels=app), spec=ContainerSpec(image="busybox")))
    return await client.create(Deployment(metadata=ObjectMeta(name=unique(), namespace="default"), spec=spec))


async def test_racing_read_change_write_clients_all_land(api: Api) -> None:
    async with ApiClient(api.url, api.token, ssl_context=api.ssl) as client:
        d = await made(client)

        def one_more(current: Deployment) -> Deployment:
            current.spec = msgspec.structs.replace(current.spec, replicas=current.spec.replicas + 1)
            return current

        await asyncio.gather(*(retrying.update(client, Deployment, d.metadata.name, one_more, attempts=50)
                               for _ in range(6)))
        got = await client.get(Deployment, d.metadata.name)
        assert got.spec.replicas == 6
        assert got.metadata.generation == 7  # one bump per spec change


async def test_a_stale_starting_copy_is_read_again_and_no_change_writes_nothing(api: Api) -> None:
    async with ApiClient(api.url, api.token, ssl_context=api.ssl) as client:
        stale = await made(client)
        fresh = await client.patch(Deployment, stale.metadata.name, {"metadata": {"labels": {"a": "1"}}})
        seen: list[str] = []

        def label(current: Deployment) -> Deployment | None:
            seen.append(current.metadata.resource_version)
            if current.metadata.labels.get("b") == "2":
                return None
            current.metadata.labels = {**current.metadata.labels, "b": "2"}
            return current

        done = await retrying.update(client, Deployment, stale.metadata.name, label, start=stale)
        assert seen == [stale.metadata.resource_version, fresh.metadata.resource_version]
        assert done.metadata.labels == {"a": "1", "b": "2"}
        again = await retrying.update(client, Deployment, stale.metadata.name, label)
        assert again.metadata.resource_version == done.metadata.resource_version  # nothing written


async def test_racing_merge_patches_of_one_map_keep_every_key(api: Api) -> None:
    async with ApiClient(api.url, api.token, ssl_context=api.ssl) as client:
        d = await made(client)
        await asyncio.gather(*(client.patch(Deployment, d.metadata.name, {"metadata": {"annotations": {f"k{i}": "v"}}})
                               for i in range(8)))
        got = await client.get(Deployment, d.metadata.name)
        assert set(got.metadata.annotations) >= {f"k{i}" for i in range(8)}


async def test_a_put_at_an_old_resource_version_is_a_409_and_retry_gives_up_when_it_keeps_losing(api: Api) -> None:
    async with ApiClient(api.url, api.token, ssl_context=api.ssl) as client:
        d = await made(client)
        await client.patch(Deployment, d.metadata.name, {"metadata": {"labels": {"x": "1"}}})
        with pytest.raises(Conflict, match="modified since you read it"):
            await client.update(d)

        async def always_stale() -> None:
            await client.update(d)

        with pytest.raises(Conflict, match="keeps changing"):
            await retrying.retry_on_conflict(always_stale, attempts=3, what="the deployment")

        async def exists() -> None:
            await client.create(msgspec.structs.replace(d, metadata=ObjectMeta(name=d.metadata.name, namespace="default")))

        attempts = 0

        async def count() -> None:
            nonlocal attempts
            attempts += 1
            await exists()

        with pytest.raises(AlreadyExists):
            await retrying.retry_on_conflict(count)
        assert attempts == 1  # an existing name is no race to retry
