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

Lookups are cached in memory: a valid token costs one etcd read per process, ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec
from aiohttp import web

from corral.model.errors import AlreadyExists, Unauthorized
from corral.store.base import Store
from corral.tls.pki import NODE_PREFIX

Role = Literal["admin", "node", "join"]
PREFIX = "/corral/_tokens/"


class TokenRecord(msgspec.Struct, omit_defaults=True):
    role: Role
    node: str = ""


@dataclass(frozen=True, slots=True)
class Identity:
    role: Role
    node: str = ""

    @property
    def name(self) -> str:
        return f"node:{self.node}" if self.role == "node" else self.role


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


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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
        self._known: dict[str, Identity] = {}

    async def register(self, token: str, identity: Identity) -> None:
        record = TokenRecord(role=identity.role, node=identity.node)
        with contextlib.suppress(AlreadyExists):
            await self.store.create(PREFIX + _digest(token), msgspec.json.encode(record))
        self._known[_digest(token)] = identity

    async def issue(self, identity: Identity) -> str:
        token = secrets.token_urlsafe(32)
        await self.register(token, identity)
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
        identity = self._known.get(digest)
        if identity is not None:
            return identity
        kv = await self.store.get(PREFIX + digest)
        if kv is None:
            raise Unauthorized("the token is not valid for this cluster")
        record = msgspec.json.decode(kv.value, type=TokenRecord)
        identity = Identity(record.role, record.node)
        self._known[digest] = identity
        return identity
