"""``-o jsonpath=TEMPLATE``: the parts of objects a script wants, kubectl's way (a useful subset).

A template is text with ``{…}`` expressions: ``{.status.phase}``, ``{.items[0].metadata.name}``,
``{.items[*].status.ip}``, ``{.spec.ports[-1].containerPort}``. An expression is a path of ``.key``
and ``[index]`` / ``[*]`` steps from the document; ``[*]`` fans out and the values are joined with
spaces. Strings print bare, other values as JSON; a path that finds nothing prints nothing (as
kubectl does with ``--allow-missing-template-keys``). ``{range …}``/``{end}`` are not supported:
the error says so.
"""

from __future__ import annotations

import json
import re
from typing import Any

from corral.model.errors import CorralError

_EXPR = re.compile(r"\{([^{}]*)\}")
_STEP = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\*|-?\d+)\]")


def _steps(expr: str) -> list[str | int | None]:
    """The path of one expression: a key (str), an index (int) or a fan-out (None)."""
    text = expr.strip()
    if text in ("", "."):
        return []
    if text.startswith(("range", "end")):
        raise CorralError(f"jsonpath: {{{text}}} is not supported; use {{.items[*].FIELD}} to list a field of every item")
    if not text.startswith((".", "[")):
        text = "." + text
    steps: list[str | int | None] = []
    pos = 0
    for m in _STEP.finditer(text):
        if m.start() != pos:
            break
        key, index = m.group(1), m.group(2)
        steps.append(key if key is not None else (None if index == "*" else int(index)))
        pos = m.end()
    if pos != len(text):
        raise CorralError(f"jsonpath: cannot read {{{expr}}} from position {pos + 1}: use .key, [N] or [*] steps")
    return steps


def _walk(values: list[Any], step: str | int | None) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if step is None:
            if isinstance(v, list):
                out.extend(v)
            elif isinstance(v, dict):
                out.extend(v.values())
        elif isinstance(step, int):
            if isinstance(v, list) and -len(v) <= step < len(v):
                out.append(v[step])
        elif isinstance(v, dict) and step in v:
            out.append(v[step])
    return out


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def render(template: str, data: Any) -> str:
    """``template`` with each ``{expression}`` replaced by what it finds in ``data`` (pure)."""
    def one(m: re.Match[str]) -> str:
        values = [data]
        for step in _steps(m.group(1)):
            values = _walk(values, step)
        return " ".join(_show(v) for v in values)

    return _EXPR.sub(one, template).replace("\\n", "\n").replace("\\t", "\t")
