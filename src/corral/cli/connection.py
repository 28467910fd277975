"""Where the user commands find the API, and how they run one call against it.

The server URL and token come from, in order: ``--server``/``--token``, the environment
(``CORRAL_SERVER``/``CORRAL_TOKEN``, or ``CORRAL_TOKEN_FILE`` naming a file that holds the token), the user config that ``corral serve`` writes
(``$XDG_CONFIG_HOME/corral/config.json``, by default ``~/.config/corral/config.json``), and the
system config ``/var/lib/corral/config.json``. A config file is
``{"server": "https://HOST:PORT", "tokenFile": PATH, "caFile": PATH}`` (or ``"token"`` and ``"ca"``
inline, the CA as PEM text). A config file's token is only used with that file's own server, so a
token never travels to a server that was named somewhere else.

The API speaks HTTPS; the client trusts only the cluster CA: ``$CORRAL_CA`` (a PEM file), else the
CA of the config file that names the server (``corral serve`` writes ``caFile`` =
``<data-dir>/tls/ca.crt``), else the system's CAs (for an API certificate from a public CA). A
server whose certificate that CA did not sign is an error naming the server and where the CA came
from.

``run_api`` is the one way a command talks to the API: it resolves the connection, runs the
command's coroutine with an ``ApiClient`` under ``asyncio.run``, and turns any corral error into
one clear sentence on stderr and exit code 1.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from corral.api.client import ApiClient
from corral.cli import output
from corral.model.errors import CorralError
from corral.tls.contexts import client_context

SYSTEM_CONFIG = Path("/var/lib/corral/config.json")
NOT_CONFIGURED = "no corral server configured: run `corral serve ...` or pass --server and --token"

F = TypeVar("F", bound=Callable[..., Any])


class NotConfigured(CorralError):
    """Nothing (or something unusable) says where the API is or which token to use."""

    reason = "NotConfigured"


@dataclass(frozen=True, slots=True)
class Connection:
    server: str
    token: str
    source: str  # where they came from, for error messages
    ca_pem: bytes | None = None  # the CA to trust (None: the system's)
    ca_source: str = ""  # where the CA came from, for error messages


@dataclass(frozen=True, slots=True)
class _Config:
    server: str
    token: str
    ca_pem: bytes | None
    ca_source: str


def user_config_path(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "corral" / "config.json"


def _read_ca(path: str, named_by: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise NotConfigured(f"cannot read the CA file {path} named by {named_by}: {e.strerror or e}") from None


def _read_config(path: Path) -> _Config | None:
    """Server, token and CA from one config file; None when the file does not exist."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise NotConfigured(f"cannot read the corral config {path}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("server"), str):
        raise NotConfigured(f'the corral config {path} has no "server"; write {{"server": URL, "tokenFile": PATH}}')
    token = data.get("token") or ""
    token_file = data.get("tokenFile")
    if not token and isinstance(token_file, str) and token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as e:
            raise NotConfigured(
                f"cannot read the token file {token_file} named by {path}: {e.strerror or e}; "
                "run as a user who may read it, or pass --token"
            ) from None
    ca_pem: bytes | None = None
    ca_source = ""
    if isinstance(data.get("ca"), str) and data["ca"]:
        ca_pem, ca_source = data["ca"].encode(), f"{path} (ca)"
    elif isinstance(data.get("caFile"), str) and data["caFile"]:
        ca_pem, ca_source = _read_ca(data["caFile"], str(path)), f"{data['caFile']} (named by {path})"
    return _Config(str(data["server"]), str(token), ca_pem, ca_source)


def _token_file(path: str | None) -> str:
    """The token kept in ``$CORRAL_TOKEN_FILE`` (so a token need never be typed on a command line)."""
    if not path:
        return ""
    try:
        return Path(path).read_text().strip()
    except OSError as e:
        raise NotConfigured(f"cannot read CORRAL_TOKEN_FILE {path}: {e.strerror or e}") from None


