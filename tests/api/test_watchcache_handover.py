"""A create hands its decoded object to the watch cache: the cache then holds exactly what decoding
the stored bytes would give, enters it at the watch event's revision, and a create that fails leaves
nothing behind."""

from __future__ import annotations

import asyncio
from typing import Any

from corral.api.watchcache import MAX_EXPECTED, WatchCache
from corral.model.kinds import BY_KIND
from corral.model.resources import Container, ContainerSpec, ObjectMeta
from corral.store import typed
from corral.store.base import EventType
from tests.api.conftest import Api
from tests.api.test_contract import call, unique

INFO = BY_KIND["Container"]


def stored(name: str) -> tuple[Container, bytes]:
    c = Container(metadata=ObjectMeta(name=name, namespace="default", labels={"app": "x"}),
                  spec=ContainerSpec(image="busybox", command=["sleep", "1"]))
    return c, typed.encode(c)


def test_a_put_of_the_announced_bytes_takes_the_handed_object_at_the_events_revision() -> None:
    cache = WatchCache(None, INFO)  # type: ignore[arg-type]
    obj, value = stored("a")
    cache.expect("/k/a", value, obj)
    cache._apply(EventType.PUT, "/k/a", value, 42)
    entry = cache.objects["/k/a"]
    assert entry.obj is obj and entry.revision == 42 and cache.revision == 42
    assert obj.metadata.resource_version == "42"
    assert entry.obj == typed.decode_bytes(value, Container, revision=42)
    assert b'"resourceVersion":"42"' in entry.json and not cache._expected


def test_a_put_of_other_bytes_is_decoded_and_the_handed_object_is_not_used() -> None:
    cache = WatchCache(None, INFO)  # type: ignore[arg-type]
    obj, value = stored("a")
    _, other = stored("a2")
    cache.expect("/k/a", value, obj)
    cache._apply(EventType.PUT, "/k/a", other, 7)  # someone else's write of the key came first
    assert cache.objects["/k/a"].obj is not obj
    assert cache.objects["/k/a"].obj.metadata.name == "a2" and not cache._expected


def test_a_withdrawn_create_leaves_nothing_and_the_table_is_bounded() -> None:
    cache = WatchCache(None, INFO)  # type: ignore[arg-type]
    obj, value = stored("a")
    cache.expect("/k/a", value, obj)
    cache.withdraw("/k/a", value)
    assert not cache._expected
    for i in range(MAX_EXPECTED + 5):
        cache.expect(f"/k/{i}", value, obj)
    assert len(cache._expected) <= MAX_EXPECTED


async def until_cached(api: Api, key: str) -> Any:
    cache = api.server.caches["Container"]
    for _ in range(200):
        if key in cache.objects:
            return cache.objects[key]
        await asyncio.sleep(0.02)
    raise AssertionError(f"{key} never reached the cache")


async def test_a_created_container_in_the_cache_equals_its_stored_form_decoded(api: Api) -> None:
    name = unique("handover")
    body = {"metadata": {"name": name, "labels": {"app": "web"}, "annotations": {"a": "b"}},
            "spec": {"image": "busybox", "command": ["sh", "-c", "sleep 1"], "env": [{"name": "A", "value": "1"}],
                     "resources": {"requests": {"cpu": "10m", "memory": "8Mi"}, "limits": {"memory": "16Mi"}},
                     "ports": [{"containerPort": 80, "name": "http"}]}}
    status, created = await call(api, "POST", "/namespaces/default/containers", body)
    assert status == 201, created
    key = INFO.key("default", name)
    entry = await until_cached(api, key)
    kv = await api.store.get(key)
    assert kv is not None
    assert entry.obj == typed.decode(kv, Container)  # what a decode would have given
    assert entry.revision == kv.mod_revision == int(created["metadata"]["resourceVersion"])
    _, got = await call(api, "GET", f"/namespaces/default/containers/{name}")
    assert got == created  # the 201's body is the stored object, as a GET returns it
    assert created["status"]["phase"] == "Pending"


async def test_a_create_refused_by_etcd_leaves_no_handed_object(api: Api) -> None:
    name = unique("twice")
    body = {"metadata": {"name": name}, "spec": {"image": "busybox"}}
    assert (await call(api, "POST", "/namespaces/default/containers", body))[0] == 201
    first = await until_cached(api, INFO.key("default", name))
    status, _ = await call(api, "POST", "/namespaces/default/containers", body)
    assert status == 409
    assert INFO.key("default", name) not in api.server.caches["Container"]._expected
    assert api.server.caches["Container"].objects[INFO.key("default", name)] is first
