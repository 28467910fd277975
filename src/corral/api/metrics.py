"""The API's Prometheus metrics (``GET /metrics``), with prometheus_client.

Requests by (method, route, code) and a latency histogram per (method, route) — routes are the
route templates (``/namespaces/{namespace}/containers``), never raw paths, so cardinality stays
small — requests in flight (watch streams apart), heartbeat channels, etcd group-commit batches and
the watch caches' revisions. The middleware feeds ``observe``; the rest is read at scrape time
(aiokit/metrics.py). Each ``ApiServer`` has its own registry.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from corral.aiokit.histogram import Histogram
from corral.aiokit.metrics import CallbackCollector, LabelValues, exposition


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.collector = CallbackCollector()
        self.registry.register(self.collector)
        self.requests: defaultdict[LabelValues, float] = defaultdict(float)
        self.latency: defaultdict[LabelValues, Histogram] = defaultdict(Histogram)
        self.inflight: defaultdict[LabelValues, float] = defaultdict(float)
        c = self.collector
        c.counter("corral_api_requests_total", "API requests by method, route and status code.",
                  lambda: self.requests, labels=("method", "route", "code"))
        c.histogram("corral_api_request_duration_seconds", "API request latency by method and route "
                    "(a watch counts until its stream ends).", lambda: self.latency, labels=("method", "route"))
        c.gauge("corral_api_inflight_requests", "Requests being served now; kind=watch for watch streams.",
                lambda: self.inflight, labels=("kind",))

    def begin(self, kind: str) -> None:
        self.inflight[(kind,)] += 1

    def end(self, kind: str) -> None:
        self.inflight[(kind,)] -= 1

    def observe(self, method: str, route: str, code: int, seconds: float) -> None:
        self.requests[(method, route, str(code))] += 1
        self.latency[(method, route)].observe(seconds)

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.collector.gauge(name, help_text, read)

    def counter(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.collector.counter(name, help_text, read)

    def render(self) -> bytes:
        return exposition(self.registry)
