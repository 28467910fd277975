"""The agent's own small HTTPS listener: container logs, for the API's proxy only.

``GET /logs/{namespace}/{name}?uid=&tail=N&follow=1&timestamps=1`` answers the container's log
records as text lines (``[time ]text``), from the files the node's log collector writes;
``previous=1``: the run before the latest start; ``kept=1`` (no uid): the newest kept log of a deleted
container of that name (``kept=1&info=1``: only ``{"deletedAt": seconds}``, so the API can pick the
newest across nodes).

Only the API may call it. The listener serves TLS with the node's certificate and requires a
client certificate signed by the cluster CA (``NodeCredentials.listener_context``); the one
middleware ``only_the_api`` then admits only the API's (CN ``corral:api``), for every route on the
app — a node's own certificate, or another node's, is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from corral.reconcile import logkeeping
from corral.runtime import logs
from corral.tls.contexts import peer_common_name
from corral.tls.names import API_CLIENT_CN

LogPathFor = Callable[[str], Path | None]
KeptLogFor = Callable[[str, str], tuple[Path, float] | None]


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


def _not_found(message: str) -> web.Response:
    return web.json_response({"error": {"code": 404, "reason": "NotFound", "message": message, "details": []}},
                             status=404)


def build_app(*, log_path: LogPathFor, kept_log: KeptLogFor | None = None,
              stats: Callable[[], dict[str, object]] | None = None) -> web.Application:
    """``kept_log(namespace, name)``: the newest kept log of a deleted container and when it was deleted
    (blocking; ``reconcile/logkeeping.latest_kept``)."""

    async def serve_logs(request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        previous = request.query.get("previous", "") not in ("", "0", "false")
        if request.query.get("kept", "") not in ("", "0", "false"):  # a deleted container's
            found = await asyncio.to_thread(kept_log, namespace, name) if kept_log is not None else None
            if found is None:
                return _not_found(f'no log of a deleted container "{name}" is kept on this node')
            if request.query.get("info"):
                return web.json_response({"deletedAt": found[1]})
            path: Path | None = found[0]
        else:
            path = log_path(request.query.get("uid", ""))
            if path is None:
                return _not_found(f'container "{name}" has no logs on this node yet')
        if previous:
            assert path is not None
            path = logkeeping.previous_path(path)
            if not await asyncio.to_thread(path.exists):
                return _not_found(f'container "{name}" has no previous run on this node (it has not restarted)')
        assert path is not None
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

    async def serve_stats(_: web.Request) -> web.Response:  # corral top: the containers' last usage sample
        return web.json_response(stats() if stats is not None else {"containers": []})

    app.router.add_get("/stats", serve_stats, allow_head=False)
    return app
