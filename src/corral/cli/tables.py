"""kubectl-style tables: the columns each kind shows, human ages, and the column layout.

``columns(info, wide=, all_namespaces=)`` gives the header; ``row(obj, ...)`` one line of cells for
an object. Both are pure functions of the objects and a ``now``, so they are tested without a
server. Cells are left-aligned and separated by three spaces, as ``kubectl get`` prints them;
a missing value is ``<none>``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from corral.model.kinds import KindInfo
from corral.model.resources import (
    Container,
    CronJob,
    DaemonSet,
    Deployment,
    Event,
    Job,
    Namespace,
    NetworkPolicy,
    Node,
    Object,
    PriorityClass,
    Secret,
    Service,
    Volume,
)

NONE = "<none>"
GAP = "   "


@dataclass(frozen=True, slots=True)
class Context:
    """What a row may need beyond its object: the time, and per-node container counts."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    containers_per_node: Mapping[str, int] = field(default_factory=dict)
    endpoints_per_service: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (ns, name) -> ready


def parse_time(ts: str) -> datetime | None:
    if not ts:
        return None
    try:
        t = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def age(ts: str, now: datetime) -> str:
    """``5s``, ``3m``, ``2h``, ``4d``, ``3y``: the largest unit that keeps the number readable."""
    t = parse_time(ts)
    if t is None:
        return NONE
    s = max(0, int((now - t).total_seconds()))
    if s < 120:
        return f"{s}s"
    if s < 120 * 60:
        return f"{s // 60}m"
    if s < 48 * 3600:
        return f"{s // 3600}h"
    if s < 2 * 365 * 86400:
        return f"{s // 86400}d"
    return f"{s // (365 * 86400)}y"


def _or_none(value: object) -> str:
    return str(value) if value not in ("", None) else NONE


