"""The API contract: paths, status codes and the error shape, against a real etcd."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import msgspec

from corral.api.watchcache import Entry
from corral.model.resources import Container
from tests.api.conftest import Api

C = "/namespaces/default/containers"


def container(name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"app": "web"}}, "spec": {"image": "busybox", **spec}}


def unique(prefix: str = "c") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def call(api: Api, method: str, path: str, body: Any = None, *, token: str | None = None,
               raw: bytes | None = None, params: dict[str, str] | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    async with api.http.request(method, api.url + path, data=data, headers=api.headers(token), params=params) as r:
        text = await r.read()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text.decode()


async def count(api: Api) -> int:
    _, body = await call(api, "GET", C)
    return len(body["items"])


async def test_health_and_readiness_need_no_token(api: Api) -> None:
    for path in ("/healthz", "/readyz"):
        async with api.http.get(api.url + path) as r:
            assert r.status == 200


async def test_a_missing_or_bad_token_is_a_401_that_says_what_to_send(api: Api) -> None:
    async with api.http.get(api.url + C) as r:
        body = await r.json()
        assert r.status == 401
        assert "Bearer" in body["error"]["message"]
    status, body = await call(api, "GET", C, token="not-a-token")
    assert status == 401 and body["error"]["reason"] == "Unauthorized"


async def test_create_answers_201_with_server_fields_and_a_second_create_is_409(api: Api) -> None:
    name = unique()
    status, body = await call(api, "POST", C, container(name))
    assert status == 201
    meta = body["metadata"]
    assert meta["uid"] and meta["creationTimestamp"] and meta["generation"] == 1
    assert int(meta["resourceVersion"]) > 0 and meta["namespace"] == "default"
    status, again = await call(api, "POST", C, container(name))
    assert status == 409 and again["error"]["reason"] == "AlreadyExists"
    status, got = await call(api, "GET", f"{C}/{name}")
    assert status == 200 and got["metadata"]["uid"] == meta["uid"]


async def test_unknown_objects_paths_and_methods_get_404_and_405_in_the_error_shape(api: Api) -> None:
    status, body = await call(api, "GET", f"{C}/{unique()}")
    assert status == 404 and body["error"]["code"] == 404
    status, body = await call(api, "GET", "/no/such/thing")
    assert status == 404 and "openapi" in body["error"]["message"]
    status, body = await call(api, "PATCH", C)
    assert status == 405 and body["error"]["reason"] == "MethodNotAllowed"


async def test_a_create_in_a_missing_namespace_is_404_and_says_how_to_fix_it(api: Api) -> None:
    status, body = await call(api, "POST", "/namespaces/nowhere/containers", container(unique()))
    assert status == 404 and "create namespace" in body["error"]["message"]


async def test_bad_input_gets_a_4xx_naming_the_field_and_nothing_is_written(api: Api) -> None:
    before = await count(api)
    cases: list[tuple[int, Any, bytes | None, str]] = [
        (400, None, b"{not json", ""),
        (400, None, b"[1, 2]", ""),
        (400, None, b"", ""),
        (422, {"metadata": {"name": "Bad_Name"}, "spec": {"image": "x"}}, None, "metadata.name"),
        (422, {"metadata": {"name": "ok"}, "spec": {"image": ""}}, None, "spec.image"),
        (422, {"metadata": {"name": "ok"}, "spec": {"image": 5}}, None, "spec.image"),
        (422, {"metadata": {"name": "ok"}, "spec": {"image": "x", "resources": {"limits": {"memory": "-1Mi"}}}}, None,
         "spec.resources.limits.memory"),
        (422, {"metadata": {"name": "ok"}, "spec": {"image": "x", "resources": {"requests": {"cpu": "lots"}}}}, None,
         "spec.resources.requests.cpu"),
        (422, {"kind": "Nope", "metadata": {"name": "ok"}, "spec": {"image": "x"}}, None, "kind"),
        (422, {"metadata": {"name": "ok", "namespace": "other"}, "spec": {"image": "x"}}, None, "metadata.namespace"),
        (422, {"metadata": {"name": "ok"}, "spec": {"image": "x", "ports": [{"containerPort": 99999}]}}, None,
         "spec.ports[0].containerPort"),
        (422, {"metadata": {"name": "ok"}, "spek": {}}, None, "spek"),
    ]
    for code, body, raw, field in cases:
        status, answer = await call(api, "POST", C, body, raw=raw)
        assert status == code, (body, raw, answer)
        assert answer["error"]["code"] == code
        if field:
            assert field in [d["field"] for d in answer["error"]["details"]], answer
    status, answer = await call(api, "POST", C, raw=b'{"metadata": {"name": "big"}, "spec": {"image": "' + b"x" * 100_000 + b'"}}')
    assert status == 413 and answer["error"]["reason"] == "RequestEntityTooLarge"
    assert await count(api) == before


async def test_a_stale_resource_version_is_a_conflict(api: Api) -> None:
    name = unique()
    _, created = await call(api, "POST", C, container(name))
    first = dict(created)
    created["spec"]["args"] = ["one"]
    status, updated = await call(api, "PUT", f"{C}/{name}", created)
    assert status == 200 and updated["metadata"]["generation"] == 2
    first["spec"]["args"] = ["two"]
    status, body = await call(api, "PUT", f"{C}/{name}", first)
    assert status == 409 and body["error"]["reason"] == "Conflict"
    first["metadata"]["resourceVersion"] = "abc"
    status, body = await call(api, "PUT", f"{C}/{name}", first)
    assert status == 422 and body["error"]["details"][0]["field"] == "metadata.resourceVersion"


async def test_writes_start_from_the_watch_cache_and_a_stale_cache_never_loses_a_write(api: Api) -> None:
    name = unique()
    _, created = await call(api, "POST", C, container(name))
    created["metadata"]["labels"]["v"] = "2"
    status, updated = await call(api, "PUT", f"{C}/{name}", created)
    assert status == 200
    cache = api.server.caches["Container"]
    key = f"/corral/containers/default/{name}"
    for _ in range(100):  # the cache follows etcd: wait until it has the update
        if cache.objects[key].revision == int(updated["metadata"]["resourceVersion"]):
            break
        await asyncio.sleep(0.01)
    newest = cache.objects[key]
    old_obj = msgspec.json.decode(msgspec.json.encode(newest.obj), type=Container)
    old_obj.metadata.labels.pop("v")
    stale = Entry(old_obj, newest.json, int(created["metadata"]["resourceVersion"]))
    cache.objects[key] = stale  # as if the cache lagged one write behind etcd
    try:
        # no resourceVersion: the stale start loses its CAS, the retry reads etcd, the update survives
        status, body = await call(api, "PUT", f"{C}/{name}/status", {"metadata": {"name": name}, "status": {"phase": "Running"}})
        assert status == 200 and body["status"]["phase"] == "Running" and body["metadata"]["labels"]["v"] == "2"
        # the stale resourceVersion itself is still a conflict
        stale_rv = {"metadata": {"name": name, "resourceVersion": created["metadata"]["resourceVersion"]},
                    "status": {"phase": "Failed"}}
        status, body = await call(api, "PUT", f"{C}/{name}/status", stale_rv)
        assert status == 409
    finally:
        if cache.objects.get(key) is stale:
            cache.objects[key] = newest
    status, got = await call(api, "GET", f"{C}/{name}")
    assert got["status"]["phase"] == "Running" and got["metadata"]["labels"]["v"] == "2"
    assert isinstance(newest.obj, Container) and newest.obj.status.phase != "Running"  # never written to


async def test_spec_and_status_have_separate_writers_and_generation_counts_spec_changes(api: Api) -> None:
    name = unique()
    _, obj = await call(api, "POST", C, container(name))
    obj["status"] = {"phase": "Running", "ip": "10.0.0.1"}
    obj["spec"]["image"] = "changed-by-status-write"
    status, after_status = await call(api, "PUT", f"{C}/{name}/status", obj)
    assert status == 200
    assert after_status["status"]["phase"] == "Running" and after_status["spec"]["image"] == "busybox"
    assert after_status["metadata"]["generation"] == 1
    after_status["metadata"]["labels"]["tier"] = "front"
    after_status["status"] = {"phase": "Failed"}
    status, after_meta = await call(api, "PUT", f"{C}/{name}", after_status)
    assert status == 200
    assert after_meta["status"]["phase"] == "Running" and after_meta["metadata"]["generation"] == 1
    bad = {"metadata": after_meta["metadata"], "status": {"phase": "Exploded"}}
    status, body = await call(api, "PUT", f"{C}/{name}/status", bad)
    assert status == 422 and body["error"]["details"][0]["field"] == "status.phase"


async def test_delete_waits_for_finalizers_and_removing_the_last_one_removes_the_object(api: Api) -> None:
    name = unique()
    _, obj = await call(api, "POST", C, container(name, node="node-a"))
    assert obj["metadata"]["finalizers"] == ["corral.io/agent"]
    status, deleting = await call(api, "DELETE", f"{C}/{name}")
    assert status == 202 and deleting["metadata"]["deletionTimestamp"]
    deleting["spec"]["image"] = "other"
    status, _ = await call(api, "PUT", f"{C}/{name}", deleting)
    assert status == 403
    deleting["spec"]["image"] = "busybox"
    deleting["metadata"]["finalizers"] = []
    status, _ = await call(api, "PUT", f"{C}/{name}", deleting)
    assert status == 200
    status, _ = await call(api, "GET", f"{C}/{name}")
    assert status == 404


async def test_an_unscheduled_container_is_deleted_at_once(api: Api) -> None:
    name = unique()
    await call(api, "POST", C, container(name))
    status, _ = await call(api, "DELETE", f"{C}/{name}")
    assert status == 200
    status, _ = await call(api, "GET", f"{C}/{name}")
    assert status == 404


async def test_lists_filter_by_label_and_field_selectors(api: Api) -> None:
    ns = unique("ns")
    await call(api, "POST", "/namespaces", {"metadata": {"name": ns}})
    path = f"/namespaces/{ns}/containers"
    await call(api, "POST", path, {"metadata": {"name": "a", "labels": {"tier": "web"}}, "spec": {"image": "x", "node": "n1"}})
    await call(api, "POST", path, {"metadata": {"name": "b", "labels": {"tier": "db"}}, "spec": {"image": "x", "node": "n2"}})

    async def names(**params: str) -> list[str]:
        status, body = await call(api, "GET", path, params=params)
        assert status == 200, body
        return sorted(i["metadata"]["name"] for i in body["items"])

    assert await names() == ["a", "b"]
    assert await names(labelSelector="tier=web") == ["a"]
    assert await names(labelSelector="tier in (web,db),tier!=db") == ["a"]
    assert await names(fieldSelector="spec.node=n2") == ["b"]
    assert await names(fieldSelector="metadata.name=a") == ["a"]
    assert await names(fieldSelector="status.phase=Pending") == ["a", "b"]
    status, body = await call(api, "GET", path, params={"fieldSelector": "spec.color=red"})
    assert status == 400 and "spec.node" in body["error"]["message"]
    status, body = await call(api, "GET", path, params={"labelSelector": "in valid=("})
    assert status == 400 and "labelSelector" in body["error"]["message"]
    status, body = await call(api, "GET", path, params={"limit": "-3"})
    assert status == 400


async def test_paging_returns_every_object_exactly_once(api: Api) -> None:
    ns = unique("ns")
    await call(api, "POST", "/namespaces", {"metadata": {"name": ns}})
    path = f"/namespaces/{ns}/containers"
    for i in range(25):
        await call(api, "POST", path, container(f"c{i:02d}"))
    seen: list[str] = []
    params = {"limit": "7"}
    pages = 0
    while True:
        status, body = await call(api, "GET", path, params=params)
        assert status == 200
        pages += 1
        seen += [i["metadata"]["name"] for i in body["items"]]
        if not body["metadata"].get("continue"):
            break
        params["continue"] = body["metadata"]["continue"]
    assert pages == 4
    assert sorted(seen) == [f"c{i:02d}" for i in range(25)] and len(seen) == 25
    status, body = await call(api, "GET", path, params={"limit": "5", "continue": "garbage"})
    assert status == 400


async def test_metrics_count_requests_per_route_and_openapi_lists_the_paths(api: Api) -> None:
    status, text = await call(api, "GET", "/metrics")
    assert status == 200
    assert 'route="/namespaces/{namespace}/containers"' in text
    assert "corral_api_request_duration_seconds_bucket" in text
    status, doc = await call(api, "GET", "/openapi.json")
    assert status == 200
    assert "/namespaces/{namespace}/containers/{name}/status" in doc["paths"]
    assert "Container" in doc["components"]["schemas"]


async def test_a_list_at_any_version_comes_from_the_cache_and_a_node_selector_reads_only_that_node(api: Api) -> None:
    n1, n2 = unique("n"), unique("n")
    a, b, c = unique(), unique(), unique()
    await call(api, "POST", C, container(a, node=n1))
    await call(api, "POST", C, container(b, node=n2))
    _, moving = await call(api, "POST", C, container(c))  # unbound, then bound to n1 by a spec write
    moving["spec"]["node"] = n1
    status, _ = await call(api, "PUT", f"{C}/{c}", moving)
    assert status == 200

    async def names_on(node: str) -> list[str]:
        for _ in range(100):  # the cache follows etcd; wait for the writes above
            status, body = await call(api, "GET", "/containers",
                                      params={"resourceVersion": "0", "fieldSelector": f"spec.node={node}", "limit": "1"})
            assert status == 200 and "continue" not in body["metadata"]  # whole, from the cache
            found = sorted(i["metadata"]["name"] for i in body["items"])
            if len(found) == (2 if node == n1 else 1):
                return found
            await asyncio.sleep(0.01)
        return found

    assert await names_on(n1) == sorted([a, c]) and await names_on(n2) == [b]
    status, etcd_view = await call(api, "GET", "/containers", params={"fieldSelector": f"spec.node={n1}"})
    assert sorted(i["metadata"]["name"] for i in etcd_view["items"]) == sorted([a, c])
    cache = api.server.caches["Container"]
    assert sorted(k.rsplit("/", 1)[1] for k in cache._node_keys[n1]) == sorted([a, c])
