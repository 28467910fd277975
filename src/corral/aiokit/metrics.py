"""Prometheus metrics for every role, with ``prometheus_client``: figures read where they are kept.

The components keep their own plain counters (the scheduler's ``Stats``, a controller's reconcile
counts, the agent's queue) and stay free of metric objects on their hot paths. A
``CallbackCollector`` turns those figures into Prometheus families at scrape time: each metric is a
name, a help text, a type and a function returning either one value or a mapping from label values
to values (or, for histograms, a ``Histogram`` kept by the component). One ``CollectorRegistry`` per
role instance (not the process-wide default: tests run several control planes in one process) is
rendered by ``exposition`` and served by ``serve_metrics`` on a listener of its own (leader, agent)
or on the API's ``/metrics``. The figures' own ``Histogram`` lives in ``aiokit/histogram.py``, free of
prometheus_client: a worker loads this module only when it serves its metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from corral.aiokit.histogram import Histogram

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LabelValues = tuple[str, ...]
Reading = float | Mapping[LabelValues, float]


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    help: str
    type: Literal["counter", "gauge", "histogram"]
    labels: tuple[str, ...]
    read: Callable[[], object]


class CallbackCollector(Collector):
    """Metrics whose values are read by functions when Prometheus scrapes."""

    def __init__(self) -> None:
        self._entries: list[_Entry] = []

    def counter(self, name: str, help_text: str, read: Callable[[], Reading], labels: Iterable[str] = ()) -> None:
        self._entries.append(_Entry(name, help_text, "counter", tuple(labels), read))

    def gauge(self, name: str, help_text: str, read: Callable[[], Reading], labels: Iterable[str] = ()) -> None:
        self._entries.append(_Entry(name, help_text, "gauge", tuple(labels), read))

    def histogram(self, name: str, help_text: str, read: Callable[[], Mapping[LabelValues, Histogram]],
                  labels: Iterable[str] = ()) -> None:
        self._entries.append(_Entry(name, help_text, "histogram", tuple(labels), read))

    def collect(self) -> Iterable[Metric]:
        for e in self._entries:
            value = e.read()
            if e.type == "histogram":
                fam = HistogramMetricFamily(e.name, e.help, labels=list(e.labels))
                assert isinstance(value, Mapping)
                for label_values, h in value.items():
                    fam.add_metric(list(label_values), h.cumulative(), h.sum)
                yield fam
                continue
            family: CounterMetricFamily | GaugeMetricFamily
            if e.type == "counter":
                family = CounterMetricFamily(e.name, e.help, labels=list(e.labels))
            else:
                family = GaugeMetricFamily(e.name, e.help, labels=list(e.labels))
            if isinstance(value, Mapping):
                for label_values, v in value.items():
                    family.add_metric(list(label_values), float(v))
            else:
                assert isinstance(value, int | float)
                family.add_metric([], float(value))
            yield family


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus' text format."""
    return generate_latest(registry)


def metrics_app(registry: CollectorRegistry) -> web.Application:
    async def serve(_: web.Request) -> web.Response:
        return web.Response(body=exposition(registry), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", serve, allow_head=False)
    return app


async def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve ``registry`` at ``http://HOST:PORT/metrics`` (port 0: a free one); the runner and the port."""
    runner = web.AppRunner(metrics_app(registry), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    if server is not None and server.sockets:  # type: ignore[attr-defined]
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    return runner, port
