"""Logs that outlive their run and their container: ``--previous`` and ``--keep-logs``.

A container's log lives in ``<data>/logs/<uid>/container.log`` (and its rotated ``.1``, ``.2`` …).

- **Runs.** Before a task is started again (a restart, or a new generation), ``begin_run`` moves the
  current log files into ``<data>/logs/<uid>/previous/`` (replacing the run kept there before), so
  ``corral logs --previous`` reads exactly the run before the latest start.
- **After delete.** ``keep`` moves the whole ``logs/<uid>`` directory to
  ``<data>/logs-kept/<namespace>/<name>/<deleted at, ns since epoch>-<uid>/`` when the container is
  torn down; ``latest_kept`` finds the newest one for a name, which is what ``corral logs NAME``
  shows once no container of that name exists. ``expire`` removes those deleted longer ago than
  ``--keep-logs``; the agent runs it periodically (``expire_forever``).

Everything here is plain file moves (renames inside one filesystem) and runs off the event loop.
The node's log collector follows them: it writes to whatever file is at the log's path, begins a
new one there after ``begin_run``, and finishes a deleted container's last lines in the file where
``keep`` moved it (``runtime/logrecords.RotatingFile``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from pathlib import Path

from corral.runtime.logrecords import rotated_path

log = logging.getLogger(__name__)
KEPT_DIR = "logs-kept"
PREVIOUS_DIR = "previous"


def previous_path(log_file: Path) -> Path:
    """Where the previous run's log of ``log_file`` is."""
    return log_file.parent / PREVIOUS_DIR / log_file.name


def begin_run(log_file: Path, max_files: int) -> bool:
    """Move the current run's log files aside as the previous run (blocking). False if there was none."""
    if not log_file.exists() or log_file.stat().st_size == 0:
        return False
    previous = log_file.parent / PREVIOUS_DIR
    shutil.rmtree(previous, ignore_errors=True)
    previous.mkdir(parents=True)
    for index in range(max(1, max_files)):
        source = Path(rotated_path(str(log_file), index))
        with contextlib.suppress(FileNotFoundError):
            source.rename(Path(rotated_path(str(previous / log_file.name), index)))
    return True


def kept_root(data_dir: Path) -> Path:
    return data_dir / KEPT_DIR


def keep(log_dir: Path, data_dir: Path, *, namespace: str, name: str, uid: str) -> Path | None:
    """Move a deleted container's log directory under ``logs-kept`` (blocking); where it went, or None."""
    if not log_dir.is_dir() or not any(log_dir.iterdir()):
        return None
    dest = kept_root(data_dir) / namespace / name / f"{time.time_ns()}-{uid}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    log_dir.rename(dest)
    return dest


def _deleted_at_ns(entry: Path) -> int:
    stamp = entry.name.partition("-")[0]
    return int(stamp) if stamp.isdigit() else 0


def latest_kept(data_dir: Path, namespace: str, name: str) -> tuple[Path, float] | None:
    """(log file, deleted at in seconds since the epoch) of the newest kept log of ``name``; blocking."""
    folder = kept_root(data_dir) / namespace / name
    try:
        entries = [e for e in folder.iterdir() if e.is_dir() and _deleted_at_ns(e)]
    except FileNotFoundError:
        return None
    if not entries:
        return None
    newest = max(entries, key=_deleted_at_ns)
    return newest / "container.log", _deleted_at_ns(newest) / 1e9


def expire(data_dir: Path, keep_seconds: float) -> list[Path]:
    """Remove the kept logs deleted more than ``keep_seconds`` ago (blocking); what was removed."""
    root = kept_root(data_dir)
    cutoff = time.time_ns() - int(keep_seconds * 1e9)
    removed: list[Path] = []
    for namespace in _dirs(root):
        for name in _dirs(namespace):
            for entry in _dirs(name):
                if _deleted_at_ns(entry) < cutoff:
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry)
            with contextlib.suppress(OSError):
                os.rmdir(name)  # only when empty
        with contextlib.suppress(OSError):
            os.rmdir(namespace)
    return removed


def _dirs(path: Path) -> list[Path]:
    try:
        return [p for p in path.iterdir() if p.is_dir()]
    except FileNotFoundError:
        return []


async def expire_forever(data_dir: Path, keep_seconds: float) -> None:
    """Run ``expire`` every so often (a quarter of the keep time, between 1 s and 60 s) until cancelled."""
    period = min(60.0, max(1.0, keep_seconds / 4))
    while True:
        for entry in await asyncio.to_thread(expire, data_dir, keep_seconds):
            log.info("removed the kept log %s: deleted more than %.0fs ago", entry, keep_seconds)
        await asyncio.sleep(period)
