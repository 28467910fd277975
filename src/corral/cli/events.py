"""``corral events [-w]``: what happened in a namespace (or everywhere), oldest first, and then live.

Events are listed sorted by when they last happened (a plain list is in key order), optionally for
one object (``--for container/web``), and ``-w`` keeps printing new ones as the API's watch brings
them, in the same table.
"""

from __future__ import annotations

import click

from corral.api.client import ApiClient
from corral.cli import output
from corral.cli.connection import api_command, connection_options
from corral.cli.get import Printer, follow
from corral.cli.tables import Context
from corral.model.kinds import EVENTS
from corral.model.resources import Event


def _for_selector(target: str) -> str:
    """``kind/name`` as a field selector on the involved object."""
    kind, sep, name = target.partition("/")
    if not sep or not name:
        raise click.BadParameter(f"{target!r}: write KIND/NAME, e.g. container/web", param_hint="--for")
    info = output.kind_info(kind)
    return f"involvedObject.kind={info.kind},involvedObject.name={name}"


@click.command()
@click.option("-n", "--namespace", default="default", show_default=True, help="The namespace to look in.")
@click.option("-A", "--all-namespaces", is_flag=True, help="Events of every namespace.")
@click.option("--for", "target", default="", metavar="KIND/NAME", help="Only the events about this object.")
@click.option("-w", "--watch", is_flag=True, help="After printing, keep printing new events until Ctrl-C.")
@connection_options
@api_command
async def events(client: ApiClient, *, namespace: str, all_namespaces: bool, target: str, watch: bool) -> int:
    """Show events, oldest first; -w follows new ones."""
    ns = None if all_namespaces else namespace
    selector = _for_selector(target) if target else ""
    items, rv = await client.list(Event, namespace=ns, field_selector=selector)
    items.sort(key=lambda e: (e.spec.last_timestamp or e.metadata.creation_timestamp, e.metadata.name))
    printer = Printer(EVENTS, "table", all_namespaces=all_namespaces, ctx=Context())
    if items:
        printer.table(items)
    elif not watch:
        click.echo("No events found.", err=True)
    else:
        printer.widths = [max(len(h), 12) for h in ("LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE")]
    if watch:
        await follow(client, printer, namespace=ns, items=items, rv=rv, label_selector="", field_selector=selector)
    return 0
