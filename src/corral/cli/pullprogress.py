"""Pull progress as the user sees it: a bar per layer (rich), or nothing but the result off a terminal.

``PullDisplay`` is the ``progress`` callback of ``runtime.pull``: each ``PullProgress`` (one blob's
bytes so far, of its total) moves that blob's bar; blobs found in the content store show as cached.
When standard output is not a terminal (a script, CI) it draws nothing, so logs stay clean.

``corral run --wait`` feeds the same display from the ``status.pull`` its node's agent writes
(``show_status``: a bar per blob of the pull as last reported); ``complete`` fills every bar when
the status says the pull is over. ``--progress=always`` (``mode="always"``) draws even off a
terminal, ``never`` not at all.
"""

from __future__ import annotations

import sys
from types import TracebackType

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn

from corral.model.resources import PullStatus
from corral.runtime.pull import PullProgress


class PullDisplay:
    def __init__(self, *, enabled: bool | None = None, console: Console | None = None) -> None:
        self.console = console or Console(stderr=False)
        self.enabled = sys.stdout.isatty() if enabled is None else enabled
        self._totals: dict[str, int] = {}
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                  TransferSpeedColumn(), console=self.console, transient=False)
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> PullDisplay:
        if self.enabled:
            self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.enabled:
            self._progress.stop()

    def __call__(self, event: PullProgress) -> None:
        if not self.enabled:
            return
        task = self._tasks.get(event.digest)
        label = event.digest.split(":", 1)[-1][:12] + (" (cached)" if event.cached else "")
        if task is None:
            task = self._tasks[event.digest] = self._progress.add_task(label, total=event.total or None)
        self._totals[event.digest] = event.total
        self._progress.update(task, completed=event.done, total=event.total or None, description=label)

    @classmethod
    def for_mode(cls, mode: str) -> PullDisplay:
        """``auto``: bars on a terminal only; ``always``: bars even off one (as a terminal would
        show them); ``never``: none."""
        if mode == "always":
            return cls(enabled=True, console=Console(force_terminal=True))
        return cls(enabled=False if mode == "never" else None)

    def show_status(self, pull: PullStatus) -> None:
        """Move the bars to what a container's ``status.pull`` says."""
        for layer in pull.layers:
            self(PullProgress(pull.image, layer.digest, layer.done, layer.size))

    def complete(self) -> None:
        """The pull is over: every bar full."""
        if not self.enabled:
            return
        for digest, task in self._tasks.items():
            total = self._totals.get(digest, 0)
            self._progress.update(task, completed=total, total=total or None)

    def note(self, text: str) -> None:
        """A line of text above the bars (or just the line, with no bars)."""
        if self.enabled:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            click.echo(text)
