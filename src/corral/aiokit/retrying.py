"""Call something until it works, while its failures say they are temporary.

``retry_temporary(call, what=…)`` awaits ``call()`` again after each ``TemporaryError`` (its own
``delay`` when it names one, else the next step of a ``Backoff``), logging each retry with
``what``; any other error ends it at once, as the caller's. The one-thing loops of the roles
(an agent registering its Node, a hollow node joining) use it instead of each counting delays.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from corral.aiokit.backoff import Backoff
from corral.model.errors import TemporaryError

log = logging.getLogger(__name__)

T = TypeVar("T")


async def retry_temporary(call: Callable[[], Awaitable[T]], *, what: str, backoff: Backoff | None = None,
                          level: int = logging.WARNING) -> T:
    """``call()``'s result, retried while it raises a ``TemporaryError``."""
    backoff = backoff or Backoff(initial=0.2, maximum=5.0)
    while True:
        try:
            return await call()
        except TemporaryError as e:
            delay = backoff.next() if e.delay is None else e.delay
            log.log(level, "%s: %s (retry in %.1fs)", what, e, delay)
            await asyncio.sleep(delay)
