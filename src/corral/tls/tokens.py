"""Join tokens that pin the cluster CA, and the CA download they make safe.

A join token reads ``K10<hash>::<secret>`` (k3s' shape): ``hash`` is ``pki.ca_hash`` of the CA
PEM as ``GET /cacerts`` serves it (SHA-256, hex), ``secret`` is the bearer secret the API checks.
A joining worker knows nothing about the cluster yet, so it downloads the CA over an unverified
connection, hashes it, and goes on only if the hash is the token's — from then on it trusts that
CA alone. A token without the hash (the bare secret) is refused: it would leave the first
connection open to an impostor.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from corral.aiokit.backoff import Backoff
from corral.model.errors import Invalid, Unauthorized, Unavailable
from corral.tls.pki import ca_hash, load_cert

_K10 = re.compile(r"^K10([0-9a-f]{64})::(.+)$")


@dataclass(frozen=True, slots=True)
class JoinToken:
    ca_hash: str
    secret: str

    def __str__(self) -> str:
        return f"K10{self.ca_hash}::{self.secret}"

    @classmethod
    def parse(cls, text: str) -> JoinToken:
        m = _K10.match(text.strip())
        if m is None:
            raise Unauthorized(
                "the join token must read K10<sha256 of the cluster CA>::<secret>; a bare secret cannot pin "
                "the cluster CA — use the token in <data-dir>/join.token on a control host")
        return cls(m.group(1), m.group(2))


def format_token(ca_pem: bytes, secret: str) -> str:
    return str(JoinToken(ca_hash(ca_pem), secret))


async def fetch_pinned_ca(servers: Sequence[str], token: JoinToken, *, timeout: float = 10.0,
                          patience: float = 60.0) -> bytes:
    """The cluster CA from ``GET /cacerts`` of the first server that answers, checked against the
    token's hash before anything else is believed. Servers that cannot be reached are tried again
    for ``patience`` seconds (a worker may start before the control plane answers); a CA with the
    wrong hash is refused at once."""
    deadline = asyncio.get_running_loop().time() + patience
    backoff = Backoff(initial=0.5, maximum=5.0)
    while True:
        try:
            return await _fetch_once(servers, token, timeout=timeout)
        except Unavailable:
            delay = backoff.next()
            if asyncio.get_running_loop().time() + delay > deadline:
                raise
            await asyncio.sleep(delay)


async def _fetch_once(servers: Sequence[str], token: JoinToken, *, timeout: float) -> bytes:
    last: Exception | None = None
    async with aiohttp.ClientSession() as http:
        for server in servers:
            url = server.rstrip("/") + "/cacerts"
            try:
                async with http.get(url, ssl=False, timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                    if r.status != 200:
                        raise Unavailable(f"{url} answered {r.status}")
                    pem = await r.read()
            except (aiohttp.ClientError, TimeoutError, Unavailable) as e:
                last = e
                continue
            got = ca_hash(pem)
            if got != token.ca_hash:
                raise Unauthorized(f"the CA served by {url} has hash {got}, but the join token pins {token.ca_hash}: "
                                   "refusing to trust this server (wrong cluster, or someone in between)")
            try:
                load_cert(pem)
            except ValueError as e:
                raise Invalid(f"{url} served a CA that is not a PEM certificate: {e}") from None
            return pem
    raise Unavailable(f"cannot fetch the cluster CA from {', '.join(servers)}: {type(last).__name__}: {last}")
