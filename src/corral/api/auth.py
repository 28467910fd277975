"""Bearer tokens and who they make you.

Tokens are random 256-bit strings; etcd keeps only their SHA-256 (``/corral/_tokens/<hex>``) with the
identity they stand for, so every control instance shares them and a stolen etcd dump holds no
usable token. Three roles:

- ``admin`` — everything. The control role writes one to ``<data-dir>/admin.token`` (mode 0600) on
  first start; the CLI reads it from there.
- ``join`` — may only exchange itself for a node token (``POST /join``); ``<data-dir>/join.token``.
- ``node`` — an agent, acting only as its node (see ``authorize`` in the routes). A real agent
  proves it with its client certificate (CN ``node:<name>``, signed by the cluster CA, checked in
  the TLS handshake: ``identity_from_certificate``); node bearer tokens remain for ``corral sim``.

Users' tokens (``edit``, ``view``, more ``admin``s, and ``join`` tokens with a TTL) are made, listed
and revoked through ``/tokens`` (``api/tokens.py``): their record adds namespaces, an expiry and a
description. Lookups are served from ``TokenIndex`` (``api/tokenindex.py``), which *watches* the token
prefix in etcd: a revoked token (its key deleted) stops working on every API instance as soon as
the delete reaches its watch — milliseconds, within 1 s — and an expired one at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec
from aiohttp import web

from corral.api.tokenindex import TokenIndex
from corral.model.errors import AlreadyExists, Unauthorized
from corral.store.base import Store
from corral.tls.names import NODE_PREFIX

Role = Literal["admin", "node", "join", "edit", "view"]
PREFIX = "/corral/_tokens/"
TOKEN_ID_CHARS = 12


class TokenRecord(msgspec.Struct, omit_defaults=True):
    role: Role
    node: str = ""
    namespaces: list[str] = []  # edit/view: the namespaces it may touch (empty: all)
    expires: float = 0.0  # unix time after which it is refused (0: never)
    description: str = ""
    created: float = 0.0


@dataclass(frozen=True, slots=True)
class Identity:
    role: Role
    node: str = ""
    namespaces: tuple[str, ...] = ()  # edit/view: the namespaces it may touch (empty: all)
    token_id: str = ""  # the first characters of the token's digest (``corral token list``)
    expires: float = 0.0

    @property
    def name(self) -> str:
        if self.role == "node":
            return f"node:{self.node}"
        return f"{self.role}:{self.token_id}" if self.token_id else self.role

    @classmethod
    def of(cls, record: TokenRecord, digest: str) -> Identity:
        return cls(record.role, record.node, tuple(record.namespaces), digest[:TOKEN_ID_CHARS], record.expires)


IDENTITY: web.RequestKey[Identity] = web.RequestKey("identity", Identity)


def _read_or_create(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def secret_part(token: str) -> str:
    """The secret a token carries: the whole token, or what follows ``::`` in a ``K10<CA hash>::<secret>``
    join token (the CA hash pins the cluster; only the secret authenticates). The one place that says so."""
    return token.rpartition("::")[2] if token.startswith("K10") and "::" in token else token


def _digest(token: str) -> str:
    return hashlib.sha256(secret_part(token).encode()).hexdigest()


def token_id(token: str) -> str:
    """The id a token is listed and revoked by: the start of its digest (never enough to use it)."""
    return _digest(token)[:TOKEN_ID_CHARS]


def identity_from_certificate(common_name: str) -> Identity:
    """Who a verified client certificate makes you: only node certificates name an identity."""
    node = common_name.removeprefix(NODE_PREFIX)
    if not common_name.startswith(NODE_PREFIX) or not node:
        raise Unauthorized(f"the client certificate {common_name!r} is not a node's (CN node:<name>); "
                           "send 'Authorization: Bearer <token>'")
    return Identity("node", node)


class Tokens:
    def __init__(self, store: Store) -> None:
        self.store = store
        # watched, so a revocation reaches every instance (api/tokenindex.py)
        self.index: TokenIndex[Identity] = TokenIndex(
            store, PREFIX, lambda digest, raw: Identity.of(msgspec.json.decode(raw, type=TokenRecord), digest))

    async def register(self, token: str, identity: Identity, *, description: str = "") -> None:
        record = TokenRecord(role=identity.role, node=identity.node, namespaces=list(identity.namespaces),
                             expires=identity.expires, description=description, created=time.time())
        with contextlib.suppress(AlreadyExists):
            await self.store.create(PREFIX + _digest(token), msgspec.json.encode(record))

    async def issue(self, identity: Identity, *, description: str = "") -> str:
        token = secrets.token_urlsafe(32)
        await self.register(token, identity, description=description)
        return token

    async def ensure_file(self, path: Path, identity: Identity) -> str:
        """The token kept in ``path`` (created, mode 0600, if missing), registered in the store."""
        token = await asyncio.to_thread(_read_or_create, path)
        await self.register(token, identity)
        return token

    async def authenticate(self, header: str | None) -> Identity:
        if not header:
            raise Unauthorized("no token: send 'Authorization: Bearer <token>' (the admin token is in <data-dir>/admin.token)")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        digest = _digest(token.strip())
        identity = self.index.get(digest)
        if identity is None:  # not (yet) in this instance's index: etcd decides (a token made a moment ago)
            kv = await self.store.get(PREFIX + digest)
            if kv is None:
                raise Unauthorized("the token is not valid for this cluster (unknown or revoked)")
            identity = Identity.of(msgspec.json.decode(kv.value, type=TokenRecord), digest)
        if identity.expires and time.time() > identity.expires:
            raise Unauthorized(f"the token {identity.token_id} has expired; ask an admin for a new one")
        return identity
