"""``corral get KIND [NAME]``: a table (or JSON/YAML/names) of objects, and ``-w`` to follow changes.

A list is read once and printed; with ``--watch`` the command then follows the watch from the
list's resourceVersion and prints a row per change (a JSON/YAML document per change with ``-o``),
until Ctrl-C. A dropped stream resumes (after a second) from the last revision seen; an expired
revision relists.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import click

from corral.api.client import ApiClient
from corral.api.listwatch import NamespacedName, api_informer, listing_of
from corral.cli import jsonpath, output, styling, tables
from corral.cli.completion import complete_kind, complete_name
from corral.cli.connection import api_command, connection_options
from corral.model.errors import CorralError
from corral.model.kinds import NODES, SERVICES, KindInfo
from corral.model.resources import Container, Endpoints, Object, Secret
from corral.store.informer import Change

FORMATS = ("table", "wide", "json", "yaml", "name")

def _list_document(info: KindInfo, items: list[Object], rv: str) -> dict[str, Any]:
    return {"apiVersion": "corral/v1", "kind": info.list_kind, "metadata": {"resourceVersion": rv},
            "items": [output.to_data(o) for o in items]}

def hide_secret_values(obj: Object) -> Object:
    """A Secret with every value replaced by a note of its size (``--show-secrets`` prints them)."""
    if isinstance(obj, Secret):
        obj.data = {k: f"<hidden: {len(v) * 3 // 4 - v.count('=')} bytes; --show-secrets prints it>"
                    for k, v in obj.data.items()}
    return obj

async def _context(client: ApiClient, info: KindInfo) -> tables.Context:
    if info is SERVICES:  # the ENDPOINTS column: ready addresses per Service
        endpoints, _ = await client.list(Endpoints, namespace=None)
        ready = {(e.metadata.namespace, e.metadata.name): len(e.spec.addresses) for e in endpoints}
        return tables.Context(endpoints_per_service=ready)
    if info is not NODES:
        return tables.Context()
    containers, _ = await client.list(Container, namespace=None)
    per_node = Counter(c.status.node or c.spec.node for c in containers if c.status.node or c.spec.node)
    return tables.Context(containers_per_node=per_node)

def _check_format(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if value in FORMATS or value.startswith("jsonpath="):
        return value
    raise click.BadParameter(f"{value!r}: use one of {', '.join(FORMATS)} or jsonpath=TEMPLATE")


class Printer:
    """Prints objects in one output format; a table keeps its column widths from the first batch,
    and is coloured (cli/styling.py) on a terminal."""

    def __init__(self, info: KindInfo, fmt: str, *, all_namespaces: bool, ctx: tables.Context,
                 echo: Callable[[str], None] | None = None, color: bool | None = None) -> None:
        self.info, self.fmt, self.ctx = info, fmt, ctx
        self.color = styling.color_enabled() if color is None else color
        self.echo = echo or (lambda text: styling.echo(text, color=self.color))
        self.all_namespaces = all_namespaces and info.namespaced
        self.header = tables.columns(info, wide=fmt == "wide", all_namespaces=self.all_namespaces)
        self.widths: list[int] = []
        self.show_secrets = False

    def _row(self, obj: Object) -> list[str]:
        return tables.row(obj, self.info, self.ctx, wide=self.fmt == "wide", all_namespaces=self.all_namespaces)

    def table(self, objs: Sequence[Object]) -> None:
        rows = [self._row(o) for o in objs]
        self.widths = tables.widths([self.header, *rows])
        self.echo(styling.line(self.header, self.widths, color=self.color, is_header=True))
        for r in rows:
            self.echo(styling.line(r, self.widths, color=self.color, header=self.header))

    def change(self, obj: Object) -> None:
        if self.fmt in ("json", "yaml"):
            self.echo(output.dump(output.to_data(obj), self.fmt) + ("\n---" if self.fmt == "yaml" else ""))
        elif self.fmt == "name":
            self.echo(output.ref(self.info, obj.metadata.name))
        else:
            self.ctx = tables.Context(containers_per_node=self.ctx.containers_per_node)  # a fresh "now"
            self.echo(styling.line(self._row(obj), self.widths, color=self.color, header=self.header))

async def follow(client: ApiClient, printer: Printer, *, namespace: str | None, items: Sequence[Object], rv: str,
                 label_selector: str, field_selector: str) -> None:
    """Print every change after the listing (``items`` at ``rv``) until cancelled: an informer over the
    API, so a cut stream resumes from the last version seen, and a version the API no longer keeps
    relists and prints what changed meanwhile."""
    informer = api_informer(client, printer.info.type, namespace=namespace, label_selector=label_selector,
                            field_selector=field_selector)
    informer.prime(listing_of(items, rv))

    def print_change(_change: Change, _key: NamespacedName, obj: Object, _old: Object | None) -> None:
        printer.change(hide_secret_values(obj) if not printer.show_secrets else obj)

    informer.add_handler(print_change)
    await informer.run()

@click.command()
@click.argument("kind", shell_complete=complete_kind)
@click.argument("name", required=False, shell_complete=complete_name)
@click.option("-n", "--namespace", default="default", show_default=True, help="The namespace to look in.")
@click.option("-A", "--all-namespaces", is_flag=True, help="List objects of every namespace.")
@click.option("-o", "--output", "fmt", default="table", show_default=True, callback=_check_format,
              help="table, wide (more columns), json, yaml, name (kind/name lines), or jsonpath=TEMPLATE "
                   "(e.g. jsonpath={.status.phase}, jsonpath={.items[*].metadata.name}).")
@click.option("-l", "--selector", default="", metavar="SELECTOR", help="Label selector, e.g. app=web,tier!=db.")
@click.option("--field-selector", default="", metavar="SELECTOR", help="Field selector, e.g. spec.node=n1.")
@click.option("-w", "--watch", is_flag=True, help="After printing, keep printing changes until Ctrl-C.")
@click.option("--show-secrets", is_flag=True, help="With -o json/yaml, print Secrets' values (hidden otherwise).")
@connection_options
@api_command
async def get(client: ApiClient, *, kind: str, name: str | None, namespace: str, all_namespaces: bool, fmt: str,
              selector: str, field_selector: str, watch: bool, show_secrets: bool) -> int:
    """Show objects of a KIND (containers, nodes, deployments, namespaces, volumes, events, ...)."""
    info = output.kind_info(kind)
    if watch and fmt.startswith("jsonpath="):
        raise CorralError("-o jsonpath cannot be combined with -w; use -o json or yaml to follow changes")
    ns: str | None = None if all_namespaces or not info.namespaced else namespace
    printer = Printer(info, fmt, all_namespaces=all_namespaces, ctx=await _context(client, info))
    printer.show_secrets = show_secrets
    if name is not None:
        obj = await client.get(info.type, name, namespace=ns or "default")
        items, rv = [obj], obj.metadata.resource_version
        field_selector = ",".join(s for s in (field_selector, f"metadata.name={name}") if s)
    else:
        items, rv = await client.list(info.type, namespace=ns, label_selector=selector, field_selector=field_selector)
    listed = items
    if not show_secrets:
        items = [hide_secret_values(o) for o in items]
    if fmt.startswith("jsonpath="):
        data = output.to_data(items[0]) if name is not None else _list_document(info, items, rv)
        click.echo(jsonpath.render(fmt[len("jsonpath="):], data))
    elif fmt in ("json", "yaml"):
        data = output.to_data(items[0]) if name is not None else _list_document(info, items, rv)
        click.echo(output.dump(data, fmt))
    elif fmt == "name":
        for obj in items:
            click.echo(output.ref(info, obj.metadata.name))
    elif items:
        printer.table(items)
    elif not watch:
        where = f' in namespace "{ns}"' if ns else ""
        click.echo(f"No {info.plural} found{where}.", err=True)
    else:
        printer.widths = [max(len(h), 12) for h in tables.columns(info, wide=fmt == "wide",
                                                                  all_namespaces=printer.all_namespaces)]
    if watch:
        await follow(client, printer, namespace=ns, items=listed, rv=rv, label_selector=selector,
                     field_selector=field_selector)
    return 0

