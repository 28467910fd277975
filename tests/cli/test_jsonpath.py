"""``-o jsonpath=`` picks fields out of objects and lists the way scripts expect."""

import pytest

from corral.cli.jsonpath import render
from corral.model.errors import CorralError

DOC = {"items": [{"metadata": {"name": "a"}, "status": {"ip": "10.0.0.1", "ports": [1, 2]}},
                 {"metadata": {"name": "b"}, "status": {"ip": "10.0.0.2", "ports": [3]}}]}


def test_paths_indexes_and_fan_out_are_rendered_between_literal_text() -> None:
    assert render("{.items[0].metadata.name}", DOC) == "a"
    assert render("{.items[*].status.ip}", DOC) == "10.0.0.1 10.0.0.2"
    assert render("first={.items[-1].status.ports[0]}\\n", DOC) == "first=3\n"
    assert render("{.items[0].status.ports}", DOC) == "[1, 2]"
    assert render("{.missing.field}", DOC) == ""


def test_unsupported_expressions_say_what_to_write_instead() -> None:
    with pytest.raises(CorralError, match="not supported"):
        render("{range .items[*]}{.metadata.name}{end}", DOC)
    with pytest.raises(CorralError, match="position"):
        render("{.items[x]}", DOC)
