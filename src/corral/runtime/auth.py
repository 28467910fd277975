"""Registry credentials and the registry auth handshake (Basic and Bearer tokens).

**Credentials file.** corral reads docker's ``config.json`` shape, so an existing docker login works:

    {"auths": {"127.0.0.1:5000": {"auth": "<base64 of user:password>"},
               "ghcr.io": {"username": "u", "password": "p"}}}

Keys are ``host[:port]``; a URL key (``https://index.docker.io/v1/``) is reduced to its host, and
Docker Hub's legacy keys (``index.docker.io``, ``registry-1.docker.io``) count for ``docker.io``.
Either ``auth`` or ``username`` + ``password`` is accepted per entry; other fields (credential
helpers, identity tokens) are not supported and such entries are ignored.

**Handshake.** A registry answers 401 with ``WWW-Authenticate``. ``parse_challenges`` reads it
(RFC 7235 auth-params, quoted strings with escapes). ``Basic`` → the client resends with the
registry's credentials. ``Bearer realm=…,service=…,scope=…`` → GET the realm with ``service`` and
``scope`` (with Basic credentials if there are any) for a token (``token`` or ``access_token``) and
resend with ``Authorization: Bearer``. ``TokenCache`` keeps tokens per (registry, scope, user) until
shortly before they expire, so later requests send them up front and skip the 401 round trip.
Pure apart from ``Credentials.read`` (a small file read, done in a worker thread).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from corral.model.errors import FieldError, Invalid

_HUB_ALIASES = frozenset({"index.docker.io", "registry-1.docker.io", "docker.io"})


@dataclass(frozen=True, slots=True)
class BasicCredentials:
    """A user name and password for one registry. ``repr`` hides the password."""

    username: str
    password: str = field(repr=False)

    def header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def _normalise_key(key: str) -> str:
    host = urlsplit(key).netloc if "://" in key else key.split("/", 1)[0]
    return "docker.io" if host in _HUB_ALIASES else host


class Credentials:
    """Credentials per registry (``host[:port]``), looked up by the registry name of a reference."""

    def __init__(self, entries: Mapping[str, BasicCredentials] | None = None) -> None:
        self._entries = {_normalise_key(k): v for k, v in (entries or {}).items()}

    def __repr__(self) -> str:
        return f"Credentials(registries={sorted(self._entries)})"

    def lookup(self, registry: str) -> BasicCredentials | None:
        """The credentials for ``registry`` (as named in the reference, e.g. ``docker.io``), if any."""
        return self._entries.get(_normalise_key(registry))

    @classmethod
    def from_config(cls, doc: object, *, source: str = "credentials") -> Credentials:
        """Build from a parsed docker ``config.json`` document; ``Invalid`` names each bad entry."""
        if not isinstance(doc, dict) or not isinstance(doc.get("auths", {}), dict):
            raise Invalid(f"{source}: want an object with an 'auths' object", details=[FieldError("auths", "")])
        entries: dict[str, BasicCredentials] = {}
        errors: list[FieldError] = []
        for key, entry in doc.get("auths", {}).items():
            path = f"auths.{key}"
            if not isinstance(entry, dict):
                errors.append(FieldError(path, "must be an object"))
                continue
            if isinstance(entry.get("auth"), str) and entry["auth"]:
                try:
                    user, sep, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
                except (binascii.Error, UnicodeDecodeError):
                    errors.append(FieldError(f"{path}.auth", "must be base64 of 'user:password'"))
                    continue
                if not sep:
                    errors.append(FieldError(f"{path}.auth", "must be base64 of 'user:password'"))
                    continue
                entries[key] = BasicCredentials(user, password)
            elif isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
                entries[key] = BasicCredentials(entry["username"], entry["password"])
            # Entries with only credential helpers or identity tokens are not ours to use.
        if errors:
            raise Invalid(f"{source}: bad registry credentials", details=errors)
        return cls(entries)

    @classmethod
    def load(cls, path: Path) -> Credentials:
        """Read a credentials file (blocking; see ``read``). A missing file means no credentials."""
        try:
            text = path.read_text()
        except FileNotFoundError:
            return cls()
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise Invalid(f"{path}: not JSON: {e}", details=[FieldError("auths", str(e))]) from None
        return cls.from_config(doc, source=str(path))

    @classmethod
    async def read(cls, path: Path) -> Credentials:
        """``load`` in a worker thread."""
        return await asyncio.to_thread(cls.load, path)


@dataclass(frozen=True, slots=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header: scheme (lower case) and its parameters."""

    scheme: str
    params: Mapping[str, str]


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t":
        i += 1
    return i


