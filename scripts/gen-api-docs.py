"""Write docs/api.md from the API's OpenAPI document (the one GET /openapi.json serves).

    python scripts/gen-api-docs.py [--check]

With --check it writes nothing and exits 1 when docs/api.md is not what the code generates (the
test suite runs it so, to keep the reference true to the code).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from corral.api.openapi import document

OUT = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def _schema_name(schema: dict[str, Any] | None) -> str:
    if not schema:
        return ""
    ref = schema.get("$ref", "")
    if ref:
        return ref.rsplit("/", 1)[-1]
    if schema.get("type") == "object" and "items" in schema.get("properties", {}):
        return _schema_name(schema["properties"]["items"].get("items")) + " list"
    return str(schema.get("type", ""))


def render(doc: dict[str, Any]) -> str:
    lines = [
        "# API reference",
        "",
        "Generated from the API's OpenAPI document (`GET /openapi.json`) by `python scripts/gen-api-docs.py`;",
        "do not edit by hand. Every request carries `Authorization: Bearer <token>` unless noted; errors have",
        'the shape `{"error": {"code", "reason", "message", "details": [{"field", "message"}]}}`.',
        "",
        "| method | path | what | body | answers |",
        "|---|---|---|---|---|",
    ]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            body = ""
            if "requestBody" in op:
                body = ", ".join(f"`{ct}`" for ct in op["requestBody"]["content"])
            codes = ", ".join(sorted(op.get("responses", {})))
            summary = op.get("summary", "").replace("|", "\\|")
            lines.append(f"| {method.upper()} | `{path}` | {summary} | {body} | {codes} |")
    lines += ["", "## Query parameters", ""]
    seen: set[str] = set()
    for item in doc["paths"].values():
        for op in item.values():
            if not isinstance(op, dict):
                continue
            for p in op.get("parameters", []):
                if p["in"] == "query" and p["name"] not in seen:
                    seen.add(p["name"])
                    lines.append(f"- `{p['name']}` ({p['schema'].get('type', '')}) {p.get('description', '')}".rstrip())
    lines += ["", "## Kinds", "", "Each kind's `spec` and `status` fields (the full schemas are in `/openapi.json`).", ""]
    schemas = doc["components"]["schemas"]
    for name, schema in sorted(schemas.items()):
        props = schema.get("properties", {})
        if not {"apiVersion", "kind", "spec"} <= set(props):
            continue
        lines.append(f"### {name}")
        lines.append("")
        for part in ("spec", "status"):
            target = schemas.get(_schema_name(props.get(part)), {})
            fields = ", ".join(f"`{f}`" for f in target.get("properties", {})) or "(none)"
            lines.append(f"- `{part}`: {fields}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    text = render(document())
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run python scripts/gen-api-docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
