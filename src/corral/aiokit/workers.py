"""The one work loop: workers take keys from a ``WorkQueue``, handle each, and requeue it as its error's type says.

The controllers (``controllers/base.py``) and the agent (``roles/agent.py``) reconcile the same way
— watch → key → dedup queue → worker → ``handle(key)`` — and share this loop rather than each
writing one. ``handle`` returns ``None`` when the key is done or a delay after which it should be
looked at again (a level-based poll: a back-off that is running, a Secret not there yet). What a
failure does to the key is decided by the exception's type (``model/errors.py``), never by its
wording or an attribute set by convention:

- ``TemporaryError``: retried after its ``delay`` when it has one (a lost compare-and-swap: at
  once; a failed pull: 10 s), else after the key's backoff (doubling per failure up to the queue's
  cap);
- ``PermanentError``: not retried; the key's backoff is reset and it is handled again only when
  an event adds it again (its object changed);
- any other error: retried after the key's backoff, logged with its traceback (a bug, not weather).

A success resets the key's backoff. Each worker is a named task (``<name>-worker-<i>``) of one task
group, so a stuck one shows by name in a task dump. ``observe`` gets every pass's outcome and
duration (the roles count them for /metrics).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from enum import StrEnum
from typing import TypeVar

from corral.aiokit.queueing import WorkQueue
from corral.model.errors import CorralError, PermanentError, TemporaryError

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


class Outcome(StrEnum):
    OK = "ok"  # done (perhaps to be looked at again after the delay it asked for)
    RETRY = "retry"  # a TemporaryError or another CorralError: requeued
    PERMANENT = "permanent"  # a PermanentError: left until the key is added again
    ERROR = "error"  # an unexpected exception (a bug): requeued with backoff


def requeue_after_failure(queue: WorkQueue[K], key: K, exc: Exception, *, name: str, describe: str = "") -> Outcome:
    """Requeue ``key`` (or not) as ``exc``'s type says; log it once, at the level it deserves."""
    what = describe or str(key)
    if isinstance(exc, PermanentError):
        queue.forget(key)
        log.warning("%s %s: %s (not retried until it changes)", name, what, exc)
        return Outcome.PERMANENT
    if isinstance(exc, TemporaryError):
        delay = queue.retry(key, delay=exc.delay)
        # a lost compare-and-swap is routine: someone wrote first; read again and go on
        log.log(logging.DEBUG if delay < 0.5 else logging.INFO, "%s %s: %s (retry in %.1fs)", name, what, exc, delay)
        return Outcome.RETRY
    delay = queue.retry(key)
    if isinstance(exc, CorralError):
        log.info("%s %s: %s (retry in %.1fs)", name, what, exc, delay)
        return Outcome.RETRY
    log.error("%s %s failed (retry in %.1fs)", name, what, delay, exc_info=exc)
    return Outcome.ERROR


async def handle_one(queue: WorkQueue[K], key: K, handle: Callable[[K], Awaitable[float | None]], *,
                     name: str, describe: str = "") -> Outcome:
    """One pass over ``key`` (already taken from ``queue``; the caller marks it done)."""
    try:
        again = await handle(key)
    except Exception as e:
        return requeue_after_failure(queue, key, e, name=name, describe=describe)
    queue.forget(key)
    if again is not None:
        queue.add_after(key, again)
    return Outcome.OK


async def work(queue: WorkQueue[K], handle: Callable[[K], Awaitable[float | None]], *, name: str,
               describe: Callable[[K], str] = str,
               observe: Callable[[Outcome, float], None] | None = None) -> None:
    """One worker: take a key, handle it, requeue it as its outcome says; until cancelled or the queue closes."""
    while True:
        key = await queue.get()
        started = time.perf_counter()
        try:
            outcome = await handle_one(queue, key, handle, name=name, describe=describe(key))
        finally:
            queue.done(key)
        if observe is not None:
            observe(outcome, time.perf_counter() - started)


async def run_workers(queue: WorkQueue[K], handle: Callable[[K], Awaitable[float | None]], *, name: str,
                      workers: int, describe: Callable[[K], str] = str,
                      observe: Callable[[Outcome, float], None] | None = None) -> None:
    """``workers`` named workers over one queue, in one task group; runs until cancelled."""
    async with asyncio.TaskGroup() as tg:
        for i in range(workers):
            tg.create_task(work(queue, handle, name=name, describe=describe, observe=observe),
                           name=f"{name}-worker-{i}")