def _read_token(text: str, i: int) -> tuple[str, int]:
    start = i
    while i < len(text) and text[i] not in ' \t,="':
        i += 1
    return text[start:i], i


def _read_quoted(text: str, i: int) -> tuple[str, int]:
    out: list[str] = []
    i += 1  # opening quote
    while i < len(text) and text[i] != '"':
        if text[i] == "\\" and i + 1 < len(text):
            i += 1
        out.append(text[i])
        i += 1
    return "".join(out), i + 1


def parse_challenges(header: str) -> list[Challenge]:
    """Parse ``Bearer realm="https://a/token",service="reg",scope="repository:x:pull", Basic realm=r``.

    Commas separate both parameters and challenges; a bare token after a comma starts a new challenge.
    Unparseable tails are ignored (the caller fails on a missing scheme, not on a stray character).
    """
    challenges: list[Challenge] = []
    i = 0
    n = len(header)
    while i < n:
        i = _skip_space(header, i)
        if i < n and header[i] == ",":
            i += 1
            continue
        scheme, i = _read_token(header, i)
        if not scheme:
            break
        params: dict[str, str] = {}
        while True:
            i = _skip_space(header, i)
            save = i
            name, j = _read_token(header, i)
            j = _skip_space(header, j)
            if not name or j >= n or header[j] != "=":
                i = save
                break
            j = _skip_space(header, j + 1)
            if j < n and header[j] == '"':
                value, j = _read_quoted(header, j)
            else:
                value, j = _read_token(header, j)
            params[name.lower()] = value
            j = _skip_space(header, j)
            if j < n and header[j] == ",":
                j += 1
            i = j
        # A token not followed by '=' starts the next challenge; the loop picks it up.
        challenges.append(Challenge(scheme.lower(), params))
    return challenges


@dataclass(slots=True)
class _Token:
    value: str
    expires_at: float


class TokenCache:
    """What a client learnt about registries' auth: Bearer tokens per (registry, scope, user), dropped
    10 s before they expire, and which registries asked for Basic (so it is sent up front)."""

    MARGIN_S = 10.0
    DEFAULT_TTL_S = 60.0  # the token spec's default when the server sends no expires_in

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str, str], _Token] = {}
        self._basic: set[str] = set()

    def remember_basic(self, registry: str) -> None:
        self._basic.add(registry)

    def uses_basic(self, registry: str) -> bool:
        return registry in self._basic

    def get(self, registry: str, scope: str, user: str) -> str | None:
        tok = self._tokens.get((registry, scope, user))
        if tok is None:
            return None
        if tok.expires_at - self.MARGIN_S <= time.monotonic():
            del self._tokens[(registry, scope, user)]
            return None
        return tok.value

    def put(self, registry: str, scope: str, user: str, *, token: str, expires_in: float | None) -> None:
        ttl = expires_in if expires_in and expires_in > 0 else self.DEFAULT_TTL_S
        self._tokens[(registry, scope, user)] = _Token(token, time.monotonic() + ttl)

    def forget(self, registry: str, scope: str, user: str) -> None:
        self._tokens.pop((registry, scope, user), None)


def pull_scope(repository: str) -> str:
    """The token scope for pulling ``repository``."""
    return f"repository:{repository}:pull"
