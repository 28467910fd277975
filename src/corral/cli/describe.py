"""``corral describe KIND NAME``: one object in a readable ``Key: value`` layout, then its events.

The layout follows ``kubectl describe``: identity and metadata first, the spec and status as
indented YAML (field names as in the API, so what you read is what you write), conditions as a
table, and last the events whose ``involvedObject`` is this object, oldest first.
"""

from __future__ import annotations

from typing import Any

import click
import msgspec

from corral.api.client import ApiClient
from corral.cli import output, styling, tables
from corral.cli.completion import complete_kind, complete_name
from corral.cli.connection import api_command, connection_options
from corral.model.kinds import EVENTS, KindInfo
from corral.model.resources import Event, Object, Secret

PAD = 20


def _line(key: str, value: object) -> str:
    return f"{key + ':':<{PAD}}{value}"


def _block(title: str, data: Any) -> list[str]:
    if not data:
        return [_line(title, tables.NONE)]
    body = output.dump(data, "yaml").splitlines()
    return [f"{title}:", *(f"  {line}" for line in body)]


def prune(data: Any) -> Any:
    """``data`` without empty maps, lists and strings, at any depth (they say nothing to a reader)."""
    if isinstance(data, dict):
        pruned = {k: prune(v) for k, v in data.items()}
        return {k: v for k, v in pruned.items() if v not in ("", None, [], {})}
    if isinstance(data, list):
        return [prune(v) for v in data]
    return data


def status_fields(obj: Object) -> dict[str, Any]:
    """The status with its top-level defaults shown (``phase: Pending``, ``restartCount: 0``), empties left out."""
    out: dict[str, Any] = {}
    for f in msgspec.structs.fields(obj.status):
        value = prune(msgspec.to_builtins(getattr(obj.status, f.name)))
        if value not in ("", None, [], {}):
            out[f.encode_name] = value
    return out


def _conditions(conditions: list[dict[str, Any]], ctx: tables.Context, *, color: bool = False) -> list[str]:
    if not conditions:
        return []
    rows = [[c.get("type", ""), c.get("status", ""), c.get("reason", "") or tables.NONE,
             tables.age(c.get("lastTransitionTime", ""), ctx.now), c.get("message", "")] for c in conditions]
    text = styling.render(["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"], rows, color=color)
    return ["Conditions:", *(f"  {line}" for line in text.splitlines())]


def describe_lines(obj: Object, info: KindInfo, events: list[Event], ctx: tables.Context, *,
                   color: bool = False) -> list[str]:
    """The whole description, line by line (pure: the tests call it directly); its tables coloured
    (cli/styling.py) when ``color``."""
    meta = obj.metadata
    created = meta.creation_timestamp
    lines = [_line("Name", meta.name)]
    if info.namespaced:
        lines.append(_line("Namespace", meta.namespace))
    lines += [
        _line("Kind", info.kind),
        _line("Labels", tables.labels_text(meta.labels)),
        _line("Annotations", tables.labels_text(meta.annotations)),
        _line("Created", f"{created} ({tables.age(created, ctx.now)} ago)" if created else tables.NONE),
        _line("UID", meta.uid or tables.NONE),
        _line("Resource Version", meta.resource_version or tables.NONE),
        _line("Generation", meta.generation),
    ]
    if meta.finalizers:
        lines.append(_line("Finalizers", ", ".join(meta.finalizers)))
    if meta.owner_references:
        lines.append(_line("Controlled By", ", ".join(f"{r.kind.lower()}/{r.name}" for r in meta.owner_references)))
    if meta.deletion_timestamp:
        lines.append(_line("Deleting Since", meta.deletion_timestamp))
    status = status_fields(obj)
    conditions = status.pop("conditions", [])
    if isinstance(obj, Secret):  # the keys and their sizes, never a value (corral get --show-secrets prints them)
        lines += [_line("Type", obj.type or "Opaque"),
                  *_block("Data", {k: f"{len(v) * 3 // 4 - v.count('=')} bytes" for k, v in sorted(obj.data.items())})]
    lines += _block("Spec", prune(output.to_data(obj).get("spec")))
    lines += _block("Status", status)
    lines += _conditions(conditions, ctx, color=color)
    if info is EVENTS:
        return lines
    if not events:
        lines.append(_line("Events", tables.NONE))
        return lines
    ev_info_rows = [[tables.event_seen(e, ctx.now), e.spec.type, e.spec.reason,
                     e.spec.source.component or tables.NONE, e.spec.message] for e in events]
    text = styling.render(["LAST SEEN", "TYPE", "REASON", "FROM", "MESSAGE"], ev_info_rows, color=color)
    return [*lines, "Events:", *(f"  {line}" for line in text.splitlines())]


def _event_time(e: Event) -> str:
    return e.spec.last_timestamp or e.spec.first_timestamp or e.metadata.creation_timestamp


@click.command()
@click.argument("kind", shell_complete=complete_kind)
@click.argument("name", shell_complete=complete_name)
@click.option("-n", "--namespace", default="default", show_default=True, help="The namespace to look in.")
@connection_options
@api_command
async def describe(client: ApiClient, *, kind: str, name: str, namespace: str) -> int:
    """Show one object in detail, with the events about it."""
    info = output.kind_info(kind)
    obj = await client.get(info.type, name, namespace=namespace)
    events: list[Event] = []
    if info is not EVENTS:
        selector = f"involvedObject.name={name},involvedObject.kind={info.kind}"
        events, _ = await client.list(Event, namespace=namespace if info.namespaced else None, field_selector=selector)
        events.sort(key=_event_time)
    color = styling.color_enabled()
    styling.echo("\n".join(describe_lines(obj, info, events, tables.Context(), color=color)), color=color)
    return 0
