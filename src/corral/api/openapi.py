"""The OpenAPI 3.1 document, generated from the model types and the routes actually served."""

from __future__ import annotations

from typing import Any

import msgspec

from corral import __version__
from corral.model.kinds import KINDS, KindInfo

_ERROR = {"$ref": "#/components/schemas/Error"}


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"type": "integer"},
                    "reason": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"field": {"type": "string"}, "message": {"type": "string"}}},
                    },
                },
            }
        },
    }


def _responses(ok: str, schema: dict[str, Any] | None, *codes: int) -> dict[str, Any]:
    out: dict[str, Any] = {ok: {"description": "OK"}}
    if schema is not None:
        out[ok]["content"] = {"application/json": {"schema": schema}}
    for code in codes:
        out[str(code)] = {"description": "error", "content": {"application/json": {"schema": _ERROR}}}
    return out


def _path_params(path: str) -> list[dict[str, Any]]:
    """The path parameters a templated path declares (OpenAPI requires each to be listed)."""
    names = [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]
    return [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]


_DRY_RUN = {"name": "dryRun", "in": "query", "schema": {"type": "string", "enum": ["All"]},
            "description": "All: validate, authorize and check the write as for real, store nothing"}
_PATCH_BODY = {"required": True, "content": {
    "application/merge-patch+json": {"schema": {"type": "object"}},
    "application/json-patch+json": {"schema": {"type": "array", "items": {
        "type": "object", "required": ["op", "path"],
        "properties": {"op": {"type": "string", "enum": ["add", "remove", "replace", "move", "copy", "test"]},
                       "path": {"type": "string"}, "from": {"type": "string"}, "value": {}}}}},
}}


def _paths_for(info: KindInfo) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{info.kind}"}
    listing = {"type": "object", "properties": {"kind": {"type": "string"}, "metadata": {"type": "object"},
                                                "items": {"type": "array", "items": ref}}}
    params = [
        {"name": "labelSelector", "in": "query", "schema": {"type": "string"}},
        {"name": "fieldSelector", "in": "query", "schema": {"type": "string"}},
        {"name": "watch", "in": "query", "schema": {"type": "string"}, "description": "1 to stream NDJSON watch events"},
        {"name": "resourceVersion", "in": "query", "schema": {"type": "string"}},
        {"name": "limit", "in": "query", "schema": {"type": "integer"}},
        {"name": "continue", "in": "query", "schema": {"type": "string"}},
        {"name": "timeoutSeconds", "in": "query", "schema": {"type": "integer"}},
    ]
    body = {"required": True, "content": {"application/json": {"schema": ref}}}
    base = f"/namespaces/{{namespace}}/{info.plural}" if info.namespaced else f"/{info.plural}"
    item = f"{base}/{{name}}"
    paths: dict[str, Any] = {
        base: {
            "get": {"summary": f"List or watch {info.plural}", "parameters": params,
                    "responses": _responses("200", listing, 400, 401, 403, 410)},
            "post": {"summary": f"Create a {info.kind}", "requestBody": body, "parameters": [_DRY_RUN],
                     "responses": _responses("201", ref, 400, 401, 403, 404, 409, 413, 422)},
        },
        item: {
            "get": {"summary": f"Read a {info.kind}", "responses": _responses("200", ref, 401, 403, 404)},
            "put": {"summary": f"Replace a {info.kind} (spec and metadata; status is kept)", "requestBody": body,
                    "parameters": [_DRY_RUN], "responses": _responses("200", ref, 400, 401, 403, 404, 409, 413, 422)},
            "patch": {"summary": f"Change part of a {info.kind}: a JSON merge patch or a JSON patch (RFC 7386, 6902)",
                      "requestBody": _PATCH_BODY, "parameters": [_DRY_RUN],
                      "responses": _responses("200", ref, 400, 401, 403, 404, 409, 413, 415, 422)},
            "delete": {"summary": f"Delete a {info.kind} (graceful while finalizers remain)",
                       "parameters": [_DRY_RUN, {"name": "gracePeriodSeconds", "in": "query", "schema": {"type": "integer"}},
                                      {"name": "propagationPolicy", "in": "query",
                                       "schema": {"type": "string", "enum": ["Background", "Foreground", "Orphan"]}}],
                       "responses": _responses("200", ref, 400, 401, 403, 404, 409)},
        },
    }
    if info.status_subresource:
        paths[f"{item}/status"] = {
            "put": {"summary": f"Replace a {info.kind}'s status", "requestBody": body, "parameters": [_DRY_RUN],
                    "responses": _responses("200", ref, 400, 401, 403, 404, 409, 422)},
            "patch": {"summary": f"Change part of a {info.kind}'s status (merge patch or JSON patch)",
                      "requestBody": _PATCH_BODY, "parameters": [_DRY_RUN],
                      "responses": _responses("200", ref, 400, 401, 403, 404, 409, 415, 422)},
        }
    if info.namespaced:
        paths[f"/{info.plural}"] = {"get": {"summary": f"List or watch {info.plural} in all namespaces",
                                            "parameters": params, "responses": _responses("200", listing, 400, 401, 403, 410)}}
    return paths


