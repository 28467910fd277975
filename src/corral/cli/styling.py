"""One look for every table the CLI prints: a bold header and a colour per state (rich styles), or
plain text when standard output is not a terminal, ``NO_COLOR`` is set or ``TERM=dumb``.

The layout is always ``tables.format_line``'s (kubectl's: cells left-aligned, three spaces apart), so
colour never moves a column: a script, a pipe or a test reading the output sees exactly the plain
text, and ``FORCE_COLOR=1`` turns colour on even off a terminal. Colour only wraps a cell in the ANSI
codes of a rich ``Style`` (rendered per cell, not by a rich ``Table``: a table of 30,000 rows prints
as fast as plain text, and the rows of ``get -w`` line up with the first batch).

What is coloured is decided by the column's header, for every kind alike:

- ``STATUS`` (and ``PHASE``): green when all is well (Running, Ready, Active, Bound, Complete,
  Succeeded), red for a failure (Failed, CrashLoopBackOff, ImagePullFailed, NotReady, anything with
  Error, BackOff, Killed, Exceeded, ...), yellow for anything else on its way (Pending, Terminating,
  SchedulingDisabled, a waiting reason). A cell of several words (``Ready,SchedulingDisabled``,
  ``Failed (BackoffLimitExceeded)``) takes the worst of them.
- ``READY``, ``COMPLETIONS`` (``2/3``): green when complete, yellow while not.
- ``TYPE``: ``Warning`` in yellow (an Event's type); other types plain.
- ``HEALTHY``: ``yes``/``true`` green, ``no``/``false`` red.
- ``VERDICT`` (``why-not``): ``fits`` green, a reason red.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Sequence

import click
from rich.color import ColorSystem
from rich.style import Style

from corral.cli.tables import GAP, format_line, widths

HEADER = Style(bold=True)
GOOD = Style(color="green")
WAIT = Style(color="yellow")
BAD = Style(color="red", bold=True)

GOOD_WORDS = frozenset({"Running", "Ready", "Active", "Bound", "Complete", "Completed", "Succeeded", "Available"})
NEUTRAL_WORDS = frozenset({"True", "False", "<none>", ""})  # a condition's status says nothing alone
BAD_WORDS = frozenset({"Failed", "NotReady", "CrashLoopBackOff", "Evicted", "Lost", "Unknown"})
BAD_MARKS = ("Fail", "Error", "BackOff", "Killed", "Exceeded", "Unreachable", "Unauthorized", "Mismatch",
             "Unsupported", "Invalid", "Refused", "DiskFull", "NotFound")
_WORD = re.compile(r"[A-Za-z<>]+")
_RANK = {None: 0, GOOD: 1, WAIT: 2, BAD: 3}


def color_enabled() -> bool:
    """Colour on standard output: on a terminal, unless ``NO_COLOR`` (no-color.org) or ``TERM=dumb``;
    ``FORCE_COLOR`` turns it on anywhere."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    if os.environ.get("TERM") == "dumb":
        return False
    return sys.stdout.isatty()


def word_style(word: str) -> Style | None:
    """The style of one state word (see the module doc)."""
    if word in NEUTRAL_WORDS:
        return None
    if word in GOOD_WORDS:
        return GOOD
    if word in BAD_WORDS or any(mark in word for mark in BAD_MARKS):
        return BAD
    return WAIT


def _status_style(cell: str) -> Style | None:
    worst: Style | None = None
    for part in cell.split(","):
        match = _WORD.search(part)  # the state, not what follows it in parentheses
        style = word_style(match.group(0) if match else "")
        if _RANK[style] > _RANK[worst]:
            worst = style
    return worst


def _ratio_style(cell: str) -> Style | None:
    have, sep, want = cell.partition("/")
    if not sep or not have.isdigit() or not want.isdigit():
        return None
    return GOOD if int(have) >= int(want) else WAIT


@functools.lru_cache(maxsize=4096)  # a column holds few distinct states: 30,000 rows cost a few lookups
def cell_style(column: str, cell: str) -> Style | None:
    """The style of ``cell`` in a column headed ``column``; None for plain."""
    if column in ("STATUS", "PHASE"):
        return _status_style(cell)
    if column in ("READY", "COMPLETIONS"):
        return _ratio_style(cell)
    if column == "TYPE":
        return WAIT if cell == "Warning" else None
    if column == "VERDICT":  # why-not: a node that fits, or the reason it does not
        return GOOD if cell == "fits" else BAD
    if column == "HEALTHY":
        return GOOD if cell in ("yes", "true") else BAD if cell.startswith(("no", "false")) else None
    return None


@functools.lru_cache(maxsize=32)
def _codes(style: Style) -> tuple[str, str]:
    """The ANSI codes that open and close ``style`` (rendered by rich once per style)."""
    before, _, after = style.render("\0", color_system=ColorSystem.STANDARD).partition("\0")
    return before, after


def _paint(style: Style | None, text: str) -> str:
    if style is None or not text:
        return text
    before, after = _codes(style)
    return before + text + after


def line(cells: Sequence[str], col_widths: Sequence[int], *, color: bool, header: Sequence[str] = (),
         is_header: bool = False) -> str:
    """One table line: ``tables.format_line``'s text, each cell styled by its column when ``color``."""
    if not color:
        return format_line(cells, col_widths)
    out = []
    for i, cell in enumerate(cells):
        style = HEADER if is_header else cell_style(header[i] if i < len(header) else "", cell)
        pad = " " * (col_widths[i] - len(cell)) if i < len(cells) - 1 and i < len(col_widths) else ""
        out.append(_paint(style, cell) + pad)
    return GAP.join(out)


def render(header: Sequence[str], rows: Sequence[Sequence[str]], *, color: bool) -> str:
    """The header and rows as aligned lines (no trailing newline), styled when ``color``."""
    w = widths([list(header), *[list(r) for r in rows]])
    lines = [line(header, w, color=color, is_header=True)]
    lines += [line(r, w, color=color, header=header) for r in rows]
    return "\n".join(lines)


def echo(text: str, *, color: bool) -> None:
    """``click.echo`` that keeps the colour codes when colour was chosen (even off a terminal)."""
    click.echo(text, color=True if color else None)
