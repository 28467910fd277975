"""What the leader and the agent report to Prometheus, read from the figures they keep.

``LeaderMetrics`` outlives leadership terms: each term's scheduler and controllers are attached
while it runs and detached when it ends (a standby instance reports ``corral_leader_is_leader 0``).
It is registered on the API's registry when the leader runs in the API's process, or served by the
leader process on ``--metrics-listen``. ``agent_collector`` reads an agent's work queue, its
reconcile counts and timings, its fence, and its containers' CPU and memory (sampled from
containerd's task metrics by the agent, since a scrape cannot wait on containerd).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from corral.aiokit.eventrecorder import add_metrics as add_event_metrics
from corral.aiokit.histogram import Histogram
from corral.aiokit.metrics import CallbackCollector, LabelValues
from corral.aiokit.processes import RESTARTS

if TYPE_CHECKING:  # types only: a worker process must not load the scheduler and the controllers
    from corral.controllers.base import Controller, Informers
    from corral.roles.agent import Agent
    from corral.scheduler.loop import Scheduler
    from corral.store.informer import Informer


class LeaderMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.collector = CallbackCollector()
        self.registry.register(self.collector)
        self.scheduler: Scheduler | None = None
        self.controllers: Sequence[Controller] = ()
        self.informers: Informers | None = None
        c = self.collector
        c.gauge("corral_leader_is_leader", "1 while this instance runs the scheduler and controllers.",
                lambda: 1.0 if self.scheduler is not None else 0.0)
        c.counter("corral_scheduler_attempts", "Scheduling attempts by result (this term).", self._attempts,
                  labels=("result",))
        c.gauge("corral_scheduler_pending", "Containers waiting for a node.",
                lambda: float(len(self.scheduler._pending)) if self.scheduler else 0.0)
        c.counter("corral_scheduler_events", "Scheduled Events by outcome.", self._events, labels=("outcome",))
        c.gauge("corral_controller_queue_depth", "Keys waiting in each controller's work queue.",
                lambda: {(k.name,): float(len(k.queue)) for k in self.controllers}, labels=("controller",))
        c.counter("corral_controller_reconciles", "Reconciles per controller (this term).",
                  lambda: {(k.name,): float(k.reconciles) for k in self.controllers}, labels=("controller",))
        c.counter("corral_controller_errors", "Reconciles that failed, per controller (this term).",
                  lambda: {(k.name,): float(k.errors) for k in self.controllers}, labels=("controller",))
        c.histogram("corral_controller_reconcile_duration_seconds", "How long one reconcile took, per controller.",
                    lambda: {(k.name,): k.durations for k in self.controllers}, labels=("controller",))
        add_event_metrics(c, lambda: [k.events for k in self.controllers]  # and the scheduler's FailedScheduling
                          + ([self.scheduler.recorder] if self.scheduler is not None else []))
        c.gauge("corral_informer_objects", "Objects in each of the leader's shared informers, by key prefix.",
                lambda: {(p,): float(len(i)) for p, i in self._informers().items()}, labels=("prefix",))
        c.counter("corral_informer_relists", "Relists of each shared informer after its history was compacted.",
                  lambda: {(p,): float(i.relists) for p, i in self._informers().items()}, labels=("prefix",))

    def attach(self, scheduler: Scheduler, controllers: Sequence[Controller], informers: Informers | None = None) -> None:
        self.scheduler, self.controllers, self.informers = scheduler, controllers, informers

    def detach(self) -> None:
        self.scheduler, self.controllers, self.informers = None, (), None

    def _informers(self) -> Mapping[str, Informer[str, Any]]:
        return self.informers.all() if self.informers is not None else {}

    def _attempts(self) -> Mapping[LabelValues, float]:
        s = self.scheduler.stats if self.scheduler else None
        if s is None:
            return {}
        return {("bound",): s.bound, ("conflict",): s.conflicts, ("unschedulable",): s.unschedulable}

    def _events(self) -> Mapping[LabelValues, float]:
        s = self.scheduler.stats if self.scheduler else None
        if s is None:
            return {}
        return {("written",): s.events, ("dropped",): s.events_dropped}


def agent_collector(agent: Agent) -> CallbackCollector:
    c = CallbackCollector()
    c.gauge("corral_agent_queue_depth", "Container keys waiting in the agent's work queue.",
            lambda: float(len(agent.queue)))
    c.counter("corral_agent_syncs", "Container reconciles by result.",
              lambda: {(r,): float(n) for r, n in agent.sync_counts.items()}, labels=("result",))
    c.histogram("corral_agent_sync_duration_seconds", "One container's reconcile (network, storage, "
                "containers, state), start to end.", lambda: {(): agent.sync_durations})
    c.gauge("corral_agent_fenced", "1 while the node is fenced (cut off from the API, its containers stopped).",
            lambda: 1.0 if agent.fence.fenced else 0.0)
    c.counter("corral_child_restarts", "Restarts of a child process (the embedded containerd, the log collector) after it died.",
              lambda: {(name,): float(n) for name, n in RESTARTS.items()}, labels=("child",))
    c.gauge("corral_agent_containers", "Containers bound to this node.", lambda: float(len(agent.reflector.objects)))
    c.gauge("corral_container_cpu_seconds", "CPU time a container's processes used (containerd task metrics).",
            lambda: {k: v[0] for k, v in agent.container_usage.items()}, labels=("namespace", "name"))
    c.gauge("corral_container_memory_bytes", "A container's memory usage (containerd task metrics).",
            lambda: {k: v[1] for k, v in agent.container_usage.items()}, labels=("namespace", "name"))
    add_event_metrics(c, lambda: [agent.events])
    return c


__all__ = ["Histogram", "LeaderMetrics", "agent_collector"]