def _stream_paths() -> dict[str, Any]:
    """exec, attach, port-forward: WebSockets speaking the channel protocol of ``api/streamproto.py``."""

    def flags(*names: str) -> list[dict[str, Any]]:
        return [{"name": n, "in": "query", "schema": {"type": "string"}} for n in names]

    base = "/namespaces/{namespace}/containers/{name}"
    proto = " (WebSocket, subprotocol v5.channel.k8s.io; see docs/exec.md)"
    return {
        f"{base}/exec": {"get": {"summary": "Run a command in the container" + proto,
                                 "parameters": [{"name": "command", "in": "query", "required": True,
                                                 "schema": {"type": "array", "items": {"type": "string"}}},
                                                *flags("stdin", "stdout", "stderr", "tty", "width", "height")],
                                 "responses": _responses("101", None, 400, 401, 403, 404, 503)}},
        f"{base}/attach": {"get": {"summary": "Follow the main process's output until it exits" + proto,
                                   "parameters": flags("stdout", "stderr"),
                                   "responses": _responses("101", None, 400, 401, 403, 404, 503)}},
        f"{base}/portforward": {"get": {"summary": "A TCP connection to a port inside the container" + proto,
                                        "parameters": [{"name": "ports", "in": "query", "required": True,
                                                        "schema": {"type": "integer"}}],
                                        "responses": _responses("101", None, 400, 401, 403, 404, 503)}},
    }


def document() -> dict[str, Any]:
    _, components = msgspec.json.schema_components([k.type for k in KINDS], ref_template="#/components/schemas/{name}")
    components["Error"] = _error_schema()
    paths: dict[str, Any] = {}
    for info in KINDS:
        paths.update(_paths_for(info))
    paths["/namespaces/{namespace}/containers/{name}/logs"] = {
        "get": {"summary": "A container's log lines (tail, follow)",
                "parameters": [{"name": "follow", "in": "query", "schema": {"type": "string"}},
                               {"name": "tail", "in": "query", "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "log lines", "content": {"text/plain": {}}}}}
    }
    paths.update(_stream_paths())
    paths["/nodes/{name}/heartbeat"] = {"put": {"summary": "A node's heartbeat (agents): one small write; says whether the node is Ready",
                                                "responses": _responses("200", None, 401, 403)}}
    paths["/nodes/{name}/heartbeats"] = {"get": {
        "summary": "A node's heartbeat channel (agents): a WebSocket; each text frame the node sends is one beat, "
                   "answered with the same JSON as PUT /nodes/{name}/heartbeat (or the error shape)",
        "responses": _responses("101", None, 401, 403)}}
    paths["/join"] = {"post": {"summary": "Join a node: {node, csr, nodeIP} with the join token (or the node's own "
                                          "certificate, to renew) → a node certificate signed by the cluster CA; "
                                          "without csr, a node token (corral sim)",
                               "responses": _responses("201", None, 400, 401, 403, 422)}}
    paths["/cacerts"] = {"get": {"summary": "The cluster CA (PEM), without authentication: a joining worker checks "
                                            "its SHA-256 against the K10 join token",
                                 "responses": {"200": {"description": "PEM", "content": {"application/x-pem-file": {}}}}}}
    paths["/tokens"] = {  # api/tokens.py (admin only)
        "post": {"summary": "Make a token: {role: admin|edit|view|join, namespaces, ttlSeconds, description}; "
                            "answers it once", "responses": _responses("201", None, 400, 401, 403, 422)},
        "get": {"summary": "The tokens: id, role, namespaces, expiry, description (never a secret)",
                "responses": _responses("200", None, 401, 403)}}
    paths["/tokens/{id}"] = {"delete": {"summary": "Revoke a token (every API instance within 1 s)",
                                        "responses": _responses("200", None, 401, 403, 404)}}
    paths["/encryption/rotate"] = {"post": {"summary": "Rotate the key sealing Secrets at rest; re-seal every Secret",
                                            "responses": _responses("200", None, 401, 403)}}
    paths["/cluster"] = {"get": {"summary": "The cluster's network settings (CIDRs, DNS domain, backend)",
                                 "responses": _responses("200", {"type": "object"}, 401, 404)}}
    for p in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        paths[p] = {"get": {"responses": {"200": {"description": "OK"}}}}
    for path, item in paths.items():  # every templated path declares its parameters
        if "{" in path:
            item["parameters"] = _path_params(path)
    return {
        "openapi": "3.1.0",
        "info": {"title": "corral", "version": __version__},
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }
