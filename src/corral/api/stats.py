"""``GET /nodes/{name}/stats``: a node's containers' CPU and memory, from its agent (``corral top``).

The agent samples each running container's usage from containerd every few seconds (its
``/metrics`` reads the same sample); the API asks the node's agent over the one mutual-TLS agent
session (``api/agents.py``) and passes the JSON on: ``{"node", "periodSeconds", "containers":
[{"namespace", "name", "cpuCores", "memoryBytes"}]}``. Who may read Nodes may read this; a user
limited to some namespaces gets only those namespaces' containers.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import msgspec
from aiohttp import web

from corral.api import codec
from corral.api.agents import AgentConnections
from corral.api.auth import IDENTITY
from corral.api.authz import authorize_read
from corral.model.errors import Unavailable
from corral.model.kinds import NODES


def add_routes(router: web.UrlDispatcher, agents: AgentConnections) -> None:
    async def node_stats(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        identity = request[IDENTITY]
        authorize_read(identity, NODES, namespace="", name=name)
        target = await agents.target(name)
        try:
            async with agents.session().get(f"{target.url}/stats", timeout=aiohttp.ClientTimeout(total=10),
                                            **target.options) as r:
                body = await r.read()
                if r.status != 200:
                    return web.Response(status=r.status, body=body, content_type="application/json")
        except aiohttp.ClientError as e:
            raise Unavailable(f'cannot reach the agent of node "{name}": {e}') from e
        namespaces = identity.namespaces
        if namespaces:  # a namespaced token sees its namespaces' containers only
            data: dict[str, Any] = msgspec.json.decode(body)
            data["containers"] = [c for c in data.get("containers", []) if c.get("namespace") in namespaces]
            body = codec.encode(data)
        return codec.raw_response(body)

    router.add_get("/nodes/{name}/stats", node_stats, allow_head=False)
