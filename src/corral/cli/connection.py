"""Where the user commands find the API, and how they run one call against it.

The server URL and token come from, in order: ``--server``/``--token``, the environment
(``CORRAL_SERVER``/``CORRAL_TOKEN``, or ``CORRAL_TOKEN_FILE`` naming a file that holds the token), the user config that ``corral serve`` writes
(``$XDG_CONFIG_HOME/corral/config.json``, by default ``~/.config/corral/config.json``), and the
system config ``/var/lib/corral/config.json``. A config file is ``{"server": URL, "tokenFile": PATH}``
(or ``"token"`` inline). A config file's token is only used with that file's own server, so a token
never travels to a server that was named somewhere else.

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


def user_config_path(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "corral" / "config.json"


def _read_config(path: Path) -> tuple[str, str] | None:
    """(server, token) from one config file; None when the file does not exist."""
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
    return str(data["server"]), str(token)


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
    if server and token:
        return Connection(server, token, "flags or environment")
    paths = list(config_paths) if config_paths is not None else [user_config_path(env), SYSTEM_CONFIG]
    for path in paths:
        found = _read_config(path)
        if found is None:
            continue
        cfg_server, cfg_token = found
        if server and server.rstrip("/") != cfg_server.rstrip("/"):
            continue  # this config's token belongs to another server
        if not token and not cfg_token:
            raise NotConfigured(f"the corral config {path} gives no token; pass --token")
        return Connection(server or cfg_server, token or cfg_token, str(path))
    if server:
        raise NotConfigured(f"no token for {server}: pass --token or set CORRAL_TOKEN")
    raise NotConfigured(NOT_CONFIGURED)


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
        async with ApiClient(conn.server, conn.token) as client:
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
