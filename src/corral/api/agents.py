"""The API's connections to agents: one place for how the API reaches a node's listener.

Every API → agent call (logs today; exec, attach and port-forward build on it) goes through
``AgentConnections``: ``endpoint(node)`` reads the Node and returns its ``status.agentEndpoint``
only if it is ``https://<its InternalIP>:<port>`` (a node cannot point the API elsewhere);
``session()`` is the one aiohttp session, whose TLS context presents the API's client certificate
(CN ``corral:api``) and trusts only the cluster CA. A call names the node as the TLS server name
(``AgentTarget.options``: ``server_hostname=<node>.nodes.corral``, a name only that node's
certificate carries — ``pki.node_dns_name``), so the certificate that answers must be that node's
own, not another node's that happens to sit at the address.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from corral.model.errors import NotFound, Unavailable
from corral.model.kinds import NODES
from corral.model.resources import Node
from corral.store import typed
from corral.store.base import Store
from corral.tls.names import node_dns_name


def endpoint_problem(node: Node) -> str:
    """Why the node's agentEndpoint may not be called ("" when it may)."""
    endpoint = node.status.agent_endpoint
    internal = [a.address for a in node.status.addresses if a.type == "InternalIP"]
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError as e:
        return f"agentEndpoint {endpoint!r} is not a URL: {e}"
    host = (parts.hostname or "").strip("[]")
    if parts.scheme != "https" or not port or parts.path not in ("", "/") or parts.query or parts.username:
        return f"agentEndpoint {endpoint!r} must be https://<InternalIP>:<port>"
    if host not in internal:
        return f"agentEndpoint {endpoint!r} is not on the node's InternalIP ({', '.join(internal) or 'none'})"
    return ""


@dataclass(frozen=True, slots=True)
class AgentTarget:
    url: str  # https://<InternalIP>:<port>
    node: str

    @property
    def options(self) -> dict[str, Any]:
        """Keyword arguments for every request to this agent (the TLS name to check)."""
        return {"server_hostname": node_dns_name(self.node)}


class AgentConnections:
    def __init__(self, store: Store, ssl_context: ssl.SSLContext | None) -> None:
        self.store = store
        self.ssl_context = ssl_context
        self._http: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.ssl_context or True))
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def target(self, node_name: str) -> AgentTarget:
        """The base URL of the node's agent, checked (see the module docstring)."""
        if self.ssl_context is None:
            raise Unavailable("this API server has no cluster certificates, so it cannot call agents")
        kv = await self.store.get(NODES.key("", node_name))
        if kv is None:
            raise NotFound(f'node "{node_name}" not found')
        node = typed.decode(kv, Node)
        if not node.status.agent_endpoint:
            raise Unavailable(f'node "{node_name}" has no agent endpoint; is its agent running?')
        if problem := endpoint_problem(node):
            raise Unavailable(f'node "{node_name}": {problem}')
        return AgentTarget(node.status.agent_endpoint.rstrip("/"), node_name)
