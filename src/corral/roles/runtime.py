"""Finding containerd for a worker: the one at the socket, or an embedded child when none answers.

An embedded containerd is supervised (``aiokit.processes.Supervisor``): when it dies it is started
again on the same directories and socket; containers keep running meanwhile (their shims outlive
containerd) and the agent's gRPC client reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from corral.aiokit.backoff import Backoff
from corral.aiokit.processes import Supervisor
from corral.model.errors import Unavailable
from corral.runtime.client import Client
from corral.runtime.embedded import EmbeddedContainerd

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def ensure_containerd(socket: str, *, base_dir: Path) -> AsyncIterator[str]:
    """Yield a socket where containerd answers; start (and finally stop) an embedded one if needed."""
    probe = Client(socket, timeout=2.0)
    try:
        await probe.version()
        answers = True
    except Unavailable:
        answers = False
    finally:
        await probe.close()
    if answers:
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
