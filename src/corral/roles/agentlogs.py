"""The agent's own small HTTPS listener: container logs, for the API's proxy only.

``GET /logs/{namespace}/{name}?uid=&tail=N&follow=1&timestamps=1`` answers the container's log
records as text lines (``[time ]text``), from the files the log shipper writes on this node.

Only the API may call it. The listener serves TLS with the node's certificate and requires a
client certificate signed by the cluster CA (``NodeCredentials.listener_context``); the one
middleware ``only_the_api`` then admits only the API's (CN ``corral:api``), for every route on the
app — a node's own certificate, or another node's, is refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from corral.runtime import logs
from corral.tls.contexts import peer_common_name
from corral.tls.pki import API_CLIENT_CN

LogPathFor = Callable[[str], Path | None]


def _line(rec: logs.LogLine, timestamps: bool) -> bytes:
    text = rec.text + ("" if rec.partial else "\n")
    return ((rec.time + " " if timestamps else "") + text).encode()


def refuse_unless_api(request: web.Request, *, what: str = "call") -> web.Response | None:
    """A 403 answer unless the verified client certificate is the API's (CN ``corral:api``)."""
    cn = peer_common_name(request.transport)
    if cn == API_CLIENT_CN:
        return None
    return web.json_response({"error": {"code": 403, "reason": "Forbidden",
                                        "message": f"only the API ({API_CLIENT_CN}) may {what} through an agent, not "
                                                   f"{cn or 'a client without a certificate'}",
                                        "details": []}}, status=403)


@web.middleware
async def only_the_api(request: web.Request,
                       handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Every route on the listener (logs, exec, attach, port-forward): the API's certificate only."""
    denied = refuse_unless_api(request)
    if denied is not None:
        return denied
    return await handler(request)


def build_app(*, log_path: LogPathFor) -> web.Application:
    async def serve_logs(request: web.Request) -> web.StreamResponse:
        uid = request.query.get("uid", "")
        path = log_path(uid)
        if path is None:
            name = request.match_info["name"]
            return web.json_response({"error": {"code": 404, "reason": "NotFound",
                                                "message": f'container "{name}" has no logs on this node yet',
                                                "details": []}}, status=404)
        tail_text = request.query.get("tail", "")
        tail = int(tail_text) if tail_text.isdigit() else -1
        follow = request.query.get("follow", "") not in ("", "0", "false")
        timestamps = request.query.get("timestamps", "") not in ("", "0", "false")
        response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            if follow:
                async for rec in logs.follow(path, tail_lines=tail if tail >= 0 else 1_000_000):
                    await response.write(_line(rec, timestamps))
            else:
                records = await logs.tail(path, tail if tail >= 0 else 1_000_000)
                await response.write(b"".join(_line(r, timestamps) for r in records))
        except (ConnectionResetError, ConnectionError):
            pass
        return response

    app = web.Application(middlewares=[only_the_api])
    app.router.add_get("/logs/{namespace}/{name}", serve_logs, allow_head=False)
    return app
