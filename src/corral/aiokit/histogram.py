"""A histogram a component keeps for /metrics: bucket counts, a sum and a count, and nothing else.

Free of prometheus_client (``aiokit/metrics.py`` renders it at scrape time), so a component can keep
one without loading the metrics library — a worker that serves no metrics never does.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Histogram:
    """Bucket counts, a sum and a count: what a component keeps to be scraped as a histogram."""

    __slots__ = ("buckets", "counts", "sum", "total")

    def __init__(self, buckets: Sequence[float] = DURATION_BUCKETS) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.total = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.total += 1

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out
