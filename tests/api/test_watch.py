"""Watches: order, resume, selectors that objects move in and out of, 410 for what is too old."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from tests.api.conftest import Api
from tests.api.test_contract import call, container, unique


async def stream(api: Api, path: str, **params: str) -> AsyncIterator[dict[str, Any]]:
    async with api.http.get(api.url + path, params={"watch": "1", **params}, headers=api.headers()) as r:
        assert r.status == 200, await r.text()
        async for line in r.content:
            if line.strip():
                yield json.loads(line)


async def collect(api: Api, path: str, n: int, *, skip_bookmarks: bool = True, **params: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []

    async def run() -> None:
        async for ev in stream(api, path, **params):
            if skip_bookmarks and ev["type"] == "BOOKMARK":
                continue
            events.append(ev)
            if len(events) == n:
                return

    await asyncio.wait_for(run(), 10)
    return events


async def new_namespace(api: Api) -> str:
    ns = unique("ns")
    status, _ = await call(api, "POST", "/namespaces", {"metadata": {"name": ns}})
    assert status == 201
    return ns


async def test_a_watch_sees_create_update_delete_in_order(api: Api) -> None:
    ns = await new_namespace(api)
    path = f"/namespaces/{ns}/containers"
    _, listed = await call(api, "GET", path)
    rv = listed["metadata"]["resourceVersion"]
    watcher = asyncio.create_task(collect(api, path, 3, resourceVersion=rv))
    await asyncio.sleep(0.2)
    _, obj = await call(api, "POST", path, container("web"))
    obj["spec"]["args"] = ["x"]
    await call(api, "PUT", f"{path}/web", obj)
    await call(api, "DELETE", f"{path}/web")
    events = await watcher
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    revisions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert revisions == sorted(revisions) and len(set(revisions)) == 3


async def test_a_watch_resumes_from_any_revision_it_was_given(api: Api) -> None:
    ns = await new_namespace(api)
    path = f"/namespaces/{ns}/containers"
    _, a = await call(api, "POST", path, container("a"))
    _, b = await call(api, "POST", path, container("b"))
    await call(api, "POST", path, container("c"))
    events = await collect(api, path, 2, resourceVersion=a["metadata"]["resourceVersion"])
    assert [e["object"]["metadata"]["name"] for e in events] == ["b", "c"]
    events = await collect(api, path, 1, resourceVersion=b["metadata"]["resourceVersion"])
    assert [e["object"]["metadata"]["name"] for e in events] == ["c"]


async def test_a_watch_without_a_revision_starts_with_the_current_objects(api: Api) -> None:
    ns = await new_namespace(api)
    path = f"/namespaces/{ns}/containers"
    await call(api, "POST", path, container("a"))
    await asyncio.sleep(0.2)
    events = await collect(api, path, 1)
    assert events[0]["type"] == "ADDED" and events[0]["object"]["metadata"]["name"] == "a"


async def test_objects_moving_into_and_out_of_a_field_selector_are_added_and_deleted(api: Api) -> None:
    ns = await new_namespace(api)
    path = f"/namespaces/{ns}/containers"
    _, listed = await call(api, "GET", path)
    watcher = asyncio.create_task(collect(api, path, 2, resourceVersion=listed["metadata"]["resourceVersion"],
                                          fieldSelector="spec.node=n1"))
    await asyncio.sleep(0.2)
    _, obj = await call(api, "POST", path, container("x"))  # not bound: not seen
    obj["spec"]["node"] = "n1"
    _, obj = await call(api, "PUT", f"{path}/x", obj)  # bound to n1: ADDED
    obj["spec"]["node"] = "n2"
    await call(api, "PUT", f"{path}/x", obj)  # moved away: DELETED
    events = await watcher
    assert [e["type"] for e in events] == ["ADDED", "DELETED"]


async def test_a_revision_older_than_the_watch_cache_is_410_gone(api: Api) -> None:
    async with api.http.get(api.url + "/namespaces/default/containers", headers=api.headers(),
                            params={"watch": "1", "resourceVersion": "1"}) as r:
        body = await r.json()
    assert r.status == 410 and body["error"]["reason"] == "Expired"
    status, body = await call(api, "GET", "/namespaces/default/containers", params={"watch": "1", "resourceVersion": "x"})
    assert status == 400


async def test_idle_watches_get_bookmarks(api: Api, monkeypatch: Any) -> None:
    from corral.api import resources

    monkeypatch.setattr(resources, "BOOKMARK_SECONDS", 0.2)
    ns = await new_namespace(api)
    events = await collect(api, f"/namespaces/{ns}/containers", 1, skip_bookmarks=False, resourceVersion="")
    assert events[0]["type"] == "BOOKMARK" and int(events[0]["object"]["metadata"]["resourceVersion"]) > 0
