"""exec, attach and port-forward through the API: a WebSocket proxied to the container's agent.

``GET /namespaces/{ns}/containers/{name}/exec?command=…&stdin=&stdout=&stderr=&tty=&width=&height=``,
``…/attach`` and ``…/portforward?ports=PORT`` are checked here (who may, which container, which
node's agent), then the API opens the same WebSocket to that agent (``/exec/{ns}/{name}?uid=…``,
over the one agent session ``LogsProxy`` keeps: mutual TLS with the API's client certificate, the
agent's certificate checked for its node's name — api/agents.py) and only then accepts the client's upgrade.
From there it copies frames both ways unchanged (``api.streamproto``) until either side closes,
then closes the other: the API keeps no state per session beyond the two sockets, and a client
that goes away ends the process on the node.

A request that is not a WebSocket upgrade gets the same checks, so a client whose upgrade was
refused can ask again plainly and read the error's sentence; if the checks pass it is told to upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from corral.api import streamproto as sp
from corral.api.auth import IDENTITY, Identity
from corral.api.logs import LogsProxy
from corral.model.errors import BadRequest, Forbidden, Unavailable

_PASSED = {
    "exec": ("command", "stdin", "stdout", "stderr", "tty", "width", "height"),
    "attach": ("stdin", "stdout", "stderr", "tty"),
    "portforward": ("ports",),
}


def authorize_stream(identity: Identity, verb: str, *, namespace: str, name: str) -> None:
    """The one check for exec, attach and port-forward — running things inside a container: an admin
    anywhere, an ``edit`` token in its namespaces (``api/roles.py``); never a view or node token."""
    if identity.role == "admin":
        return
    if identity.role == "edit":
        if identity.namespaces and namespace not in identity.namespaces:
            raise Forbidden(f'{identity.name} may not {verb} containers in namespace "{namespace}": '
                            f"it may touch only namespace(s) {', '.join(identity.namespaces)}")
        return
    why = ": a view token only reads" if identity.role == "view" else ""
    raise Forbidden(f"{identity.name} may not {verb} container {namespace}/{name}{why}")


async def _copy(source: aiohttp.ClientWebSocketResponse | web.WebSocketResponse,
                sink: aiohttp.ClientWebSocketResponse | web.WebSocketResponse) -> None:
    async for msg in source:
        if msg.type == WSMsgType.BINARY:
            await sink.send_bytes(msg.data)
        elif msg.type == WSMsgType.TEXT:
            await sink.send_str(msg.data)


class StreamProxy:
    def __init__(self, agents: LogsProxy) -> None:
        self.agents = agents
        self._open: set[web.WebSocketResponse] = set()  # client sockets, closed at shutdown

    async def close(self) -> None:
        """End every open session (the server is stopping): each agent then ends its process."""
        await asyncio.gather(*(ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
                               for ws in list(self._open)), return_exceptions=True)

    async def exec(self, request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        authorize_stream(request[IDENTITY], "exec", namespace=namespace, name=name)  # before saying anything else
        if not request.query.getall("command", []):
            raise BadRequest("command: exec needs a command (?command=ARG, one per argument)")
        return await self._proxy(request, "exec")

    async def attach(self, request: web.Request) -> web.StreamResponse:
        return await self._proxy(request, "attach")

    async def portforward(self, request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        authorize_stream(request[IDENTITY], "portforward", namespace=namespace, name=name)
        ports = request.query.get("ports", "")
        if not ports.isdigit() or not 0 < int(ports) < 65536:
            raise BadRequest(f"ports: {ports!r} is not one port number (1-65535); open one connection per port")
        return await self._proxy(request, "portforward")

    async def _proxy(self, request: web.Request, verb: str) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        authorize_stream(request[IDENTITY], verb, namespace=namespace, name=name)
        container, target = await self.agents.locate(namespace, name, what=f"{verb} target")
        client = web.WebSocketResponse(protocols=(sp.SUBPROTOCOL,), max_msg_size=sp.MAX_FRAME * 4)
        if not client.can_prepare(request).ok:
            raise BadRequest(f"{verb} is a WebSocket ({sp.SUBPROTOCOL}): send an upgrade request")
        params = [(k, v) for k, v in request.query.items() if k in _PASSED[verb]]
        params.append(("uid", container.metadata.uid))
        try:
            agent = await self.agents.agent_session().ws_connect(
                f"{target.url}/{verb}/{namespace}/{name}", params=params,
                protocols=(sp.SUBPROTOCOL,), max_msg_size=sp.MAX_FRAME * 4, autoping=True,
                timeout=aiohttp.ClientWSTimeout(ws_close=5), **target.options,
            )
        except (aiohttp.ClientError, OSError) as e:
            raise Unavailable(f'cannot reach the agent of node "{container.spec.node}" at {target.url}: {e}') from e
        self._open.add(client)
        try:
            await client.prepare(request)
            tasks = [asyncio.ensure_future(_copy(client, agent)), asyncio.ensure_future(_copy(agent, client))]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._open.discard(client)
            with contextlib.suppress(Exception):
                await agent.close()
            with contextlib.suppress(Exception):
                await client.close()
        return client
