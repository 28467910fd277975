"""Joining a node: the CA download (``GET /cacerts``) and ``POST /join``.

``GET /cacerts`` is public: it serves the cluster CA PEM, which a joining worker checks against
the hash in its ``K10…`` join token before it trusts the API (``tls/tokens.py``).

``POST /join`` takes ``{"node": NAME, "csr": PEM, "nodeIP": IP}``. The caller is the join token,
an admin, or the node ``NAME`` itself (its client certificate — how an agent renews its
certificate). The answer is a certificate for the CSR's key, signed by the cluster CA, CN
``node:NAME``, usable both as the agent's client certificate to the API and as its listener's
serving certificate (SANs ``<NAME>.nodes.corral``, which the API checks when it calls the agent,
and ``nodeIP``), plus the CA. Without ``csr`` the answer is a node bearer
token instead — for ``corral sim``'s hollow nodes, which serve nothing.

A name that an existing Node holds is refused to the join token: only that node (its certificate)
or an admin may join under it again, so a join token cannot mint the identity of a running node.
"""

from __future__ import annotations

import ipaddress

import msgspec
from aiohttp import web

from corral.api import codec
from corral.api.auth import IDENTITY, Identity, Tokens
from corral.model import names
from corral.model.errors import FieldError, Forbidden, Invalid, Unavailable
from corral.model.kinds import NODES
from corral.store.base import Store
from corral.tls import pki


class JoinRequest(msgspec.Struct, forbid_unknown_fields=True):
    node: str
    csr: str = ""
    node_ip: str = msgspec.field(default="", name="nodeIP")


class JoinHandlers:
    def __init__(self, *, tokens: Tokens, store: Store, authority: pki.Authority | None) -> None:
        self.tokens = tokens
        self.store = store
        self.authority = authority

    async def cacerts(self, request: web.Request) -> web.Response:
        if self.authority is None:
            raise Unavailable("this API server has no cluster CA (it serves plain HTTP)")
        return web.Response(body=self.authority.cert_pem, content_type="application/x-pem-file")

    async def join(self, request: web.Request) -> web.Response:
        identity = request[IDENTITY]
        body = _parse(await codec.read_json(request))
        _may_join(identity, body.node, exists=await self.store.get(NODES.key("", body.node)) is not None)
        if not body.csr:
            token = await self.tokens.issue(Identity("node", body.node))
            return codec.json_response({"node": body.node, "token": token}, status=201)
        if self.authority is None:
            raise Unavailable("this API server has no cluster CA to sign node certificates with")
        key = pki.csr_public_key(body.csr.encode(), expect_cn=pki.NODE_PREFIX + body.node)
        cert = self.authority.issue(key, cn=pki.NODE_PREFIX + body.node, server=True, client=True,
                                    dns=(pki.node_dns_name(body.node),), ips=(body.node_ip,) if body.node_ip else ())
        return codec.json_response({"node": body.node, "certificate": pki.cert_pem(cert).decode(),
                                    "ca": self.authority.cert_pem.decode()}, status=201)


def _parse(data: object) -> JoinRequest:
    data = codec.read_object_body(data)
    try:
        body = msgspec.convert(data, JoinRequest)
    except msgspec.ValidationError as e:
        raise Invalid(str(e), details=[FieldError("node", "is required: the name of the joining node")]) from e
    if problem := names.name_problem(body.node):
        raise Invalid(f"node: {problem}", details=[FieldError("node", problem)])
    if body.node_ip:
        try:
            ipaddress.ip_address(body.node_ip)
        except ValueError:
            raise Invalid(f"nodeIP: {body.node_ip!r} is not an IP address",
                          details=[FieldError("nodeIP", "must be an IP address")]) from None
    return body


def _may_join(identity: Identity, node: str, *, exists: bool) -> None:
    if identity.role == "admin" or (identity.role == "node" and identity.node == node):
        return
    if identity.role != "join":
        raise Forbidden(f"{identity.name} may not join nodes; use the join token")
    if exists:
        raise Forbidden(f'node "{node}" already exists: only that node (with its certificate) or an admin may join '
                       "under its name again; pick another --node-name, or delete the Node first")
