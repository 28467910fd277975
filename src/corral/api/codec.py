"""Request bodies in, response bodies out: JSON parsing with clear 400s, and fast encoding."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from corral.model.errors import BadRequest, CorralError, TooLarge
from corral.model.resources import with_phase

JSON_TYPE = "application/json"
MAX_BODY: web.AppKey[int] = web.AppKey("max_body", int)
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


async def read_body(request: web.Request) -> bytes:
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge as e:
        raise TooLarge(
            f"the request body is larger than the limit of {request.app[MAX_BODY]} bytes; send a smaller object"
        ) from e
    if not body.strip():
        raise BadRequest("the request body is empty; send the object as JSON")
    return body


def parse_json(body: bytes) -> Any:
    try:
        return _decoder.decode(body)
    except msgspec.DecodeError as e:
        raise BadRequest(f"the request body is not valid JSON: {e}") from e


async def read_json(request: web.Request) -> Any:
    return parse_json(await read_body(request))


def read_object_body(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise BadRequest(f"the request body must be a JSON object, not {type(data).__name__}")
    return data


def json_response(obj: Any, *, status: int = 200) -> web.Response:
    body = _encoder.encode(obj)
    if isinstance(kind := getattr(obj, "kind", None), str):
        body = with_phase(kind, body)  # an object of a kind: its status.phase is always spelled out
    return web.Response(body=body, status=status, content_type=JSON_TYPE)


def raw_response(body: bytes, *, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type=JSON_TYPE)


def error_response(error: CorralError) -> web.Response:
    return web.Response(body=_encoder.encode(error.to_body()), status=error.code, content_type=JSON_TYPE)


def encode(obj: Any) -> bytes:
    return _encoder.encode(obj)
