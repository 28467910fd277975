"""``corral label`` and ``corral annotate``: set or remove an object's labels or annotations.

``corral label container web tier=front env-`` sets ``tier`` and removes ``env``. The change is one
JSON merge patch (``PATCH`` with ``application/merge-patch+json``) that names only those keys, so
it never overwrites another writer's change to anything else; a key that already has another value
is changed only with ``--overwrite``, as kubectl does (checked on the object read just before).
"""

from __future__ import annotations

from typing import Any

import click

from corral.api.client import ApiClient
from corral.cli import output
from corral.cli.connection import api_command, connection_options
from corral.model.errors import Invalid
from corral.model.names import label_key_problem, label_value_problem


def parse_changes(pairs: tuple[str, ...], *, what: str, check_values: bool) -> dict[str, str | None]:
    """``key=value`` sets, ``key-`` removes (None); pure. Bad keys or values raise a usage error."""
    out: dict[str, str | None] = {}
    for pair in pairs:
        if pair.endswith("-") and "=" not in pair:
            key, value = pair[:-1], None
        else:
            key, sep, value = pair.partition("=")
            if not sep:
                raise click.BadParameter(f"{pair!r}: write KEY=VALUE to set a {what} or KEY- to remove it")
        problem = label_key_problem(key)
        if problem is None and value is not None and check_values:
            problem = label_value_problem(value)
        if problem:
            raise click.BadParameter(f"{pair!r}: {problem}")
        out[key] = value
    return out


async def _change(client: ApiClient, kind: str, name: str, namespace: str, field: str,
                  changes: dict[str, str | None], overwrite: bool) -> str:
    info = output.kind_info(kind)
    ns = namespace if info.namespaced else ""
    current = await client.get(info.type, name, namespace=ns)
    have: dict[str, str] = getattr(current.metadata, field)
    clashes = [k for k, v in changes.items() if v is not None and k in have and have[k] != v]
    if clashes and not overwrite:
        raise Invalid(f"{info.kind.lower()} {name!r} already has {field[:-1]} {clashes[0]}={have[clashes[0]]!r}; "
                      "use --overwrite to change it")
    patch: dict[str, Any] = {"metadata": {field: changes}}
    await client.patch(info.type, name, patch, namespace=ns)
    return f"{info.kind.lower()}.corral/{name} {'labeled' if field == 'labels' else 'annotated'}"


def _command(field: str, noun: str) -> click.Command:
    @click.command(name="label" if field == "labels" else "annotate",
                   help=f"Set (KEY=VALUE) or remove (KEY-) {noun}s of an object: one merge patch.")
    @click.argument("kind")
    @click.argument("name")
    @click.argument("changes", nargs=-1, required=True)
    @click.option("--overwrite", is_flag=True, help=f"Change a {noun} that already has another value.")
    @click.option("-n", "--namespace", default="default", show_default=True, help="The object's namespace.")
    @connection_options
    @api_command
    async def command(client: ApiClient, *, kind: str, name: str, changes: tuple[str, ...], overwrite: bool,
                      namespace: str) -> int:
        parsed = parse_changes(changes, what=noun, check_values=field == "labels")
        click.echo(await _change(client, kind, name, namespace, field, parsed, overwrite))
        return 0

    return command


label = _command("labels", "label")
annotate = _command("annotations", "annotation")
