"""Tokens with roles: what edit and view may do, security levels, revocation on every instance, the audit log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web

from corral.api.audit import AuditLog
from corral.api.server import ApiServer
from corral.store.embedded import free_port
from corral.tls.contexts import server_context
from corral.tls.pki import ca_hash
from tests.api.conftest import Api
from tests.api.test_contract import call, container, unique

C = "/namespaces/{ns}/containers"


async def namespace(api: Api, labels: dict[str, str] | None = None) -> str:
    name = unique("ns")
    status, body = await call(api, "POST", "/namespaces", {"metadata": {"name": name, "labels": labels or {}}})
    assert status == 201, body
    return name


async def make_token(api: Api, role: str, *namespaces: str, ttl: int = 0) -> tuple[str, str]:
    status, body = await call(api, "POST", "/tokens", {"role": role, "namespaces": list(namespaces), "ttlSeconds": ttl,
                                                       "description": f"test {role}"})
    assert status == 201, body
    return body["token"], body["id"]


async def test_a_view_token_reads_but_never_writes_and_never_sees_secret_values(api: Api) -> None:
    ns = await namespace(api)
    view, _ = await make_token(api, "view", ns)
    await call(api, "POST", C.format(ns=ns), container("c1"))
    await call(api, "POST", f"/namespaces/{ns}/secrets", {"metadata": {"name": "s"}, "stringData": {"pw": "hunter2"}})
    status, body = await call(api, "GET", C.format(ns=ns), token=view)
    assert status == 200 and [i["metadata"]["name"] for i in body["items"]] == ["c1"]
    status, body = await call(api, "POST", C.format(ns=ns), container("c2"), token=view)
    assert status == 403 and "view" in body["error"]["message"]
    status, body = await call(api, "DELETE", f"{C.format(ns=ns)}/c1", token=view)
    assert status == 403
    status, body = await call(api, "GET", f"/namespaces/{ns}/secrets/s", token=view)
    assert status == 200 and body["data"] == {"pw": ""}
    status, body = await call(api, "GET", f"/namespaces/{ns}/secrets", token=view)
    assert status == 200 and body["items"][0]["data"] == {"pw": ""}
    status, _ = await call(api, "GET", f"/namespaces/{ns}/secrets", params={"watch": "1"}, token=view)
    assert status == 403


async def test_an_edit_token_writes_workloads_in_its_namespace_only(api: Api) -> None:
    mine, other = await namespace(api), await namespace(api)
    edit, _ = await make_token(api, "edit", mine)
    status, body = await call(api, "POST", C.format(ns=mine), container("ok"), token=edit)
    assert status == 201, body
    status, body = await call(api, "POST", C.format(ns=other), container("no"), token=edit)
    assert status == 403 and other in body["error"]["message"] and mine in body["error"]["message"]
    status, _ = await call(api, "GET", C.format(ns=other), token=edit)
    assert status == 403
    status, _ = await call(api, "GET", "/containers", token=edit)  # across namespaces
    assert status == 403
    status, _ = await call(api, "POST", "/namespaces", {"metadata": {"name": unique("ns")}}, token=edit)
    assert status == 403
    status, _ = await call(api, "POST", "/tokens", {"role": "admin"}, token=edit)
    assert status == 403
    status, body = await call(api, "GET", f"{C.format(ns=other)}/x/exec", params={"command": "sh"}, token=edit)
    assert status == 403 and other in body["error"]["message"]  # no exec into another namespace either
    view, _ = await make_token(api, "view", mine)
    status, _ = await call(api, "GET", f"{C.format(ns=mine)}/ok/exec", params={"command": "sh"}, token=view)
    assert status == 403
    status, _ = await call(api, "DELETE", f"{C.format(ns=mine)}/ok", token=edit)
    assert status == 200


async def test_host_path_from_an_edit_token_is_refused_naming_the_field_and_the_level(api: Api) -> None:
    ns = await namespace(api)
    edit, _ = await make_token(api, "edit", ns)
    spec = {"volumes": [{"name": "h", "hostPath": {"path": "/etc"}}], "volumeMounts": [{"name": "h", "mountPath": "/h"}]}
    status, body = await call(api, "POST", C.format(ns=ns), container("hp", **spec), token=edit)
    assert status == 403
    assert body["error"]["details"][0]["field"] == "spec.volumes[0].hostPath"
    assert "baseline" in body["error"]["message"]
    # a Deployment's template too
    deploy = {"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": {
        "metadata": {"labels": {"app": "d"}}, "spec": {"image": "busybox", "securityContext": {"privileged": True}}}}}
    status, body = await call(api, "POST", f"/namespaces/{ns}/deployments", deploy, token=edit)
    assert status == 403 and body["error"]["details"][0]["field"] == "spec.template.spec.securityContext.privileged"
    # and every other kind that runs containers
    cron = {"metadata": {"name": "cj"}, "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {
        "spec": {"image": "busybox", "restartPolicy": "Never", "ports": [{"containerPort": 80, "hostPort": 80}]}}}}}}
    status, body = await call(api, "POST", f"/namespaces/{ns}/cronjobs", cron, token=edit)
    assert status == 403 and body["error"]["details"][0]["field"] == "spec.jobTemplate.spec.template.spec.ports[0].hostPort"
    ds = {"metadata": {"name": "ds"}, "spec": {"selector": {"matchLabels": {"app": "ds"}}, "template": {
        "metadata": {"labels": {"app": "ds"}}, "spec": {"image": "busybox", **spec}}}}
    status, body = await call(api, "POST", f"/namespaces/{ns}/daemonsets", ds, token=edit)
    assert status == 403 and body["error"]["details"][0]["field"] == "spec.template.spec.volumes[0].hostPath"
    # an admin still may
    status, _ = await call(api, "POST", C.format(ns=ns), container("hp", **spec))
    assert status == 201


async def test_the_restricted_level_wants_non_root_and_no_capabilities_and_privileged_allows_all(api: Api) -> None:
    restricted = await namespace(api, {"security.corral.io/level": "restricted"})
    privileged = await namespace(api, {"security.corral.io/level": "privileged"})
    edit, _ = await make_token(api, "edit", restricted, privileged)
    status, body = await call(api, "POST", C.format(ns=restricted), container("plain"), token=edit)
    assert status == 403 and "restricted" in body["error"]["message"]
    fields = {d["field"] for d in body["error"]["details"]}
    assert {"spec.securityContext.runAsNonRoot", "spec.securityContext.capabilities.drop"} <= fields
    good = {"securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "capabilities": {"drop": ["ALL"]}}}
    status, body = await call(api, "POST", C.format(ns=restricted), container("good", **good), token=edit)
    assert status == 201, body
    spec = {"volumes": [{"name": "h", "hostPath": {"path": "/tmp"}}], "ports": [{"containerPort": 80, "hostPort": 80}]}
    status, body = await call(api, "POST", C.format(ns=privileged), container("hp", **spec), token=edit)
    assert status == 201, body
    status, body = await call(api, "POST", "/namespaces", {"metadata": {"name": unique("ns"),
                                                                        "labels": {"security.corral.io/level": "lax"}}})
    assert status == 422


@contextlib.asynccontextmanager
async def second_instance(api: Api, audit: AuditLog | None = None) -> AsyncIterator[str]:
    """Another API server on the same etcd; its URL."""
    server = ApiServer(api.store, audit_log=audit, keyring=api.server.sealing.keyring, authority=api.authority)
    caches = asyncio.create_task(server.run_caches())
    runner = web.AppRunner(server.app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    port = free_port()
    tls = server_context(api.tls_dir / "server.crt", api.tls_dir / "server.key", ca_pem=api.authority.cert_pem,
                         client_certs="optional")  # the same certificate as the first instance
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls).start()
    try:
        await server.tokens.index.ready.wait()
        yield api.url.rsplit(":", 1)[0] + f":{port}"
    finally:
        await runner.cleanup()
        caches.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await caches


async def test_a_revoked_token_stops_working_within_a_second_on_every_instance(api: Api) -> None:
    view, token_id = await make_token(api, "view")
    async with second_instance(api) as other, aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=api.ssl)) as http:
        urls = [api.url, other]

        async def status_on(url: str) -> int:
            async with http.get(url + "/namespaces", headers={"Authorization": f"Bearer {view}"}) as r:
                return r.status

        assert [await status_on(u) for u in urls] == [200, 200]
        status, body = await call(api, "GET", "/tokens")
        listed = {t["id"]: t for t in body["items"]}
        assert listed[token_id]["role"] == "view" and "token" not in listed[token_id]
        status, _ = await call(api, "DELETE", f"/tokens/{token_id}")
        assert status == 200
        revoked_at = time.monotonic()
        while [await status_on(u) for u in urls] != [401, 401]:
            assert time.monotonic() - revoked_at < 1.0, "still accepted a second after revocation"
            await asyncio.sleep(0.02)


async def test_an_expired_token_is_refused(api: Api) -> None:
    view, _ = await make_token(api, "view", ttl=1)
    status, _ = await call(api, "GET", "/namespaces", token=view)
    assert status == 200
    await asyncio.sleep(1.2)
    status, body = await call(api, "GET", "/namespaces", token=view)
    assert status == 401 and "expired" in body["error"]["message"]


async def test_the_audit_log_has_the_allowed_and_the_denied_writes(api: Api, tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log", max_bytes=4096, backups=2)
    ns = await namespace(api)
    edit, token_id = await make_token(api, "edit", ns)
    async with second_instance(api, log) as other, aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=api.ssl)) as http:
        async def post(path: str, body: object, token: str) -> int:
            async with http.post(other + path, json=body, headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.headers.get("X-Request-Id")
                return r.status

        assert await post(C.format(ns=ns), container("audited"), edit) == 201
        assert await post("/namespaces/default/containers", container("denied"), edit) == 403
        assert await post(C.format(ns=ns), container("anon"), "not-a-token") == 401
        for i in range(40):  # enough lines to rotate past 4 KiB
            await post(C.format(ns=ns), container(f"r{i}"), edit)
    log.close()
    lines = [json.loads(line) for p in sorted(tmp_path.glob("audit.log*")) for line in p.read_text().splitlines()]
    by_name = {(e["name"], e["code"]): e for e in lines}
    allowed = by_name[("audited", 201)]
    assert allowed["identity"] == f"edit:{token_id}" and allowed["verb"] == "POST" and allowed["kind"] == "containers"
    assert allowed["namespace"] == ns and allowed["sourceIP"] == "127.0.0.1" and allowed["requestId"]
    denied = [e for e in lines if e["code"] == 403]
    assert denied and denied[0]["namespace"] == "default" and denied[0]["identity"] == f"edit:{token_id}"
    assert any(e["code"] == 401 and e["identity"] == "anonymous" for e in lines)
    assert (tmp_path / "audit.log.1").exists() and (tmp_path / "audit.log").stat().st_mode & 0o777 == 0o600


async def test_a_join_token_is_k10_shaped_pins_this_ca_joins_and_expires(api: Api) -> None:
    status, body = await call(api, "POST", "/tokens", {"role": "join", "ttlSeconds": 1, "description": "worker"})
    assert status == 201
    token = body["token"]
    assert token.startswith(f"K10{ca_hash(api.authority.cert_pem)}::")
    status, joined = await call(api, "POST", "/join", {"node": unique("n")}, token=token)
    assert status == 201, joined
    status, _ = await call(api, "GET", "/namespaces", token=token)  # a join token does nothing else
    assert status == 403
    await asyncio.sleep(1.2)
    status, body = await call(api, "POST", "/join", {"node": unique("n")}, token=token)
    assert status == 401 and "expired" in body["error"]["message"]
