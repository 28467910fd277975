"""Container logs through the API: the API proxies to the agent of the container's node.

The agent serves ``GET /logs/{namespace}/{name}?uid=&tail=&follow=&timestamps=`` on its own
listener (its address is in the Node's ``status.agentEndpoint``). The API authenticates to agents
with the cluster's agent token — a secret kept in etcd, created once, that agents fetch with their
node token (``GET /join/agent-token``) — so only the API can read a node's logs, and a user never
needs to reach a node directly. The body is streamed through as it comes (``follow``).
"""

from __future__ import annotations

import secrets

import aiohttp
from aiohttp import web

from corral.api import roles
from corral.api.auth import IDENTITY
from corral.api.roles import USER_ROLES
from corral.model.errors import AlreadyExists, BadRequest, Forbidden, NotFound, Unavailable
from corral.model.kinds import BY_KIND
from corral.model.resources import Container, Node
from corral.store import typed
from corral.store.base import Store

AGENT_TOKEN_KEY = "/corral/_cluster/agent-token"


async def ensure_agent_token(store: Store) -> str:
    kv = await store.get(AGENT_TOKEN_KEY)
    if kv is not None:
        return kv.value.decode()
    token = secrets.token_urlsafe(32)
    try:
        await store.create(AGENT_TOKEN_KEY, token.encode())
    except AlreadyExists:
        kv = await store.get(AGENT_TOKEN_KEY)
        assert kv is not None
        return kv.value.decode()
    return token


class LogsProxy:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._token = ""
        self._http: aiohttp.ClientSession | None = None

    async def token(self) -> str:
        if not self._token:
            self._token = await ensure_agent_token(self.store)
        return self._token

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def agent_token(self, request: web.Request) -> web.Response:
        identity = request[IDENTITY]
        if identity.role not in ("node", "admin"):
            raise Forbidden(f"{identity.name} may not read the agent token")
        return web.json_response({"token": await self.token()})

    def agent_session(self) -> aiohttp.ClientSession:
        """The one session the API uses to reach agents (logs, exec, attach, port-forward)."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    async def agent_headers(self) -> dict[str, str]:
        """How the API proves itself to an agent."""
        return {"Authorization": f"Bearer {await self.token()}"}

    async def locate(self, namespace: str, name: str, *, what: str = "logs") -> tuple[Container, str]:
        """The container and the endpoint of its node's agent; errors say which is missing."""
        kv = await self.store.get(BY_KIND["Container"].key(namespace, name))
        if kv is None:
            raise NotFound(f'container "{name}" in namespace "{namespace}" not found')
        container = typed.decode(kv, Container)
        if not container.spec.node:
            raise BadRequest(f'container "{name}" is not scheduled to a node yet, so it has no {what}')
        node_kv = await self.store.get(BY_KIND["Node"].key("", container.spec.node))
        endpoint = typed.decode(node_kv, Node).status.agent_endpoint if node_kv is not None else ""
        if not endpoint:
            raise Unavailable(f'node "{container.spec.node}" has no agent endpoint; is its agent running?')
        return container, endpoint

    async def logs(self, request: web.Request) -> web.StreamResponse:
        identity = request[IDENTITY]
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        if identity.role in USER_ROLES:  # edit/view read logs in their namespaces (api/roles.py)
            roles.check(identity, "get", BY_KIND["Container"], namespace)
        elif identity.role != "admin":
            raise Forbidden(f"{identity.name} may not read container logs")
        container, endpoint = await self.locate(namespace, name)
        params = {k: v for k, v in request.query.items() if k in ("tail", "follow", "timestamps")}
        params["uid"] = container.metadata.uid
        try:
            upstream = await self.agent_session().get(
                f"{endpoint}/logs/{namespace}/{name}", params=params,
                headers=await self.agent_headers(),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            )
        except aiohttp.ClientError as e:
            raise Unavailable(f'cannot reach the agent of node "{container.spec.node}" at {endpoint}: {e}') from e
        async with upstream:
            if upstream.status != 200:
                return web.Response(status=upstream.status, body=await upstream.read(),
                                    content_type=upstream.content_type)
            response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            except (ConnectionResetError, aiohttp.ClientError):
                pass
            return response
