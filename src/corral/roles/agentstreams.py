"""The agent's exec, attach and port-forward WebSockets (for the API's proxy only).

Routes on the agent's listener, next to ``/logs`` and behind the same check (mutual TLS, and the
client certificate must be the API's: ``agentlogs.refuse_unless_api``):

- ``GET /exec/{namespace}/{name}?uid=&command=…&stdin=&stdout=&stderr=&tty=&width=&height=`` runs the
  command in the container's running task (``runtime.execstream``) and speaks the channel protocol
  of ``api.streamproto``; the last frame is the status (channel 3) with the exit code.
- ``GET /attach/{namespace}/{name}?uid=`` streams the main process's stdout and stderr from now
  on (read from the log the node's collector writes, so attaching never disturbs the log) and ends with the
  main process's exit status. The main process is started without stdin, so ``stdin=1`` is refused.
- ``GET /portforward/{namespace}/{name}?uid=&ports=PORT`` connects to ``127.0.0.1:PORT`` inside the
  container's network namespace (``network.nsdial``) and pipes the bytes.

The WebSocket is accepted first; a failure after that (no running task, a command that cannot
start, a refused port) is the status (or error) frame, so the client always gets a sentence.
Closing the WebSocket ends the process (killed and deleted) or the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from corral.api import streamproto as sp
from corral.model.errors import BadRequest, Conflict, CorralError, NotFound
from corral.network import nsdial
from corral.reconcile import naming
from corral.roles.agentlogs import refuse_unless_api
from corral.runtime import containers as ctrs
from corral.runtime import logs, tasks
from corral.runtime.client import Client
from corral.runtime.execstream import ExecStream, Fifo, start_exec

log = logging.getLogger(__name__)
DRAIN_AFTER_EXIT_S = 2.0  # how long output may trail the exit (a child that kept stdout open)


@dataclass(frozen=True, slots=True)
class StreamTargets:
    """What the stream routes need from the node: containerd, and where a container's netns and log are."""

    client: Client
    netns_path: Callable[[str], Path]
    log_path: Callable[[str], Path | None]
    fifo_root: Path | None = None


