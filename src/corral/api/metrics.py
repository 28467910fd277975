"""Prometheus metrics for the API, in the text exposition format, without a client library.

Request counts by (method, route, code) and a latency histogram per (method, route). Routes are the
route templates (``/namespaces/{namespace}/containers``), never raw paths, so cardinality stays small.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    __slots__ = ("counts", "sum", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0
        self.total = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, value)] += 1
        self.sum += value
        self.total += 1


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for k, v in labels.items())
    return "{" + inner + "}"


class Metrics:
    def __init__(self) -> None:
        self.requests: defaultdict[tuple[str, str, int], int] = defaultdict(int)
        self.latency: defaultdict[tuple[str, str], Histogram] = defaultdict(Histogram)
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def observe(self, method: str, route: str, code: int, seconds: float) -> None:
        self.requests[(method, route, code)] += 1
        self.latency[(method, route)].observe(seconds)

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.gauges[name] = (help_text, read)

    def render(self) -> str:
        out = [
            "# HELP corral_api_requests_total API requests by method, route and status code.",
            "# TYPE corral_api_requests_total counter",
        ]
        for (method, route, code), n in sorted(self.requests.items()):
            out.append(f"corral_api_requests_total{_labels(method=method, route=route, code=str(code))} {n}")
        out += [
            "# HELP corral_api_request_duration_seconds API request latency by method and route.",
            "# TYPE corral_api_request_duration_seconds histogram",
        ]
        for (method, route), h in sorted(self.latency.items()):
            cumulative = 0
            for bound, count in zip((*BUCKETS, float("inf")), h.counts, strict=True):
                cumulative += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                out.append(f"corral_api_request_duration_seconds_bucket{_labels(method=method, route=route, le=le)} {cumulative}")
            out.append(f"corral_api_request_duration_seconds_sum{_labels(method=method, route=route)} {h.sum}")
            out.append(f"corral_api_request_duration_seconds_count{_labels(method=method, route=route)} {h.total}")
        for name, (help_text, read) in sorted(self.gauges.items()):
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {read()}"]
        return "\n".join(out) + "\n"
