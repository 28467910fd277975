"""One look for every table: bold headers and state colours on a terminal, the same text without them
anywhere else (worked out from cells alone, no server)."""

from __future__ import annotations

import re

import pytest
from rich.style import Style

from corral.cli import styling, tables

ANSI = re.compile(r"\x1b\[[0-9;]*m")
GREEN, YELLOW, RED, BOLD = "\x1b[32m", "\x1b[33m", "\x1b[1;31m", "\x1b[1m"
HEADER = ["NAME", "STATUS", "READY", "TYPE"]
ROWS = [["web", "Running", "2/2", "Normal"], ["db", "CrashLoopBackOff", "0/1", "Warning"],
        ["new", "Pending", "1/3", "ClusterIP"]]


def test_without_colour_a_table_is_exactly_the_plain_kubectl_layout() -> None:
    assert styling.render(HEADER, ROWS, color=False) == tables.render(HEADER, ROWS)


def test_with_colour_only_ansi_codes_are_added_so_columns_stay_where_they_were() -> None:
    coloured = styling.render(HEADER, ROWS, color=True)
    assert ANSI.sub("", coloured) == tables.render(HEADER, ROWS)
    header, web, db, new = coloured.splitlines()
    assert header.startswith(BOLD + "NAME")
    assert GREEN + "Running" in web and GREEN + "2/2" in web and "Normal\x1b" not in web
    assert RED + "CrashLoopBackOff" in db and YELLOW + "0/1" in db and YELLOW + "Warning" in db
    assert YELLOW + "Pending" in new and new.endswith("\x1b[0m     ClusterIP")  # a Service type is not a state


@pytest.mark.parametrize(("cell", "style"), [
    ("Running", styling.GOOD), ("Ready", styling.GOOD), ("Active", styling.GOOD), ("Bound", styling.GOOD),
    ("Complete", styling.GOOD), ("Succeeded", styling.GOOD),
    ("Pending", styling.WAIT), ("Terminating", styling.WAIT), ("SecretMissing", styling.WAIT),
    ("Ready,SchedulingDisabled", styling.WAIT),
    ("Failed", styling.BAD), ("Failed (BackoffLimitExceeded)", styling.BAD), ("ImagePullFailed", styling.BAD),
    ("NotReady", styling.BAD), ("NotReady,SchedulingDisabled", styling.BAD), ("OOMKilled", styling.BAD),
    ("CreateContainerConfigError", styling.BAD), ("True", None), ("<none>", None),
])  # fmt: skip
def test_a_status_cell_takes_the_colour_of_its_worst_state(cell: str, style: Style | None) -> None:
    assert styling.cell_style("STATUS", cell) == style


def test_ready_counts_are_green_only_when_complete_and_health_and_verdicts_are_green_or_red() -> None:
    assert styling.cell_style("READY", "3/3") == styling.GOOD
    assert styling.cell_style("COMPLETIONS", "1/3") == styling.WAIT
    assert styling.cell_style("READY", "<none>") is None
    assert styling.cell_style("HEALTHY", "yes") == styling.GOOD
    assert styling.cell_style("HEALTHY", "no (connection refused)") == styling.BAD
    assert styling.cell_style("VERDICT", "fits") == styling.GOOD
    assert styling.cell_style("VERDICT", "insufficient cpu") == styling.BAD
    assert styling.cell_style("NAME", "Failed") is None


def test_colour_is_off_with_no_color_or_a_dumb_terminal_and_forced_on_with_force_color(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("NO_COLOR", "FORCE_COLOR", "TERM"):
        monkeypatch.delenv(var, raising=False)
    assert styling.color_enabled() is False  # pytest's stdout is not a terminal
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert styling.color_enabled() is True
    monkeypatch.setenv("NO_COLOR", "1")
    assert styling.color_enabled() is False
