"""What the user commands print besides tables: errors, objects as JSON or YAML, ``kind/name`` lines.

An error is one sentence on stderr, prefixed ``error:``; when the server named bad fields, each
follows on its own line, indented (``  spec.image: is required ...``).
"""

from __future__ import annotations

import json
from typing import Any

import click
import msgspec
import yaml

from corral.model.errors import CorralError, Invalid
from corral.model.kinds import KINDS, KindInfo, lookup
from corral.model.resources import Object


def print_error(error: CorralError, *, what: str = "") -> None:
    """``error: <sentence>`` and the field details, on stderr."""
    if isinstance(error, Invalid) and error.details:
        n = len(error.details)
        sentence = f"{what or 'the object'} is invalid ({n} problem{'s' if n > 1 else ''}):"
    else:
        sentence = f"{what}: {error.message}" if what else error.message
    click.echo(f"error: {sentence}", err=True)
    for d in error.details:
        click.echo(f"  {d.field}: {d.message}", err=True)


def kind_info(word: str) -> KindInfo:
    """The kind a user typed, or a corral error naming the kinds there are."""
    info = lookup(word)
    if info is None:
        known = ", ".join(k.plural for k in KINDS)
        raise CorralError(f"unknown kind {word!r}; the kinds are: {known}")
    return info


def ref(info: KindInfo, name: str) -> str:
    """``container/web``: how kubectl-style commands name one object."""
    return f"{info.kind.lower()}/{name}"


def to_data(obj: Object) -> dict[str, Any]:
    """The object as JSON-ready builtins, led by ``apiVersion`` and ``kind`` (which the types omit as defaults)."""
    data: dict[str, Any] = msgspec.to_builtins(obj)
    return {"apiVersion": obj.api_version, "kind": obj.kind, **data}


def dump(data: Any, fmt: str) -> str:
    """``data`` (builtins) as JSON (indented) or YAML (keys in the order the API gives them)."""
    if fmt == "json":
        return json.dumps(data, indent=2)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip("\n")