def resolve(server: str | None, token: str | None, *, env: Mapping[str, str],
            config_paths: Sequence[Path] | None = None) -> Connection:
    """The server and token to use, by the precedence in the module docstring."""
    server = server or env.get("CORRAL_SERVER") or None
    token = token or env.get("CORRAL_TOKEN") or _token_file(env.get("CORRAL_TOKEN_FILE")) or None
    env_ca = env.get("CORRAL_CA") or ""
    ca_pem, ca_source = (_read_ca(env_ca, "$CORRAL_CA"), f"{env_ca} ($CORRAL_CA)") if env_ca else (None, "")
    paths = list(config_paths) if config_paths is not None else [user_config_path(env), SYSTEM_CONFIG]
    for path in paths:
        try:
            found = _read_config(path)
        except NotConfigured:
            if server and token:
                continue  # the flags say all but the CA: a broken config file is not in the way
            raise
        if found is None:
            continue
        if server and server.rstrip("/") != found.server.rstrip("/"):
            continue  # this config's token (and CA) belong to another server
        if not token and not found.token:
            raise NotConfigured(f"the corral config {path} gives no token; pass --token")
        if ca_pem is None:
            ca_pem, ca_source = found.ca_pem, found.ca_source
        return Connection(server or found.server, token or found.token,
                          "flags or environment" if server and token else str(path), ca_pem, ca_source)
    if server and token:
        return Connection(server, token, "flags or environment", ca_pem, ca_source)
    if server:
        raise NotConfigured(f"no token for {server}: pass --token or set CORRAL_TOKEN")
    raise NotConfigured(NOT_CONFIGURED)


def client_for(conn: Connection, *, timeout: float = 30.0) -> ApiClient:
    """An API client for ``conn``, trusting its CA."""
    ssl_context = client_context(conn.ca_pem) if conn.ca_pem else None
    return ApiClient(conn.server, conn.token, timeout=timeout, ssl_context=ssl_context, trust_source=conn.ca_source)


def client_from_config(path: Path, *, timeout: float = 30.0) -> ApiClient:
    """A client for the server a config file names, with its token and CA (``corral serve`` writes
    one to its data dir)."""
    found = _read_config(path)
    if found is None:
        raise NotConfigured(f"no corral config at {path}")
    return client_for(Connection(found.server, found.token, str(path), found.ca_pem, found.ca_source), timeout=timeout)


def connection_options(f: F) -> F:
    """``--server`` and ``--token`` for a user command."""
    f = click.option("--token", metavar="TOKEN", default=None,
                     help="Bearer token (default: $CORRAL_TOKEN, else the file $CORRAL_TOKEN_FILE, else the token "
                          "file named by the config; prefer those: a command line is visible to other users).")(f)
    f = click.option("--server", metavar="URL", default=None,
                     help="The API's URL (default: $CORRAL_SERVER, else ~/.config/corral/config.json, "
                          "else /var/lib/corral/config.json).")(f)
    return f


def run_api(server: str | None, token: str | None, body: Callable[[ApiClient], Awaitable[int]]) -> None:
    """Run ``body`` with a client for the resolved API; exit with its code, or 1 on a corral error."""

    async def main() -> int:
        conn = resolve(server, token, env=os.environ)
        async with client_for(conn) as client:
            return await body(client)

    try:
        code = asyncio.run(main())
    except CorralError as e:
        output.print_error(e)
        code = 1
    except KeyboardInterrupt:
        code = 130
    raise SystemExit(code)


def api_command(f: Callable[..., Awaitable[int]]) -> Callable[..., None]:
    """Turn ``async def f(client, **options) -> exit code`` into a click callback using ``run_api``."""

    @functools.wraps(f)
    def callback(server: str | None, token: str | None, **options: Any) -> None:
        run_api(server, token, lambda client: f(client, **options))

    return callback