def _flag(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    return default if value is None else value not in ("", "0", "false")


async def running_container(client: Client, uid: str) -> str:
    """The containerd id of the container ``uid`` whose task runs here (the newest generation)."""
    if not uid:
        raise BadRequest("the request names no container uid")
    found = await ctrs.list_containers(client, {naming.LABEL_UID: uid})
    found.sort(key=lambda info: int(info.labels.get(naming.LABEL_GENERATION, "0") or 0), reverse=True)
    for info in found:
        with contextlib.suppress(NotFound):
            if (await tasks.Task(client, info.id).status()).state == "running":
                return info.id
    raise Conflict("the container is not running on this node")


async def _status(ws: web.WebSocketResponse, *, exit_code: int | None, reason: str = "", message: str = "") -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.send_bytes(sp.frame(sp.STATUS, sp.status_payload(exit_code=exit_code, reason=reason, message=message)))


async def _race(main: Awaitable[Any], client_gone: Awaitable[Any]) -> bool:
    """Run both; True when ``main`` finished first, False when the client went away first."""
    first: asyncio.Future[Any] = asyncio.ensure_future(main)
    second: asyncio.Future[Any] = asyncio.ensure_future(client_gone)
    try:
        done, _ = await asyncio.wait((first, second), return_when=asyncio.FIRST_COMPLETED)
        if first in done:
            first.result()
            return True
        return False
    finally:
        for fut in (first, second):
            fut.cancel()
        await asyncio.gather(first, second, return_exceptions=True)


async def _pump_out(ws: web.WebSocketResponse, fifo: Fifo | None, channel: int) -> None:
    if fifo is None:
        return
    while chunk := await fifo.read():
        await ws.send_bytes(sp.frame(channel, chunk))


async def _pump_in(ws: web.WebSocketResponse, stream: ExecStream) -> None:
    """Client frames to the process until the client closes its socket."""
    async for msg in ws:
        if msg.type != WSMsgType.BINARY or not msg.data:
            continue
        channel, payload = sp.split(msg.data)
        if channel == sp.STDIN:
            await stream.write_stdin(payload)
        elif channel == sp.RESIZE:
            size = sp.parse_resize(payload)
            if size is not None:
                with contextlib.suppress(CorralError):
                    await stream.resize(*size)
        elif channel == sp.CLOSE and payload[:1] == bytes((sp.STDIN,)):
            with contextlib.suppress(CorralError):
                await stream.close_stdin()


async def _run_exec(ws: web.WebSocketResponse, stream: ExecStream) -> None:
    outputs = [asyncio.ensure_future(_pump_out(ws, stream.stdout, sp.STDOUT)),
               asyncio.ensure_future(_pump_out(ws, stream.stderr, sp.STDERR))]
    try:
        code = await stream.wait()
        await asyncio.wait(outputs, timeout=DRAIN_AFTER_EXIT_S)
    finally:
        for out in outputs:
            out.cancel()
        await asyncio.gather(*outputs, return_exceptions=True)
    await _status(ws, exit_code=code)


def add_routes(app: web.Application, *, targets: StreamTargets) -> None:
    """Register ``/exec``, ``/attach`` and ``/portforward`` on the agent's listener."""

    async def accept(request: web.Request, what: str) -> web.WebSocketResponse | web.Response:
        denied = refuse_unless_api(request, what=what)
        if denied is not None:
            return denied
        ws = web.WebSocketResponse(protocols=(sp.SUBPROTOCOL,), max_msg_size=sp.MAX_FRAME * 4)
        await ws.prepare(request)
        return ws

    def handler(what: str, body: Callable[[web.Request, web.WebSocketResponse], Coroutine[Any, Any, None]]
                ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def serve(request: web.Request) -> web.StreamResponse:
            ws = await accept(request, what)
            if not isinstance(ws, web.WebSocketResponse):
                return ws
            try:
                await body(request, ws)
            except CorralError as e:
                await _status(ws, exit_code=None, reason=e.reason, message=str(e))
            except ConnectionError:
                pass
            except Exception as e:  # the client gets the sentence, the log the trace
                log.exception("%s %s failed", what, request.path)
                await _status(ws, exit_code=None, reason="InternalError", message=f"{what} failed: {e}")
            finally:
                with contextlib.suppress(Exception):
                    await ws.close()
            return ws

        return serve

    async def exec_body(request: web.Request, ws: web.WebSocketResponse) -> None:
        command = request.query.getall("command", [])
        if not command:
            raise BadRequest("exec needs a command (?command=…, one per argument)")
        tty = _flag(request, "tty")
        size = None
        width, height = request.query.get("width", ""), request.query.get("height", "")
        if tty and width.isdigit() and height.isdigit():
            size = (int(width), int(height))
        cid = await running_container(targets.client, request.query.get("uid", ""))
        try:
            stream = await start_exec(targets.client, cid, command, tty=tty, stdin=_flag(request, "stdin"),
                                      stdout=_flag(request, "stdout", True), stderr=_flag(request, "stderr", True),
                                      size=size, fifo_root=targets.fifo_root)
        except CorralError as e:
            await _status(ws, exit_code=None, reason="StartFailed", message=f"cannot run {command[0]!r}: {e}")
            return
        try:
            await _race(_run_exec(ws, stream), _pump_in(ws, stream))
        finally:
            await stream.close()

    async def attach_body(request: web.Request, ws: web.WebSocketResponse) -> None:
        if _flag(request, "stdin"):
            raise BadRequest("attach cannot send stdin: a container's main process is started without stdin; "
                             "use exec -i")
        if _flag(request, "tty"):
            raise BadRequest("attach has no terminal: a container's main process is started without one; use exec -t")
        uid = request.query.get("uid", "")
        cid = await running_container(targets.client, uid)
        path = targets.log_path(uid)
        if path is None:
            raise NotFound("the container has no log on this node yet")

        async def follow() -> None:
            async for rec in logs.follow(path, tail_lines=0, poll_interval=0.05):
                text = (rec.text + ("" if rec.partial else "\n")).encode()
                await ws.send_bytes(sp.frame(sp.STDERR if rec.stream == "stderr" else sp.STDOUT, text))

        async def until_exit() -> None:
            follower = asyncio.ensure_future(follow())
            try:
                status = await tasks.Task(targets.client, cid).wait()
                await asyncio.sleep(0.3)  # the collector's last lines
            finally:
                follower.cancel()
                await asyncio.gather(follower, return_exceptions=True)
            await _status(ws, exit_code=status.code)

        async def client_gone() -> None:
            async for _ in ws:
                pass

        await _race(until_exit(), client_gone())

    async def portforward_body(request: web.Request, ws: web.WebSocketResponse) -> None:
        port_text = request.query.get("ports", "")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise BadRequest(f"ports: {port_text!r} is not one port number (1-65535)")
        uid = request.query.get("uid", "")
        await running_container(targets.client, uid)
        try:
            sock = await nsdial.dial(targets.netns_path(uid), int(port_text))
        except (OSError, TimeoutError) as e:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_bytes(sp.frame(sp.ERROR, f"cannot connect to port {port_text} in the container: "
                                                       f"{getattr(e, 'strerror', None) or e}".encode()))
            return
        loop = asyncio.get_running_loop()

        async def upstream() -> None:
            """Container → client: each read lands right after the channel byte of its own frame."""
            while True:
                buf = bytearray(sp.MAX_FRAME + 1)
                buf[0] = sp.DATA
                n = await loop.sock_recv_into(sock, memoryview(buf)[1:])
                if not n:
                    return
                await ws.send_bytes(memoryview(buf)[: n + 1])  # type: ignore[arg-type]  # aiohttp takes any buffer

        async def downstream() -> None:
            async for msg in ws:
                if msg.type != WSMsgType.BINARY or not msg.data:
                    continue
                channel, payload = sp.split(msg.data)
                if channel == sp.DATA:
                    await loop.sock_sendall(sock, payload)
                elif channel == sp.CLOSE:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_WR)

        try:
            await _race(upstream(), downstream())
        finally:
            sock.close()

    app.router.add_get("/exec/{namespace}/{name}", handler("exec", exec_body), allow_head=False)
    app.router.add_get("/attach/{namespace}/{name}", handler("attach", attach_body), allow_head=False)
    app.router.add_get("/portforward/{namespace}/{name}", handler("port-forward", portforward_body), allow_head=False)
