"""The control plane's etcd members: ``GET/POST /control/members``, ``DELETE /control/members/{name}``.

Each control instance with an embedded etcd is one member of the cluster's etcd (roles/etcdcluster.py).
A joining instance cannot touch etcd yet (it has no certificate, and no member to talk to), so it asks
an existing control instance here, with the ``K10…`` join token (or an admin token):

``POST /control/members`` takes ``{"name", "peerURL", "clientURL"}``. The handler issues the joining
member's certificate from the cluster CA (one key pair: serverAuth for its clients and peers,
clientAuth for its own peer connections; SANs 127.0.0.1, localhost and the hosts of its URLs) and
the client certificate its control plane presents to etcd, adds the member through etcd's
``MemberAdd``, and answers with the ``--initial-cluster`` string the new member starts with, every
member's client URL, and the PEMs. A name already in the member list is refused (409).

``GET /control/members`` (admin) lists the members with their health and which one leads the raft;
``DELETE /control/members/{name}`` (admin) removes one through ``MemberRemove``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import msgspec
from aiohttp import web

from corral.api import codec
from corral.api.auth import IDENTITY
from corral.model import names
from corral.model.errors import AlreadyExists, FieldError, Forbidden, Invalid, NotFound, Unavailable
from corral.store import members
from corral.store.base import Store
from corral.store.etcd import EtcdStore
from corral.tls import pki

ETCD_MEMBER_CN = "corral:etcd"
ETCD_CLIENT_CN = "corral:etcd-client"


class MemberRequest(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    peer_url: str = msgspec.field(name="peerURL")
    client_url: str = msgspec.field(name="clientURL")


def _url_host(url: str, field: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or not parts.port:
        raise Invalid(f"{field}: {url!r} must be https://HOST:PORT",
                      details=[FieldError(field, "must be https://HOST:PORT (peers and clients speak TLS)")])
    return parts.hostname


def _parse(data: object) -> MemberRequest:
    try:
        body = msgspec.convert(codec.read_object_body(data), MemberRequest)
    except msgspec.ValidationError as e:
        raise Invalid(str(e)) from e
    if problem := names.name_problem(body.name):
        raise Invalid(f"name: {problem}", details=[FieldError("name", problem)])
    return body


def _member_json(h: members.MemberHealth) -> dict[str, Any]:
    m = h.member
    return {"id": f"{m.id:x}", "name": m.name, "peerURLs": list(m.peer_urls), "clientURLs": list(m.client_urls),
            "leader": h.leader, "healthy": h.healthy, "error": h.error}


class MembersHandlers:
    def __init__(self, store: Store, authority: pki.Authority | None) -> None:
        self.store = store  # the raw etcd store (not the batching or sealing wrappers)
        self.authority = authority

    def _etcd(self) -> EtcdStore:
        if not isinstance(self.store, EtcdStore):
            raise Unavailable("this API server's store is not etcd: it has no members")
        return self.store

    async def list(self, request: web.Request) -> web.Response:
        identity = request[IDENTITY]
        if identity.role != "admin":
            raise Forbidden(f"{identity.name} may not list the control plane's etcd members")
        health = await members.member_health(self._etcd())
        return codec.json_response({"members": [_member_json(h) for h in health]})

    async def add(self, request: web.Request) -> web.Response:
        identity = request[IDENTITY]
        if identity.role not in ("admin", "join"):
            raise Forbidden(f"{identity.name} may not add etcd members; use the join token")
        if self.authority is None:
            raise Unavailable("this API server has no cluster CA to sign an etcd member's certificates with")
        body = _parse(await codec.read_json(request))
        hosts = (_url_host(body.peer_url, "peerURL"), _url_host(body.client_url, "clientURL"))
        store = self._etcd()
        current = await members.list_members(store)
        if any(m.name == body.name for m in current):
            raise AlreadyExists(f'an etcd member named "{body.name}" exists already; remove it first '
                                f"(corral control members remove {body.name})")
        if any(body.peer_url in m.peer_urls for m in current):
            raise AlreadyExists(f"an etcd member with peer URL {body.peer_url} exists already")
        ips = tuple(h for h in hosts if _is_ip(h))
        dns = tuple(h for h in hosts if not _is_ip(h))
        cert, key = self.authority.issue_pair(cn=ETCD_MEMBER_CN, server=True, client=True, dns=("localhost", *dns),
                                              ips=tuple(dict.fromkeys(("127.0.0.1", *ips))))
        client_cert, client_key = self.authority.issue_pair(cn=ETCD_CLIENT_CN, client=True)
        added, after = await members.add_member(store, body.peer_url)
        urls = [u for m in after for u in m.client_urls[:1]]
        return codec.json_response({
            "id": f"{added.id:x}",
            "initialCluster": members.initial_cluster(after, new_id=added.id, new_name=body.name),
            "clientURLs": urls,
            "ca": self.authority.cert_pem.decode(),
            "cert": cert.decode(), "key": key.decode(),
            "clientCert": client_cert.decode(), "clientKey": client_key.decode(),
        }, status=201)

    async def remove(self, request: web.Request) -> web.Response:
        identity = request[IDENTITY]
        if identity.role != "admin":
            raise Forbidden(f"{identity.name} may not remove etcd members")
        name = request.match_info["name"]
        store = self._etcd()
        found = [m for m in await members.list_members(store) if m.name == name]
        if not found:
            raise NotFound(f'no etcd member named "{name}"')
        await members.remove_member(store, found[0].id)
        return codec.json_response({"removed": name, "id": f"{found[0].id:x}"})

    def add_routes(self, r: web.UrlDispatcher) -> None:
        r.add_get("/control/members", self.list, allow_head=False)
        r.add_post("/control/members", self.add)
        r.add_delete("/control/members/{name}", self.remove)


def _is_ip(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
