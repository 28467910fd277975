"""Finding containerd for a worker: the one at the socket, or an embedded child when none answers.

A socket file that exists is given ``PATIENCE`` to answer first: a slow or restarting containerd
must not get a second one beside it (found by tests/flow/test_chaos_ha.py on a loaded machine).

An embedded containerd is supervised (``aiokit.processes.Supervisor``): when it dies it is started
again on the same directories and socket; containers keep running meanwhile (their shims outlive
containerd) and the agent's gRPC client reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

from corral.aiokit.backoff import Backoff
from corral.aiokit.processes import Supervisor
from corral.model.errors import Unavailable
from corral.runtime.client import Client
from corral.runtime.embedded import EmbeddedContainerd

log = logging.getLogger(__name__)

PATIENCE = 20.0  # a containerd whose socket exists gets this long to answer before one is embedded


async def _answers(socket: str) -> bool:
    """Whether containerd answers at ``socket``. A socket file that exists belongs to a containerd that
    may just be slow (a loaded machine) or restarting: it is asked again for ``PATIENCE`` seconds, for
    a second containerd beside it would share runc's state with it (two daemons, one set of containers)."""
    deadline = asyncio.get_running_loop().time() + PATIENCE
    there = await asyncio.to_thread(os.path.exists, socket)  # (a restarting one unlinks it for a moment)
    while True:
        probe = Client(socket, timeout=2.0)
        try:
            await probe.version()
            return True
        except Unavailable:
            if not there or asyncio.get_running_loop().time() > deadline:
                return False
            log.info("containerd at %s does not answer yet; asking again", socket)
            await asyncio.sleep(0.5)
        finally:
            await probe.close()


@contextlib.asynccontextmanager
async def ensure_containerd(socket: str, *, base_dir: Path) -> AsyncIterator[str]:
    """Yield a socket where containerd answers; start (and finally stop) an embedded one if needed."""
    if await _answers(socket):
        log.info("using containerd at %s", socket)
        yield socket
        return
    embedded = EmbeddedContainerd(base_dir)
    await embedded.start()
    log.info("started an embedded containerd at %s (pid %s)", embedded.socket, embedded.pid)
    stop = asyncio.Event()
    keeper = asyncio.create_task(
        Supervisor("the embedded containerd", embedded, stop=stop, key="containerd", backoff=Backoff(initial=0.1, maximum=5.0, reset_after=10.0)).run(),
        name="containerd-supervisor")
    try:
        yield embedded.socket
    finally:
        stop.set()
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        await embedded.stop()
