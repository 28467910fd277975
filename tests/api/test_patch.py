"""PATCH (merge patch and JSON patch) on objects and /status, dry runs, and fields always spelled out."""

from __future__ import annotations

import json
from typing import Any

from corral.api.patching import merge_patch
from tests.api.conftest import Api
from tests.api.test_contract import C, call, container, unique

MERGE = {"Content-Type": "application/merge-patch+json"}
JSONP = {"Content-Type": "application/json-patch+json"}


async def patch(api: Api, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
    async with api.http.patch(api.url + path, data=json.dumps(body).encode(),
                              headers={**api.headers(), **headers}) as r:
        return r.status, json.loads(await r.read())


def test_a_merge_patch_merges_objects_removes_nulls_and_replaces_the_rest() -> None:
    target = {"a": {"b": 1, "c": 2}, "l": [1, 2], "k": "v"}
    assert merge_patch(target, {"a": {"b": None, "d": 3}, "l": [3]}) == {"a": {"c": 2, "d": 3}, "l": [3], "k": "v"}
    assert target == {"a": {"b": 1, "c": 2}, "l": [1, 2], "k": "v"}, "the target is not changed"


async def test_a_merge_patch_changes_one_field_and_keeps_the_rest(api: Api) -> None:
    name = unique()
    status, created = await call(api, "POST", C, container(name, env=[{"name": "A", "value": "1"}]))
    assert status == 201
    status, body = await patch(api, f"{C}/{name}", {"metadata": {"labels": {"tier": "front"}}}, MERGE)
    assert status == 200, body
    assert body["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert body["spec"]["env"] == [{"name": "A", "value": "1"}] and body["spec"]["image"] == "busybox"
    assert int(body["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    assert body["metadata"]["generation"] == created["metadata"]["generation"], "labels are not the spec"


async def test_a_json_patch_replaces_and_a_failed_test_op_is_a_409(api: Api) -> None:
    name = unique()
    await call(api, "POST", C, container(name))
    status, body = await patch(api, f"{C}/{name}", [{"op": "replace", "path": "/spec/image", "value": "busybox:2"}], JSONP)
    assert status == 200 and body["spec"]["image"] == "busybox:2"
    assert body["metadata"]["generation"] == 2
    status, body = await patch(api, f"{C}/{name}", [{"op": "test", "path": "/spec/image", "value": "nope"}], JSONP)
    assert status == 409 and body["error"]["reason"] == "Conflict"


async def test_a_json_patch_reaches_fields_that_still_hold_their_default(api: Api) -> None:
    name = unique()
    await call(api, "POST", C, container(name))
    ops = [{"op": "test", "path": "/spec/restartPolicy", "value": "Always"},
           {"op": "replace", "path": "/spec/restartPolicy", "value": "Never"}]
    status, body = await patch(api, f"{C}/{name}", ops, JSONP)
    assert status == 200 and body["spec"]["restartPolicy"] == "Never"


async def test_a_patch_that_makes_the_object_invalid_is_a_422_naming_the_field(api: Api) -> None:
    name = unique()
    await call(api, "POST", C, container(name))
    status, body = await patch(api, f"{C}/{name}", {"spec": {"restartPolicy": "Sometimes"}}, MERGE)
    assert status == 422
    assert any(d["field"] == "spec.restartPolicy" for d in body["error"]["details"])


async def test_a_patch_with_a_stale_resource_version_is_a_409_and_a_wrong_content_type_a_415(api: Api) -> None:
    name = unique()
    await call(api, "POST", C, container(name))
    status, _ = await patch(api, f"{C}/{name}", {"metadata": {"resourceVersion": "1"}, "spec": {"args": ["x"]}}, MERGE)
    assert status == 409
    status, body = await patch(api, f"{C}/{name}", {"spec": {}}, {"Content-Type": "application/json"})
    assert status == 415 and "merge-patch" in body["error"]["message"]


async def test_the_status_subresource_takes_a_merge_patch_of_the_status_alone(api: Api) -> None:
    name = unique()
    await call(api, "POST", C, container(name))
    status, body = await patch(api, f"{C}/{name}/status", {"status": {"phase": "Running", "ip": "10.0.0.9"},
                                                            "spec": {"image": "ignored"}}, MERGE)
    assert status == 200, body
    assert body["status"]["phase"] == "Running" and body["status"]["ip"] == "10.0.0.9"
    assert body["spec"]["image"] == "busybox", "a status patch leaves the spec alone"


async def test_a_dry_run_checks_everything_and_writes_nothing(api: Api) -> None:
    name = unique()
    status, body = await call(api, "POST", C, container(name), params={"dryRun": "All"})
    assert status == 201 and body["metadata"]["name"] == name
    status, _ = await call(api, "GET", f"{C}/{name}")
    assert status == 404, "a dry-run create stores nothing"
    status, body = await call(api, "POST", C, container(name, restartPolicy="Sometimes"), params={"dryRun": "All"})
    assert status == 422
    await call(api, "POST", C, container(name))
    status, body = await patch(api, f"{C}/{name}?dryRun=All", {"spec": {"image": "other"}}, MERGE)
    assert status == 200 and body["spec"]["image"] == "other"
    _, stored = await call(api, "GET", f"{C}/{name}")
    assert stored["spec"]["image"] == "busybox"
    status, _ = await call(api, "DELETE", f"{C}/{name}", params={"dryRun": "All"})
    assert status == 200
    status, _ = await call(api, "GET", f"{C}/{name}")
    assert status == 200, "a dry-run delete deletes nothing"


async def test_every_object_spells_out_api_version_kind_and_a_pending_phase(api: Api) -> None:
    name = unique()
    body = container(name)
    status, created = await call(api, "POST", C, body)
    assert status == 201
    for got in (created, (await call(api, "GET", f"{C}/{name}"))[1]):
        assert got["apiVersion"] == "corral/v1" and got["kind"] == "Container"
        assert got["status"]["phase"] == "Pending", got
    _, listed = await call(api, "GET", C)
    assert all("phase" in item["status"] for item in listed["items"])
    _, ns = await call(api, "GET", "/namespaces/default")
    assert ns["status"]["phase"] == "Active"
