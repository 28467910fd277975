"""``corral diff -f FILE``: what ``corral apply -f FILE`` would change, as a unified diff of YAML.

For each object in the file, the server's current object is read and the update apply would send
is built with apply's own rule (``desired_update``: the file's spec, labels and annotations over
what is there); both are shown as YAML without the fields the server owns (status, resourceVersion,
uid, timestamps). An object that does not exist yet is shown whole as added. The exit code is 0 when
nothing would change, 1 when something would (as ``kubectl diff``), 2 on an error.
"""

from __future__ import annotations

import difflib
from typing import Any

import click
import msgspec
import yaml

from corral.api.client import ApiClient
from corral.cli import output
from corral.cli.apply import Document, desired_update, doc_namespace, object_path, read_documents, unchanged
from corral.cli.connection import api_command, connection_options
from corral.model.errors import NotFound

SERVER_OWNED_METADATA = ("resourceVersion", "uid", "creationTimestamp", "generation", "deletionTimestamp",
                         "managedFields")


def comparable(obj: dict[str, Any]) -> str:
    """The YAML a reader compares: no status, no metadata the server owns."""
    shown = {k: v for k, v in obj.items() if k != "status"}
    meta = {k: v for k, v in (shown.get("metadata") or {}).items() if k not in SERVER_OWNED_METADATA}
    shown["metadata"] = meta
    return yaml.safe_dump(shown, sort_keys=True, default_flow_style=False)


async def diff_one(client: ApiClient, doc: Document, namespace: str) -> list[str]:
    ns = doc_namespace(doc, namespace)
    label = output.ref(doc.info, doc.name or "?")
    try:
        current = msgspec.json.decode(await client.request("GET", object_path(doc.info, ns, doc.name)))
    except NotFound:
        new_text = comparable(doc.body)
        return list(difflib.unified_diff([], new_text.splitlines(keepends=True), f"{label} (absent)", f"{label} (file)"))
    new = desired_update(current, doc.body, doc.info)
    if unchanged(current, new, doc.info):
        return []
    return list(difflib.unified_diff(comparable(current).splitlines(keepends=True),
                                     comparable(new).splitlines(keepends=True), f"{label} (live)", f"{label} (file)"))


@click.command()
@click.option("-f", "--filename", "files", multiple=True, required=True, metavar="FILE",
              help="A YAML or JSON file of one or more objects; - reads stdin.")
@click.option("-n", "--namespace", default="default", show_default=True,
              help="The namespace for objects whose metadata names none.")
@connection_options
@api_command
async def diff(client: ApiClient, *, files: tuple[str, ...], namespace: str) -> int:
    """Show what `corral apply -f FILE` would change (exit 1 when it would change something)."""
    changed = False
    for doc in read_documents(files):
        lines = await diff_one(client, doc, namespace)
        if lines:
            changed = True
            click.echo("".join(lines), nl=False)
    return 1 if changed else 0
