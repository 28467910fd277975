"""The agent's own small HTTP listener: container logs, for the API's proxy only.

``GET /logs/{namespace}/{name}?uid=&tail=N&follow=1&timestamps=1`` answers the container's log
records as text lines (``[time ]text``), from the files the log shipper writes on this node. Only
the API may call it: the request must carry the cluster's agent token.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from corral.runtime import logs

LogPathFor = Callable[[str], Path | None]


def _line(rec: logs.LogLine, timestamps: bool) -> bytes:
    text = rec.text + ("" if rec.partial else "\n")
    return ((rec.time + " " if timestamps else "") + text).encode()


def refuse_unless_api(request: web.Request, token: str, *, what: str = "read logs") -> web.Response | None:
    """A 401 answer unless the request carries the cluster's agent token (only the API has it)."""
    if token and hmac.compare_digest(request.headers.get("Authorization", ""), f"Bearer {token}"):
        return None
    return web.json_response({"error": {"code": 401, "reason": "Unauthorized",
                                        "message": f"only the API may {what} through an agent", "details": []}},
                             status=401)


def build_app(*, token: Callable[[], str], log_path: LogPathFor) -> web.Application:
    async def serve_logs(request: web.Request) -> web.StreamResponse:
        denied = refuse_unless_api(request, token())
        if denied is not None:
            return denied
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

    app = web.Application()
    app.router.add_get("/logs/{namespace}/{name}", serve_logs, allow_head=False)
    return app
