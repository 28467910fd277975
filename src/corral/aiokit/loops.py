"""Which event loop a long-running role runs on: uvloop when it is installed, else asyncio's own.

The control plane spends a large share of each API request in the event loop's transports: socket
reads and writes, the TLS layer (asyncio's ``sslproto`` is pure Python; uvloop's is compiled), timers
and callbacks. uvloop (libuv underneath) does the same work with less CPU: measured by
benchmarks/bench_api.py, see docs/benchmarks.md. Nothing in corral depends on which loop runs;
``CORRAL_UVLOOP=0`` in the environment keeps asyncio's loop (to compare, or to rule uvloop out).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def uvloop_wanted() -> bool:
    if os.environ.get("CORRAL_UVLOOP", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on uvloop's loop when wanted and installed."""
    if uvloop_wanted():
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
