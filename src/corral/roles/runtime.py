"""Finding containerd for a worker: the one at the socket, or an embedded child when none answers."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

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
    try:
        yield embedded.socket
    finally:
        await embedded.stop()
