"""``corral label`` and ``corral annotate`` change an object's metadata with one merge patch."""

from __future__ import annotations

import json

import click
import pytest

from corral.cli.label import parse_changes
from tests.cli.conftest import Corral


def test_changes_are_parsed_into_sets_and_removals_and_bad_keys_are_refused() -> None:
    assert parse_changes(("a=1", "b-", "c="), what="label", check_values=True) == {"a": "1", "b": None, "c": ""}
    with pytest.raises(click.BadParameter):
        parse_changes(("novalue",), what="label", check_values=True)
    with pytest.raises(click.BadParameter):
        parse_changes(("bad key=1",), what="label", check_values=True)


async def test_label_sets_and_removes_labels_and_asks_for_overwrite_before_changing_one(corral: Corral) -> None:
    made = await corral("run", "labelled", "--image", "127.0.0.1:5000/busybox:1", "-l", "app=one", "--", "sleep", "1")
    assert made.exit_code == 0, made.output
    try:
        assert (await corral("label", "container", "labelled", "tier=front")).exit_code == 0
        clash = await corral("label", "container", "labelled", "app=two")
        assert clash.exit_code == 1 and "--overwrite" in clash.stderr
        done = await corral("label", "container", "labelled", "app=two", "tier-", "--overwrite")
        assert done.exit_code == 0, done.output
        assert (await corral("annotate", "container", "labelled", "note=hello world")).exit_code == 0
        meta = json.loads((await corral("get", "containers", "labelled", "-o", "json")).stdout)["metadata"]
        assert meta["labels"] == {"app": "two"}
        assert meta["annotations"] == {"note": "hello world"}
    finally:
        await corral("delete", "container", "labelled")
