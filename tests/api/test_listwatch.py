"""The informer over the API (``api.listwatch.ApiSource``) against a real API server and etcd: list from
the watch cache, follow with a named index, and relist when its version fell out of the watch cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from corral.api.client import ApiClient
from corral.api.listwatch import NamespacedName, api_informer
from corral.model.resources import Container, ContainerSpec, Namespace, ObjectMeta
from corral.store.indexers import by_label
from corral.store.informer import Change, Informer
from tests.api.conftest import Api
from tests.api.test_contract import unique
from tests.store.informers import running, until

APP_INDEX, APP_OF = by_label("app")


@pytest_asyncio.fixture
async def client(api: Api) -> AsyncIterator[ApiClient]:
    async with ApiClient(api.url, api.token, ssl_context=api.ssl) as c:
        yield c


async def namespace(client: ApiClient) -> str:
    ns = unique("lw")
    await client.create(Namespace(metadata=ObjectMeta(name=ns)))
    return ns


def container(name: str, app: str) -> Container:
    return Container(metadata=ObjectMeta(name=name, labels={"app": app}), spec=ContainerSpec(image="busybox"))






def apps(informer: Informer[NamespacedName, Container], app: str) -> list[str]:
    return sorted(c.metadata.name for c in informer.by_index(APP_INDEX, app))


async def test_an_informer_over_the_api_lists_then_follows_a_namespace_and_keeps_its_label_index(
        client: ApiClient) -> None:
    ns = await namespace(client)
    for name, app in (("a1", "a"), ("a2", "a"), ("b1", "b")):
        await client.create(container(name, app), namespace=ns)
    informer = api_informer(client, Container, namespace=ns)
    informer.add_index(APP_INDEX, APP_OF)
    seen: list[tuple[Change, NamespacedName]] = []
    informer.add_handler(lambda change, key, _obj, _old: seen.append((change, key)))
    async with running(informer):  # (a list at any version may be a little behind: the watch brings the rest)
        await until(lambda: len(seen) == 3)
        assert apps(informer, "a") == ["a1", "a2"] and apps(informer, "b") == ["b1"]
        assert sorted(seen) == [(Change.ADDED, (ns, "a1")), (Change.ADDED, (ns, "a2")), (Change.ADDED, (ns, "b1"))]
        seen.clear()
        moved = await client.get(Container, "a2", namespace=ns)
        moved.metadata.labels = {"app": "b"}
        await client.update(moved)
        await client.delete(Container, "a1", namespace=ns, grace_period=0)
        await client.create(container("c1", "c"), namespace=ns)
        await until(lambda: (Change.ADDED, (ns, "c1")) in seen)
        assert apps(informer, "a") == [] and apps(informer, "b") == ["a2", "b1"] and apps(informer, "c") == ["c1"]
        assert sorted(informer.index_values(APP_INDEX)) == ["b", "c"]
        assert (Change.MODIFIED, (ns, "a2")) in seen and (Change.DELETED, (ns, "a1")) in seen
        assert informer.revision >= int((await client.get(Container, "c1", namespace=ns)).metadata.resource_version)
        assert informer.relists == 0


async def test_an_informer_over_the_api_relists_when_its_version_fell_out_of_the_watch_cache(
        api: Api, client: ApiClient, monkeypatch: Any) -> None:
    ns = await namespace(client)
    for name in ("stays", "goes", "changes"):
        await client.create(container(name, "a"), namespace=ns)
    informer = api_informer(client, Container, namespace=ns)
    informer.add_index(APP_INDEX, APP_OF)
    seen: list[tuple[Change, str]] = []
    informer.add_handler(lambda change, key, _obj, _old: seen.append((change, key[1])))
    async with running(informer):
        await until(lambda: len(informer) == 3)
    seen.clear()
    # while it does not watch: one goes, one changes, one comes; then the cache's window moves past
    monkeypatch.setattr(api.server.caches["Container"], "window", 8)
    await client.delete(Container, "goes", namespace=ns, grace_period=0)
    changed = await client.get(Container, "changes", namespace=ns)
    changed.metadata.labels = {"app": "b"}
    await client.update(changed)
    await client.create(container("comes", "c"), namespace=ns)
    other = await namespace(client)
    for i in range(12):
        await client.create(container(f"filler-{i}", "x"), namespace=other)
    async with running(informer):  # resumes from its version: 410, so it lists again
        await until(lambda: informer.relists == 1 and len(seen) == 3)
        assert sorted(seen) == [(Change.ADDED, "comes"), (Change.DELETED, "goes"), (Change.MODIFIED, "changes")]
        assert apps(informer, "a") == ["stays"] and apps(informer, "b") == ["changes"] and apps(informer, "c") == ["comes"]
        seen.clear()
        await client.delete(Container, "stays", namespace=ns, grace_period=0)  # and it follows again afterwards
        await until(lambda: seen == [(Change.DELETED, "stays")])
        assert apps(informer, "a") == []
