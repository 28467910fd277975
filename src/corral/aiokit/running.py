"""Run a role until it ends or its owner says stop; then cancel it, drain with a deadline, and say what was stuck.

Every role's entry point (``run_agent``, ``run_leader_role``, ``run_sim``) has the same shape:
the role's work runs as a named task; the owner's ``stop`` event (set by SIGTERM in
``cli/serve.py``) or the work ending — by returning or by failing — ends the wait. Then the work
is cancelled and given ``drain`` seconds to unwind (its ``finally`` blocks close listeners,
containerd clients, etcd leases; cancellation is asyncio's, delivered once, so those awaits run).
Work that is still unwinding at the deadline is logged with every task still running and the line
each waits on — what was stuck — and left behind, so a shutdown is never held forever. A failure of
the work is raised to the caller; a stop returns ``None``.

Not anyio: its cancel scopes cancel *every* await inside a cancelled scope (level cancellation),
which would cut short the asynchronous cleanup the roles do in ``finally`` under asyncio's
edge-triggered cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

DRAIN_SECONDS = 30.0


def stuck_tasks(*, exclude: asyncio.Task[Any] | None = None) -> list[str]:
    """Every other task still running, by name, with the line it waits on."""
    out: list[str] = []
    for task in asyncio.all_tasks():
        if task is exclude or task.done():
            continue
        frames = task.get_stack(limit=1)
        where = f" at {frames[0].f_code.co_filename}:{frames[0].f_lineno}" if frames else ""
        out.append(f"{task.get_name()}{where}")
    return sorted(out)


async def run_until_stopped(work: Coroutine[Any, Any, T], *, stop: asyncio.Event, name: str,
                            drain: float = DRAIN_SECONDS) -> T | None:
    """``work``'s result if it ends by itself (its exception if it fails); None once ``stop`` is set."""
    task = asyncio.create_task(work, name=name)
    stopper = asyncio.create_task(stop.wait(), name=f"{name}-stop")
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # stopped, ended, or the caller itself was cancelled: the work goes too
        stopper.cancel()
        if not task.done():
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=drain)
            if not done:
                log.error("%s did not finish within %.0fs of being stopped; left behind, still running: %s",
                          name, drain, "; ".join(stuck_tasks(exclude=asyncio.current_task())))
        with contextlib.suppress(asyncio.CancelledError):
            await stopper
    if task.done() and not task.cancelled():
        return task.result()  # raises the work's own exception
    return None
