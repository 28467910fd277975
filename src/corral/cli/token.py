"""``corral token create|list|revoke``: tokens with a role, namespaces, a lifetime and a description.

``create`` prints the new token once, on stdout alone (so ``corral token create ... > file`` keeps
it, and it never has to be typed: give it to a user as a file, ``CORRAL_TOKEN_FILE=file corral get
...``); what it is goes to stderr. ``list`` shows ids, roles, namespaces, expiry and descriptions —
never a token. ``revoke ID`` ends a token on every API instance within a second. ``--join`` makes a
join token for workers (with ``--ttl``, it expires). See ``api/tokens.py`` and ``api/roles.py``.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import click
import msgspec

from corral.api.client import ApiClient
from corral.cli import styling, tables
from corral.cli.connection import api_command, connection_options

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> int:
    """``90s``, ``30m``, ``24h``, ``7d`` → seconds; ``0`` → no expiry."""
    if text == "0":
        return 0
    m = _DURATION.match(text.strip())
    if not m:
        raise click.BadParameter(f"{text!r}: use a number and a unit, e.g. 30m, 24h or 7d (0: never expires)")
    return int(m.group(1)) * _UNITS[m.group(2)]


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else tables.NONE


@click.group()
def token() -> None:
    """Make, list and revoke API tokens (admin only)."""


@token.command("create")
@click.option("--role", type=click.Choice(["admin", "edit", "view"]), default=None,
              help="admin: everything; edit: workloads in its namespaces; view: read only (no Secret values).")
@click.option("--join", "join", is_flag=True, help="A join token for workers (instead of --role).")
@click.option("--namespace", "-n", "namespaces", multiple=True, metavar="NS",
              help="Limit an edit/view token to this namespace (repeatable; default: all namespaces).")
@click.option("--ttl", default="0", show_default=True, help="Lifetime (e.g. 30m, 24h, 7d; 0: never expires).")
@click.option("--description", default="", help="What the token is for (shown by `token list`).")
@connection_options
@api_command
async def create(client: ApiClient, *, role: str | None, join: bool, namespaces: tuple[str, ...], ttl: str,
                 description: str) -> int:
    """Make a token and print it (once: it cannot be shown again)."""
    if join == (role is not None):
        raise click.UsageError("give --role ROLE or --join (one of them)")
    body = {"role": "join" if join else role, "namespaces": list(namespaces), "ttlSeconds": parse_ttl(ttl),
            "description": description}
    answer = msgspec.json.decode(await client.request("POST", "/tokens", body=body))
    click.echo(answer["token"])
    scope = ", ".join(answer.get("namespaces") or []) or "all namespaces"
    click.echo(f"token {answer['id']}: {answer['role']} ({scope}), expires {_when(answer.get('expires', 0))}; "
               "keep it secret: it is shown only now", err=True)
    return 0


@token.command("list")
@connection_options
@api_command
async def list_tokens(client: ApiClient) -> int:
    """List tokens: id, role, namespaces, expiry, description (never the tokens themselves)."""
    items = msgspec.json.decode(await client.request("GET", "/tokens"))["items"]
    now = time.time()
    rows = [["ID", "ROLE", "NAMESPACES", "EXPIRES", "DESCRIPTION"]]
    for t in sorted(items, key=lambda t: (t["role"], t.get("created", 0))):
        expires = t.get("expires", 0)
        when = _when(expires) + (" (expired)" if expires and expires < now else "")
        role = t["role"] + (f" ({t['node']})" if t.get("node") else "")
        rows.append([t["id"], role, ",".join(t.get("namespaces") or []) or "*", when, t.get("description", "")])
    color = styling.color_enabled()
    styling.echo(styling.render(rows[0], rows[1:], color=color), color=color)
    return 0


@token.command("revoke")
@click.argument("token_id", metavar="ID")
@connection_options
@api_command
async def revoke(client: ApiClient, *, token_id: str) -> int:
    """Revoke the token with this ID (from `token list`): it stops working on every API instance."""
    await client.request("DELETE", f"/tokens/{token_id}")
    click.echo(f"token {token_id} revoked")
    return 0
