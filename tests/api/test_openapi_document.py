"""The OpenAPI document is valid OpenAPI 3.1, and docs/api.md is what it generates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from openapi_spec_validator import validate

from corral.api.openapi import document

ROOT = Path(__file__).resolve().parents[2]


def test_the_document_validates_and_declares_every_path_parameter() -> None:
    doc = document()
    validate(doc)  # raises on any schema error
    for path, item in doc["paths"].items():
        declared = {p["name"] for p in item.get("parameters", [])}
        wanted = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        assert declared == wanted, path


def test_the_api_reference_in_docs_is_the_one_the_code_generates() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen-api-docs.py"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
