"""Secrets through the API: validated, plain to the API's users, sealed in etcd, re-sealed on rotation."""

from __future__ import annotations

import asyncio
import base64
import json

from corral.model.errors import CorralError
from corral.store.sealing import Keyring, SealingStore
from tests.api.conftest import Api
from tests.api.test_auth import node_token
from tests.api.test_contract import call, container, unique

S = "/namespaces/default/secrets"
PLAIN = "hunter2-very-secret-value"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def test_string_data_is_merged_into_data_and_never_stored(api: Api) -> None:
    name = unique("s")
    status, body = await call(api, "POST", S, {"metadata": {"name": name}, "stringData": {"password": PLAIN},
                                               "data": {"user": b64("admin")}})
    assert status == 201, body
    assert not body.get("stringData") and body["data"] == {"user": b64("admin"), "password": b64(PLAIN)}
    status, body = await call(api, "GET", f"{S}/{name}")
    assert status == 200 and body["data"]["password"] == b64(PLAIN) and body.get("type", "Opaque") == "Opaque"


async def test_bad_base64_and_bad_keys_are_named(api: Api) -> None:
    status, body = await call(api, "POST", S, {"metadata": {"name": unique("s")},
                                               "data": {"ok": "not base64!", "bad/key": b64("x")}})
    assert status == 422
    fields = {d["field"] for d in body["error"]["details"]}
    assert {"data.ok", "data.bad/key"} <= fields


async def test_a_docker_config_secret_needs_its_config(api: Api) -> None:
    status, body = await call(api, "POST", S, {"metadata": {"name": unique("s")}, "type": "corral.io/dockerconfigjson",
                                               "stringData": {".dockerconfigjson": "{}"}})
    assert status == 422 and body["error"]["details"][0]["field"] == "stringData..dockerconfigjson"


async def test_the_plaintext_is_never_in_etcd_and_rotation_reseals_every_secret(api: Api) -> None:
    names = [unique("s") for _ in range(3)]
    for name in names:
        status, _ = await call(api, "POST", S, {"metadata": {"name": name}, "stringData": {"password": PLAIN}})
        assert status == 201
    raw = await api.store.get(f"/corral/secrets/default/{names[0]}")  # etcd itself, under the API
    assert raw is not None and raw.value.startswith(b"k1:")
    assert PLAIN.encode() not in raw.value and b64(PLAIN).encode() not in raw.value
    old_id = api.server.sealing.keyring.primary.id

    status, body = await call(api, "POST", "/encryption/rotate")
    assert status == 200 and body["resealed"] >= 3 and body["keyId"] != old_id
    assert api.server.sealing.keyring.ids == [body["keyId"]]
    for name in names:
        kv = await api.store.get(f"/corral/secrets/default/{name}")
        assert kv is not None and kv.value[3:11].decode() == body["keyId"]
        status, obj = await call(api, "GET", f"{S}/{name}")
        assert status == 200 and base64.b64decode(obj["data"]["password"]).decode() == PLAIN
    # a value sealed with a key no longer held is an error, never garbage or plaintext
    stranger = SealingStore(api.store, Keyring.ephemeral())
    try:
        await stranger.get(f"/corral/secrets/default/{names[0]}")
        raise AssertionError("opened with the wrong key")
    except CorralError as e:
        assert body["keyId"] in e.message


async def test_a_watch_and_a_list_see_plain_secrets(api: Api) -> None:
    name = unique("s")
    await call(api, "POST", S, {"metadata": {"name": name}, "stringData": {"k": PLAIN}})
    status, body = await call(api, "GET", S)
    assert status == 200 and any(i["metadata"]["name"] == name and i["data"]["k"] == b64(PLAIN) for i in body["items"])
    async with api.http.get(api.url + S, params={"watch": "1", "timeoutSeconds": "1"}, headers=api.headers()) as r:
        lines = [json.loads(line) for line in (await r.read()).splitlines() if line.strip()]
    assert any(ev["object"]["metadata"]["name"] == name and ev["object"]["data"]["k"] == b64(PLAIN) for ev in lines)


async def test_a_node_reads_only_the_secrets_its_containers_use(api: Api) -> None:
    node = unique("n")
    token = await node_token(api, node)
    used, other = unique("s"), unique("s")
    for name in (used, other):
        await call(api, "POST", S, {"metadata": {"name": name}, "stringData": {"k": "v"}})
    ctr = container(unique(), node=node, env=[{"name": "K", "valueFrom": {"secretKeyRef": {"name": used, "key": "k"}}}])
    status, _ = await call(api, "POST", "/namespaces/default/containers", ctr)
    assert status == 201
    for _ in range(50):  # the container cache follows etcd within moments
        status, _ = await call(api, "GET", f"{S}/{used}", token=token)
        if status == 200:
            break
        await asyncio.sleep(0.1)
    assert status == 200
    status, body = await call(api, "GET", f"{S}/{other}", token=token)
    assert status == 403 and other in body["error"]["message"]
    status, _ = await call(api, "GET", S, token=token)
    assert status == 403
