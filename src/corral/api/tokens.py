"""``/tokens``: an admin makes, lists and revokes tokens (``corral token create|list|revoke``).

``POST /tokens`` with ``{"role": "admin"|"edit"|"view"|"join", "namespaces": [...], "ttlSeconds": N,
"description": "..."}`` answers the token once (``token``) with its ``id``; etcd keeps only its
SHA-256 (``api/auth.py``), so it can never be shown again. A token's id is the first 12 hex digits of
that digest: ``GET /tokens`` lists id, role, node, namespaces, expiry, description and creation time —
never a secret — and ``DELETE /tokens/{id}`` deletes the record, which every API instance's watched
index drops at once (``api/tokenindex.py``). ``join`` tokens are tokens like the others: with a TTL,
listed and revocable; with a cluster CA the answer is in k3s' ``K10<CA hash>::<secret>`` form, whose
secret part alone authenticates (``auth.secret_part``). Only admins may call these routes.
"""

from __future__ import annotations

import time

import msgspec
from aiohttp import web

from corral.api import codec
from corral.api.auth import IDENTITY, PREFIX, TOKEN_ID_CHARS, Identity, Role, TokenRecord, Tokens, token_id
from corral.model import names
from corral.model.errors import FieldError, Forbidden, Invalid, NotFound
from corral.tls.tokens import format_token

MAX_TTL_SECONDS = 10 * 365 * 86400
CREATABLE: tuple[Role, ...] = ("admin", "edit", "view", "join")


class TokenRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    role: str
    namespaces: list[str] = []
    ttl_seconds: int = 0
    description: str = ""


class TokenInfo(msgspec.Struct, rename="camel", omit_defaults=True):
    id: str
    role: str
    node: str = ""
    namespaces: list[str] = []
    expires: float = 0.0
    description: str = ""
    created: float = 0.0
    token: str = ""  # only in the answer to a create


def _admin(request: web.Request) -> Identity:
    identity = request[IDENTITY]
    if identity.role != "admin":
        raise Forbidden(f"{identity.name} may not manage tokens: only an admin may")
    return identity


def _check(body: TokenRequest) -> list[FieldError]:
    errors: list[FieldError] = []
    if body.role not in CREATABLE:
        errors.append(FieldError("role", f"must be one of {', '.join(CREATABLE)}"))
    for i, ns in enumerate(body.namespaces):
        if problem := names.name_problem(ns):
            errors.append(FieldError(f"namespaces[{i}]", problem))
    if body.namespaces and body.role not in ("edit", "view"):
        errors.append(FieldError("namespaces", "only edit and view tokens are limited to namespaces"))
    if not 0 <= body.ttl_seconds <= MAX_TTL_SECONDS:
        errors.append(FieldError("ttlSeconds", f"must be between 0 (no expiry) and {MAX_TTL_SECONDS}"))
    if len(body.description) > 256 or any(ord(c) < 0x20 for c in body.description):
        errors.append(FieldError("description", "at most 256 printable characters"))
    return errors


class TokenRoutes:
    def __init__(self, tokens: Tokens, *, ca_pem: bytes | None = None) -> None:
        self.tokens = tokens
        self.ca_pem = ca_pem  # with a cluster CA, a join token is given as K10<CA hash>::<secret> (tls/tokens.py)

    def add(self, router: web.UrlDispatcher) -> None:
        router.add_post("/tokens", self.create)
        router.add_get("/tokens", self.list, allow_head=False)
        router.add_delete("/tokens/{id}", self.revoke)

    async def create(self, request: web.Request) -> web.Response:
        _admin(request)
        data = codec.read_object_body(await codec.read_json(request))
        try:
            body = msgspec.convert(data, TokenRequest)
        except msgspec.ValidationError as e:
            raise Invalid(str(e), details=[FieldError("role", "is required: admin, edit, view or join")]) from e
        if errors := _check(body):
            raise Invalid(f"{errors[0].field}: {errors[0].message}", details=errors)
        expires = time.time() + body.ttl_seconds if body.ttl_seconds else 0.0
        identity = Identity(body.role, namespaces=tuple(body.namespaces), expires=expires)  # type: ignore[arg-type]
        token = await self.tokens.issue(identity, description=body.description)
        if body.role == "join" and self.ca_pem is not None:  # what a worker needs: it pins the CA first
            token = format_token(self.ca_pem, token)
        info = TokenInfo(id=token_id(token), role=body.role, namespaces=body.namespaces, expires=expires,
                         description=body.description, created=time.time(), token=token)
        return codec.json_response(info, status=201)

    async def list(self, request: web.Request) -> web.Response:
        _admin(request)
        page = await self.tokens.store.list(PREFIX)
        items = []
        for kv in page.items:
            digest = kv.key[len(PREFIX):]
            try:
                r = msgspec.json.decode(kv.value, type=TokenRecord)
            except msgspec.DecodeError:
                continue
            items.append(TokenInfo(id=digest[:TOKEN_ID_CHARS], role=r.role, node=r.node, namespaces=r.namespaces,
                                   expires=r.expires, description=r.description, created=r.created))
        return codec.json_response({"items": items})

    async def revoke(self, request: web.Request) -> web.Response:
        identity = _admin(request)
        token_id = request.match_info["id"]
        digest, revision = await self._find(token_id)
        if identity.token_id and digest.startswith(identity.token_id):
            raise Forbidden("a token may not revoke itself; use another admin token")
        await self.tokens.store.delete(PREFIX + digest, expected_revision=revision)
        return codec.json_response({"id": token_id, "revoked": True})

    async def _find(self, token_id: str) -> tuple[str, int]:
        if len(token_id) < 8 or any(c not in "0123456789abcdef" for c in token_id):
            raise NotFound(f"no token {token_id!r}: an id is the hex shown by `corral token list`")
        page = await self.tokens.store.list(PREFIX + token_id)
        if not page.items:
            raise NotFound(f"no token {token_id!r} (already revoked?)")
        if len(page.items) > 1:
            raise Invalid(f"{token_id!r} matches {len(page.items)} tokens; give more of the id",
                          details=[FieldError("id", "ambiguous")])
        kv = page.items[0]
        return kv.key[len(PREFIX):], kv.mod_revision

