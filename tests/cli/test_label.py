"""``corral label`` and ``corral annotate`` change an object's metadata with one merge patch."""

from __future__ import annotations

import json
import uuid

import click
import pytest

from corral.api.client import ApiClient
from corral.cli.label import parse_changes
from corral.model.resources import Event, EventSpec, ObjectMeta, ObjectReference
from tests.cli.conftest import Corral
from tests.fixtures.control import RunningControl


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



async def test_events_lists_the_events_about_an_object_oldest_first(corral: Corral, control_plane: RunningControl) -> None:
    async with ApiClient(control_plane.url, control_plane.admin_token, ssl_context=control_plane.ssl) as api:
        for i, (reason, when) in enumerate([("Second", "2026-01-02T00:00:00Z"), ("First", "2026-01-01T00:00:00Z")]):
            await api.create(Event(metadata=ObjectMeta(name=f"evented.{i}{uuid.uuid4().hex[:6]}", namespace="default"),
                                   spec=EventSpec(involved_object=ObjectReference(kind="Container", name="evented",
                                                                                  namespace="default"),
                                                  reason=reason, message=f"{reason} thing", last_timestamp=when)))
        await api.create(Event(metadata=ObjectMeta(name=f"other.{uuid.uuid4().hex[:6]}", namespace="default"),
                               spec=EventSpec(involved_object=ObjectReference(kind="Container", name="other"),
                                              reason="Elsewhere")))
    shown = await corral("events", "--for", "container/evented")
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert lines[0].split()[:3] == ["LAST", "SEEN", "TYPE"]
    reasons = [line.split()[2] for line in lines[1:]]
    assert reasons == ["First", "Second"], lines
    bad = await corral("events", "--for", "evented")
    assert bad.exit_code == 2 and "KIND/NAME" in bad.output
