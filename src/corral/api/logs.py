"""Container logs through the API: the API proxies to the agent of the container's node.

The agent serves ``GET /logs/{namespace}/{name}?uid=&tail=&follow=&timestamps=`` on its own TLS
listener (its address is in the Node's ``status.agentEndpoint``). The API reaches it through
``AgentConnections`` (api/agents.py): mutual TLS with the API's client certificate, the agent's
serving certificate checked against the cluster CA, the node's InternalIP and its name — so only
the API can read a node's logs, and a user never needs to reach a node directly. The body is
streamed through as it comes (``follow``).

``previous=1`` asks for the run before the latest restart. When no container of that name exists,
the log shown is the newest one kept of a deleted container of that name (agents keep them for
``--keep-logs``): every node's agent is asked when (if ever) it deleted one, and the newest wins.
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from corral.api import roles
from corral.api.agents import AgentConnections, AgentTarget
from corral.api.auth import IDENTITY
from corral.api.roles import USER_ROLES
from corral.model.errors import BadRequest, CorralError, Forbidden, NotFound, Unavailable
from corral.model.kinds import CONTAINERS, NODES
from corral.model.resources import Container, Node
from corral.store import typed
from corral.store.base import Store


class LogsProxy:
    def __init__(self, store: Store, agents: AgentConnections) -> None:
        self.store = store
        self.agents = agents

    async def close(self) -> None:
        await self.agents.close()

    def agent_session(self) -> aiohttp.ClientSession:
        """The one session the API uses to reach agents (logs, exec, attach, port-forward): mutual
        TLS with the API's client certificate (``AgentConnections``). Pass ``**target.options`` on
        every request, so the agent's certificate is checked for its node's name."""
        return self.agents.session()

    async def locate(self, namespace: str, name: str, *, what: str = "logs") -> tuple[Container, AgentTarget]:
        """The container and its node's agent (checked endpoint); errors say which is missing."""
        kv = await self.store.get(CONTAINERS.key(namespace, name))
        if kv is None:
            raise NotFound(f'container "{name}" in namespace "{namespace}" not found')
        container = typed.decode(kv, Container)
        if not container.spec.node:
            raise BadRequest(f'container "{name}" is not scheduled to a node yet, so it has no {what}')
        return container, await self.agents.target(container.spec.node)

    async def _kept_on(self, namespace: str, name: str, gone: NotFound) -> AgentTarget:
        """The agent of the node keeping the newest log of a deleted container ``name``; ``gone`` (the
        container's NotFound) when no node keeps one."""
        page = await self.store.list(NODES.prefix())
        nodes = [typed.decode(kv, Node).metadata.name for kv in page.items]

        async def deleted_at(node: str) -> tuple[float, AgentTarget] | None:
            try:
                target = await self.agents.target(node)
                async with self.agent_session().get(
                    f"{target.url}/logs/{namespace}/{name}", params={"kept": "1", "info": "1"},
                    timeout=aiohttp.ClientTimeout(total=5), **target.options,
                ) as resp:
                    return (float((await resp.json())["deletedAt"]), target) if resp.status == 200 else None
            except (CorralError, aiohttp.ClientError, TimeoutError, ValueError, KeyError):
                return None  # a node without an agent (or unreachable) keeps nothing we can read

        found = [f for f in await asyncio.gather(*(deleted_at(n) for n in nodes)) if f is not None]
        if not found:
            raise NotFound(f"{gone}, and no node keeps the log of a deleted container of that name") from None
        return max(found, key=lambda pair: pair[0])[1]

    async def logs(self, request: web.Request) -> web.StreamResponse:
        identity = request[IDENTITY]
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        if identity.role in USER_ROLES:  # edit/view read logs in their namespaces (api/roles.py)
            roles.check(identity, "get", CONTAINERS, namespace)
        elif identity.role != "admin":
            raise Forbidden(f"{identity.name} may not read container logs")
        params = {k: v for k, v in request.query.items() if k in ("tail", "follow", "timestamps", "previous")}
        try:
            container, agent = await self.locate(namespace, name)
            params["uid"] = container.metadata.uid
            node = container.spec.node
        except NotFound as gone:  # the newest kept log of a deleted container of that name, if any node has one
            agent = await self._kept_on(namespace, name, gone)
            node = agent.node
            params["kept"] = "1"
        try:
            upstream = await self.agent_session().get(
                f"{agent.url}/logs/{namespace}/{name}", params=params,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5), **agent.options,
            )
        except aiohttp.ClientError as e:
            raise Unavailable(f'cannot reach the agent of node "{node}" at {agent.url}: {e}') from e
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
