"""Garbage-collector settings for processes that hold many objects (the API's caches, the leader's
informers, the simulator's nodes).

CPython's cyclic collector runs a young-generation pass every 700 net allocations and, while the
heap grows, full passes over everything tracked. A control plane decoding thousands of objects a
second into caches of tens of thousands spends most of a decode in the collector (measured: 24 µs
per Container decoded into a growing cache, 3.9 µs with the collector off, 6 µs with the settings
below). Our objects rarely form cycles, so collecting less often costs little memory.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000


def tune_for_large_heaps() -> None:
    """Collect the young generation every 50,000 allocations instead of 700, and move what exists
    now (modules, classes, functions: never garbage) out of the collector's sight."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 10)
