"""``corral get`` and ``describe`` against a real control plane: coloured with ``FORCE_COLOR``, plain
(byte for byte what scripts read) without it or with ``NO_COLOR``."""

from __future__ import annotations

import re

import pytest

from tests.cli.conftest import Corral
from tests.cli.test_image_pull import run_on_a_terminal
from tests.fixtures.control import RunningControl

ANSI = re.compile(r"\x1b\[[0-9;]*m")
MANIFEST = """\
kind: Namespace
metadata: {name: cli-colour}
---
kind: Container
metadata: {name: web, namespace: cli-colour}
spec: {image: "127.0.0.1:5000/busybox:1"}
"""


async def test_get_colours_the_header_and_states_only_when_asked_and_never_moves_a_column(corral: Corral) -> None:
    applied = await corral("apply", "-f", "-", stdin=MANIFEST)
    assert applied.exit_code == 0, applied.output
    try:
        plain = await corral("get", "containers", "-n", "cli-colour", extra_env={"FORCE_COLOR": None, "NO_COLOR": None})
        assert plain.exit_code == 0 and "\x1b" not in plain.stdout, plain.output
        coloured = await corral("get", "containers", "-n", "cli-colour", extra_env={"FORCE_COLOR": "1", "NO_COLOR": None})
        assert coloured.exit_code == 0, coloured.output
        header, row = coloured.stdout.splitlines()
        # a bold header; a container waiting (Pending, or Unschedulable: no nodes here) in yellow
        assert header.startswith("\x1b[1mNAME") and re.search(r"\x1b\[33m(Pending|Unschedulable)\x1b", row), row
        # the same layout once the colour codes are taken out (the status may move on in between)
        bare_header, bare_row = ANSI.sub("", coloured.stdout).splitlines()
        assert bare_header.split() == plain.stdout.splitlines()[0].split()
        assert bare_row.index("<none>") == bare_header.index("NODE")
        refused = await corral("get", "namespaces", extra_env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
        assert refused.exit_code == 0 and "\x1b" not in refused.stdout and "cli-colour" in refused.stdout
        ns = await corral("get", "namespaces", extra_env={"FORCE_COLOR": "1", "NO_COLOR": None})
        assert "\x1b[32mActive" in ns.stdout, ns.stdout
    finally:
        await corral("delete", "namespace", "cli-colour")


async def test_on_a_real_terminal_colour_comes_by_itself_and_no_color_turns_it_off(
        corral: Corral, control_plane: RunningControl, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("NO_COLOR", "FORCE_COLOR", "TERM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CORRAL_CA", str(control_plane.ca_file))  # the child inherits the environment
    args = ["-m", "corral.cli.main", "get", "namespaces", "--server", control_plane.url,
            "--token", control_plane.admin_token]
    code, shown = await run_on_a_terminal(args)
    assert code == 0 and "\x1b[1mNAME" in shown and "\x1b[32mActive" in shown, shown
    monkeypatch.setenv("NO_COLOR", "1")
    code, shown = await run_on_a_terminal(args)
    assert code == 0 and "\x1b[" not in shown and "Active" in shown, shown
