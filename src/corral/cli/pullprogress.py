"""Pull progress as the user sees it: a bar per layer (rich), or nothing but the result off a terminal.

``PullDisplay`` is the ``progress`` callback of ``runtime.pull``: each ``PullProgress`` (one blob's
bytes so far, of its total) moves that blob's bar; blobs found in the content store show as cached.
When standard output is not a terminal (a script, CI) it draws nothing, so logs stay clean.
"""

from __future__ import annotations

import sys
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn

from corral.runtime.pull import PullProgress


class PullDisplay:
    def __init__(self, *, enabled: bool | None = None, console: Console | None = None) -> None:
        self.console = console or Console(stderr=False)
        self.enabled = sys.stdout.isatty() if enabled is None else enabled
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
        self._progress.update(task, completed=event.done, total=event.total or None, description=label)
