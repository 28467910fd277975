"""Shell completion: ``corral completion bash|zsh|fish`` prints the script to load.

Completion is click's own: the script calls ``corral`` back with ``_CORRAL_COMPLETE`` set, and
click answers with the commands and options that fit. Arguments that name things complete from
the cluster: ``complete_kind`` offers the kinds, ``complete_name`` asks the API for the names of
objects of the kind already typed (in the ``-n`` namespace), using the same server and token as any
command (flags, environment, config). A failed lookup completes nothing rather than printing an
error into the user's shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

import click
from click.shell_completion import CompletionItem, get_completion_class

from corral.model.kinds import KINDS, lookup

SHELLS = ("bash", "zsh", "fish")


def complete_kind(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    words = sorted({k.plural for k in KINDS} | {k.kind.lower() for k in KINDS})
    return [CompletionItem(w) for w in words if w.startswith(incomplete.lower())]


async def _names(kind: str, namespace: str, server: str | None, token: str | None) -> list[str]:
    from corral.cli.connection import client_for, resolve

    info = lookup(kind)
    if info is None:
        return []
    conn = resolve(server, token, env=os.environ)
    async with client_for(conn, timeout=3) as client:
        items, _ = await client.list(info.type, namespace=namespace if info.namespaced else None)
    return [o.metadata.name for o in items]


def names_of(kind: str, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
    params = ctx.params
    namespace = str(params.get("namespace") or "default")
    with contextlib.suppress(Exception):
        names = asyncio.run(_names(kind, namespace, params.get("server"), params.get("token")))
        return [CompletionItem(n) for n in sorted(names) if n.startswith(incomplete)]
    return []


def complete_name(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Names of objects of the kind given earlier on the line (``corral get containers <TAB>``)."""
    return names_of(str(ctx.params.get("kind") or ""), ctx, incomplete)


def complete_container(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return names_of("containers", ctx, incomplete)


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL. Load it with, e.g.:

    \b
      bash: source <(corral completion bash)      (or save it in /etc/bash_completion.d/corral)
      zsh:  source <(corral completion zsh)
      fish: corral completion fish > ~/.config/fish/completions/corral.fish
    """
    from corral.cli.main import cli

    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(cli, {}, "corral", "_CORRAL_COMPLETE").source())
