"""Read → change → write again on a 409, for clients of the API (the CLI, the agent, hollow nodes).

Inside the control plane every write goes through the registry's ``guaranteed_update``
(``store/registry.py``). A client of the API has the same need one hop away: it read an object,
changed it, and its PUT (pinned to the resourceVersion it read) lost to another writer. Two helpers,
as client-go's ``retry.RetryOnConflict`` and its typed callers:

- ``retry_on_conflict(attempt)`` runs ``attempt`` (which reads, decides and writes) again on a
  ``Conflict``, up to ``attempts`` times; ``AlreadyExists`` (a Conflict too) is never retried;
- ``update(client, tp, name, mutate)`` is the typed case: GET (or start from the caller's copy,
  e.g. a reflector's), ``mutate`` a private copy (None: nothing to change), PUT at the version read.

A change the server can merge without a race needs neither: a merge PATCH of a map (labels,
annotations) or of a scalar is applied by the server on the newest version (``api/patching.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import msgspec

from corral.model.errors import AlreadyExists, Conflict
from corral.model.resources import Object

if TYPE_CHECKING:
    from corral.api.client import ApiClient

T = TypeVar("T")
ObjT = TypeVar("ObjT", bound=Object)

ATTEMPTS = 5


async def retry_on_conflict(attempt: Callable[[], Awaitable[T]], *, attempts: int = ATTEMPTS,
                            delay: float = 0.0, what: str = "the object") -> T:
    """``attempt()`` until it does not lose a race (``delay`` seconds between tries)."""
    for n in range(attempts):
        try:
            return await attempt()
        except AlreadyExists:
            raise
        except Conflict:
            if n == attempts - 1:
                raise Conflict(f"{what} keeps changing; try again") from None
            if delay:
                await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


async def update(client: ApiClient, tp: type[ObjT], name: str, mutate: Callable[[ObjT], ObjT | None], *,
                 namespace: str = "default", start: ObjT | None = None, attempts: int = ATTEMPTS) -> ObjT:
    """The object after ``mutate``: read (the first time, ``start`` when given), changed, written at
    the version read; on a Conflict read again and repeat. ``mutate`` gets a private copy and
    returns it changed, or None when there is nothing to write (the object as read is returned)."""
    given = start

    async def attempt() -> ObjT:
        nonlocal given
        current, given = given, None  # the caller's copy serves the first attempt only
        if current is None:
            current = await client.get(tp, name, namespace=namespace)
        changed = mutate(msgspec.json.decode(msgspec.json.encode(current), type=tp))
        if changed is None:
            return current
        return await client.update(changed)

    return await retry_on_conflict(attempt, attempts=attempts, what=f'{tp.KIND.lower()} "{name}"')