def labels_text(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or NONE


# --- per kind --------------------------------------------------------------------------------


def container_status(c: Container) -> str:
    if c.metadata.deletion_timestamp:
        return "Terminating"
    pull = c.status.pull
    if pull is not None and c.status.phase != "Running":  # its node pulls the image (status.pull)
        return f"Pulling:{pull.bytes_done * 100 // pull.bytes_total}%" if pull.bytes_total else "Pulling"
    if c.status.reason and c.status.phase != "Running":
        return c.status.reason
    return c.status.phase


def node_status(n: Node) -> str:
    ready = next((cond for cond in n.status.conditions if cond.type == "Ready"), None)
    status = "Ready" if ready is not None and ready.status == "True" else "NotReady"
    if n.spec.unschedulable:
        status += ",SchedulingDisabled"
    return status


def _container(c: Any, ctx: Context) -> list[str]:
    return [c.metadata.name, container_status(c), _or_none(c.status.node or c.spec.node), _or_none(c.status.ip),
            str(c.status.restart_count), age(c.metadata.creation_timestamp, ctx.now)]


def _node(n: Any, ctx: Context) -> list[str]:
    res = n.status.allocatable if n.status.allocatable.cpu else n.status.capacity
    count = ctx.containers_per_node.get(n.metadata.name, 0)
    limit = f"/{res.containers}" if res.containers else ""
    return [n.metadata.name, node_status(n), _or_none(res.cpu), _or_none(res.memory), f"{count}{limit}",
            age(n.metadata.creation_timestamp, ctx.now)]


def _deployment(d: Any, ctx: Context) -> list[str]:
    return [d.metadata.name, f"{d.status.ready_replicas}/{d.spec.replicas}", str(d.status.updated_replicas),
            str(d.status.available_replicas), age(d.metadata.creation_timestamp, ctx.now)]


def _namespace(ns: Any, ctx: Context) -> list[str]:
    phase = "Terminating" if ns.metadata.deletion_timestamp else ns.status.phase
    return [ns.metadata.name, phase, age(ns.metadata.creation_timestamp, ctx.now)]


def _volume(v: Any, ctx: Context) -> list[str]:
    return [v.metadata.name, v.status.phase, _or_none(v.spec.size), _or_none(v.status.used),
            _or_none(v.status.node or v.spec.node),
            age(v.metadata.creation_timestamp, ctx.now)]


def _network_policy(p: Any, ctx: Context) -> list[str]:
    sel = p.spec.pod_selector
    terms = [f"{e.key} {e.operator} ({','.join(e.values)})" if e.values else f"{e.key} {e.operator}"
             for e in sel.match_expressions]
    selector = ",".join(filter(None, [labels_text(sel.match_labels) if sel.match_labels else "", *terms])) or "<all>"
    return [p.metadata.name, selector, ",".join(p.spec.policy_types) or "Ingress",
            age(p.metadata.creation_timestamp, ctx.now)]


def event_seen(e: Any, now: datetime) -> str:
    """When an Event was last seen; with repeats (its count), how many over how long: ``5s (x3 over 2m)``."""
    s = e.spec
    last = age(s.last_timestamp or s.first_timestamp or e.metadata.creation_timestamp, now)
    if s.count > 1 and s.first_timestamp:
        return f"{last} (x{s.count} over {age(s.first_timestamp, now)})"
    return last


def _event(e: Any, ctx: Context) -> list[str]:
    s = e.spec
    obj = f"{s.involved_object.kind.lower()}/{s.involved_object.name}"
    return [event_seen(e, ctx.now), s.type, s.reason, obj, s.message]


def _secret(s: Any, ctx: Context) -> list[str]:  # names and keys only, never values
    return [s.metadata.name, s.type or "Opaque", ",".join(sorted(s.data)) or NONE, str(len(s.data)),
            age(s.metadata.creation_timestamp, ctx.now)]


def service_ports(s: Service) -> str:
    """``80/TCP``, ``80:30080/TCP`` (with a node port), comma-separated."""
    out = []
    for p in s.spec.ports:
        node = f":{p.node_port}" if p.node_port else ""
        out.append(f"{p.port}{node}/{p.protocol}")
    return ",".join(out) or NONE


def _service(s: Any, ctx: Context) -> list[str]:
    kind = "Headless" if s.spec.cluster_ip == "None" else s.spec.type
    ready = ctx.endpoints_per_service.get((s.metadata.namespace, s.metadata.name), 0)
    return [s.metadata.name, kind, _or_none(s.spec.cluster_ip), service_ports(s), str(ready),
            age(s.metadata.creation_timestamp, ctx.now)]
def _duration(start: str, end: str, now: datetime) -> str:
    """How long a Job ran: from start to end (or now, while it runs)."""
    if not start:
        return NONE
    end_time = parse_time(end) or now
    start_time = parse_time(start)
    return age(start, end_time) if start_time is not None else NONE


def _job(j: Any, ctx: Context) -> list[str]:
    done = next((c for c in j.status.conditions if c.status == "True" and c.type in ("Complete", "Failed")), None)
    status = (done.type if done.type == "Complete" else f"Failed ({done.reason})") if done else "Running"
    return [j.metadata.name, f"{j.status.succeeded}/{j.spec.completions}", status,
            _duration(j.status.start_time, j.status.completion_time or (done.last_transition_time if done else ""),
                      ctx.now), age(j.metadata.creation_timestamp, ctx.now)]


def _cronjob(cj: Any, ctx: Context) -> list[str]:
    s = cj.spec
    return [cj.metadata.name, s.schedule, s.time_zone or NONE, str(s.suspend).lower(), str(len(cj.status.active)),
            age(cj.status.last_schedule_time, ctx.now) if cj.status.last_schedule_time else NONE,
            age(cj.metadata.creation_timestamp, ctx.now)]


def _daemonset(d: Any, ctx: Context) -> list[str]:
    st = d.status
    return [d.metadata.name, str(st.desired_number_scheduled), str(st.current_number_scheduled), str(st.number_ready),
            str(st.updated_number_scheduled), labels_text(d.spec.template.spec.node_selector),
            age(d.metadata.creation_timestamp, ctx.now)]


def _priority_class(p: Any, ctx: Context) -> list[str]:
    return [p.metadata.name, str(p.spec.value), str(p.spec.global_default).lower(), p.spec.preemption_policy,
            age(p.metadata.creation_timestamp, ctx.now)]


@dataclass(frozen=True, slots=True)
class _Table:
    header: tuple[str, ...]
    row: Callable[[Any, Context], list[str]]
    wide_header: tuple[str, ...] = ()
    wide_row: Callable[[Any], list[str]] = lambda _o: []


_TABLES: dict[type, _Table] = {
    Container: _Table(("NAME", "STATUS", "NODE", "IP", "RESTARTS", "AGE"), _container,
                      ("IMAGE",), lambda c: [c.spec.image]),
    Node: _Table(("NAME", "STATUS", "CPU", "MEMORY", "CONTAINERS", "AGE"), _node,
                 ("INTERNAL-IP", "PODCIDR"),
                 lambda n: [next((a.address for a in n.status.addresses if a.type == "InternalIP"), NONE),
                            _or_none(n.spec.pod_cidr)]),
    Deployment: _Table(("NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"), _deployment,
                       ("IMAGE", "SELECTOR"), lambda d: [d.spec.template.spec.image, labels_text(d.spec.selector.match_labels)]),
    Namespace: _Table(("NAME", "STATUS", "AGE"), _namespace),
    Volume: _Table(("NAME", "STATUS", "SIZE", "USED", "NODE", "AGE"), _volume),
    NetworkPolicy: _Table(("NAME", "POD-SELECTOR", "POLICY-TYPES", "AGE"), _network_policy),
    Secret: _Table(("NAME", "TYPE", "KEYS", "DATA", "AGE"), _secret),
    Event: _Table(("LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"), _event),
    Service: _Table(("NAME", "TYPE", "CLUSTER-IP", "PORT(S)", "ENDPOINTS", "AGE"), _service,
                    ("SELECTOR", "AFFINITY"), lambda s: [labels_text(s.spec.selector), s.spec.session_affinity]),
    Job: _Table(("NAME", "COMPLETIONS", "STATUS", "DURATION", "AGE"), _job,
                ("IMAGE",), lambda j: [j.spec.template.spec.image]),
    CronJob: _Table(("NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"), _cronjob),
    DaemonSet: _Table(("NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "NODE SELECTOR", "AGE"), _daemonset,
                      ("IMAGE",), lambda d: [d.spec.template.spec.image]),
    PriorityClass: _Table(("NAME", "VALUE", "GLOBAL-DEFAULT", "PREEMPTION", "AGE"), _priority_class),
}


def columns(info: KindInfo, *, wide: bool = False, all_namespaces: bool = False) -> list[str]:
    table = _TABLES[info.type]
    header = list(table.header) + (list(table.wide_header) if wide else [])
    return (["NAMESPACE"] if all_namespaces and info.namespaced else []) + header


def row(obj: Object, info: KindInfo, ctx: Context, *, wide: bool = False, all_namespaces: bool = False) -> list[str]:
    table = _TABLES[info.type]
    cells = table.row(obj, ctx) + (table.wide_row(obj) if wide else [])
    return ([obj.metadata.namespace] if all_namespaces and info.namespaced else []) + cells


def widths(rows: Sequence[Sequence[str]]) -> list[int]:
    return [max(len(r[i]) for r in rows) for i in range(len(rows[0]))] if rows else []


def format_line(cells: Sequence[str], col_widths: Sequence[int]) -> str:
    """One line, padded to ``col_widths`` (a cell wider than its column just pushes the rest)."""
    out = [c.ljust(w) for c, w in zip(cells[:-1], col_widths, strict=False)]
    return GAP.join([*out, cells[-1]]) if cells else ""


def render(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The header and rows as aligned text, without a trailing newline."""
    table = [list(header), *[list(r) for r in rows]]
    w = widths(table)
    return "\n".join(format_line(r, w) for r in table)
