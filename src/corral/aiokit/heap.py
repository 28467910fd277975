"""Garbage-collector settings for processes that hold many objects (the API's caches, the leader's
informers, the simulator's nodes).

CPython's cyclic collector runs a young-generation pass every 700 net allocations and, while the
heap grows, full passes over everything tracked. A control plane decoding thousands of objects a
second into caches of tens of thousands spends most of a decode in the collector (measured: 24 µs
per Container decoded into a growing cache, 3.9 µs with the collector off, 6 µs with the settings
below). Our objects rarely form cycles, so collecting less often costs little memory.

A worker is the other case: few objects, many long-lived TLS connections (a watch per kind it
follows, its heartbeat channel, the request pool). asyncio's TLS layer (``sslproto``, which workers
run: uvloop is for the control plane) gives every connection a 256 KiB read buffer, zero-filled so
all of it resident, and reads at most that much per call; TLS records carry at most 16 KiB, and
aiohttp's protocols do not even read into that buffer (they take each record's bytes as they come).
Measured: 4.1 MiB of a worker's heap in those buffers (16 connections). ``small_tls_buffers`` sets
the size to 16 KiB.
"""

from __future__ import annotations

import gc
from asyncio import sslproto

YOUNG_THRESHOLD = 50_000
TLS_READ_BUFFER = 16 * 1024  # one TLS record's plaintext at most


def tune_for_large_heaps() -> None:
    """Collect the young generation every 50,000 allocations instead of 700, and move what exists
    now (modules, classes, functions: never garbage) out of the collector's sight."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 10)


def small_tls_buffers() -> None:
    """Give each TLS connection asyncio makes from now on a 16 KiB read buffer instead of 256 KiB."""
    sslproto.SSLProtocol.max_size = TLS_READ_BUFFER
