"""The scheduler's extension points and the plain data they work on.

Two questions, two tiny interfaces (after kube-scheduler's framework and Nomad's feasible/rank split):

- a ``Filter`` answers "can this node take the container, and if not, why": ``None`` or a reason,
  one of the constants below, which the loop counts into the Pending message
  (``0/3 nodes available: 2 insufficient memory, 1 not ready``);
- a ``Scorer`` answers "how good is this node": an int 0..100, times its ``weight``.

Both are pure functions of a ``ContainerRequest`` (a container parsed once: millicores, bytes, host
ports as a frozenset) and a ``NodeView`` (a node parsed once plus the running sums of what is bound
or assumed on it, kept by ``cache.SchedulerCache``). Nothing here parses a quantity string or
allocates per node in the hot path. A filter may also say, once per container, that it cannot
reject it at all (``applies`` → False: no host ports, no selector); the chain then skips it.

A ``Policy`` is the ordered chain of filters and weighted scorers; ``policy.build_policy`` is the
one constructor.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from corral.model.quantities import QuantityError, parse_cpu, parse_memory
from corral.model.resources import Container, Node

if TYPE_CHECKING:
    from corral.scheduler.affinity import Placement

# --- reasons a filter rejects a node (the words users read in a Pending message) ---------------
NOT_READY = "not ready"
UNSCHEDULABLE = "unschedulable (cordoned)"
INSUFFICIENT_CPU = "insufficient cpu"
INSUFFICIENT_MEMORY = "insufficient memory"
NODE_SELECTOR = "didn't match node selector"
HOST_PORT = "host port conflict"
TAINT = "had untolerated taint"
TOO_MANY = "too many containers"
NODE_NAME = "didn't match the requested node"
NODE_AFFINITY = "didn't match node affinity"
CONTAINER_AFFINITY = "didn't match container affinity"
CONTAINER_ANTI_AFFINITY = "didn't satisfy container anti-affinity"
EXISTING_ANTI_AFFINITY = "anti-affinity of a container there"
TOPOLOGY_SPREAD = "didn't match topology spread constraints"
TOPOLOGY_KEY_MISSING = "lacks the topology key label"

#: The toleration that lets a container onto a cordoned node (DaemonSets add it, as Kubernetes'
#: daemons tolerate ``node.kubernetes.io/unschedulable``).
UNSCHEDULABLE_TAINT_KEY = "node.corral.io/unschedulable"

#: What a container without requests counts as *for scoring only* (kube-scheduler's non-zero
#: defaults), so that many request-less containers still spread. Filters and the sums that
#: decide whether a container fits use the real requests (0 when absent).
DEFAULT_SCORE_CPU = 100  # millicores
DEFAULT_SCORE_MEMORY = 200 * 2**20  # bytes

HostPort = tuple[str, int]  # (protocol, port)


@functools.lru_cache(maxsize=4096)
def cpu_millis(text: str) -> int:
    """Millicores of a CPU quantity; "" or an invalid value count as 0 (the API validates them)."""
    if not text:
        return 0
    try:
        return parse_cpu(text)
    except QuantityError:
        return 0


@functools.lru_cache(maxsize=4096)
def memory_bytes(text: str) -> int:
    """Bytes of a memory quantity; "" or an invalid value count as 0 (the API validates them)."""
    if not text:
        return 0
    try:
        return parse_memory(text)
    except QuantityError:
        return 0


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str
    operator: str
    value: str
    effect: str

    def tolerates(self, taint: TaintView) -> bool:
        if self.effect and self.effect != taint.effect:
            return False
        if self.operator == "Exists":
            return not self.key or self.key == taint.key
        return self.key == taint.key and self.value == taint.value


@dataclass(frozen=True, slots=True)
class TaintView:
    key: str
    value: str
    effect: str


@dataclass(frozen=True, slots=True)
class ContainerRequest:
    """A container as the scheduler sees it, parsed once when it is read."""

    key: str
    cpu: int = 0  # millicores requested (0 when absent)
    memory: int = 0  # bytes requested (0 when absent)
    host_ports: frozenset[HostPort] = frozenset()
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    node: str = ""  # pinned or bound node
    owner: str = ""  # uid of the controlling owner, for spreading replicas
    score_cpu: int = DEFAULT_SCORE_CPU  # cpu, or the scoring default when 0
    score_memory: int = DEFAULT_SCORE_MEMORY  # memory, or the scoring default when 0
    namespace: str = ""
    labels: tuple[tuple[str, str], ...] = ()  # sorted; what other containers' terms select
    placement: Placement | None = None  # affinity and spread terms; None for most containers
    priority: int = 0
    tolerates_cordon: bool = False

    @classmethod
    def of(cls, key: str, c: Container) -> ContainerRequest:
        spec = c.spec
        requests = spec.resources.requests
        cpu, memory = cpu_millis(requests.cpu), memory_bytes(requests.memory)
        owner = next((o.uid for o in c.metadata.owner_references if o.controller), "")
        placement = None
        if spec.affinity is not None or spec.topology_spread_constraints:
            from corral.scheduler.affinity import Placement  # here: affinity imports this module

            placement = Placement.of(spec)
        return cls(
            key=key,
            cpu=cpu,
            memory=memory,
            host_ports=frozenset((p.protocol, p.host_port) for p in spec.ports if p.host_port),
            node_selector=tuple(sorted(spec.node_selector.items())),
            tolerations=tuple(Toleration(t.key, t.operator, t.value, t.effect) for t in spec.tolerations),
            node=spec.node,
            owner=owner,
            score_cpu=cpu or DEFAULT_SCORE_CPU,
            score_memory=memory or DEFAULT_SCORE_MEMORY,
            namespace=c.metadata.namespace,
            labels=tuple(sorted(c.metadata.labels.items())),
            placement=placement,
            priority=spec.priority or 0,
            tolerates_cordon=any(t.key == UNSCHEDULABLE_TAINT_KEY for t in spec.tolerations),
        )


@dataclass(slots=True, eq=False)
class NodeView:
    """A node parsed once, plus running sums of the containers bound or assumed on it.

    The sums change in O(1) per container event (``cache.SchedulerCache``); filters and scorers
    read them and never walk the node's containers.
    """

    name: str
    exists: bool = True
    ready: bool = False
    unschedulable: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[TaintView, ...] = ()  # NoSchedule and NoExecute only
    alloc_cpu: int = 0
    alloc_memory: int = 0
    alloc_count: int = 0  # 0: no limit on the number of containers
    cpu: int = 0  # requested by bound + assumed containers
    memory: int = 0
    count: int = 0
    score_cpu: int = 0  # as above, with the scoring defaults for request-less containers
    score_memory: int = 0
    ports: dict[HostPort, int] = field(default_factory=dict)  # host port -> how many use it
    owners: dict[str, int] = field(default_factory=dict)  # owner uid -> containers here
    plain: bool = False  # Ready, schedulable and untainted (see Filter.passes_plain_nodes)

    def update_from(self, node: Node) -> None:
        self.exists = True
        self.ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
        self.unschedulable = node.spec.unschedulable
        self.labels = dict(node.metadata.labels)
        self.taints = tuple(
            TaintView(t.key, t.value, t.effect) for t in node.spec.taints if t.effect != "PreferNoSchedule"
        )
        self.plain = self.ready and not self.unschedulable and not self.taints
        alloc = node.status.allocatable
        self.alloc_cpu = cpu_millis(alloc.cpu)
        self.alloc_memory = memory_bytes(alloc.memory)
        self.alloc_count = alloc.containers

    def add(self, c: ContainerRequest, sign: int = 1) -> None:
        self.cpu += sign * c.cpu
        self.memory += sign * c.memory
        self.count += sign
        self.score_cpu += sign * c.score_cpu
        self.score_memory += sign * c.score_memory
        for p in c.host_ports:
            n = self.ports.get(p, 0) + sign
            if n > 0:
                self.ports[p] = n
            else:
                self.ports.pop(p, None)
        if c.owner:
            n = self.owners.get(c.owner, 0) + sign
            if n > 0:
                self.owners[c.owner] = n
            else:
                self.owners.pop(c.owner, None)

    def remove(self, c: ContainerRequest) -> None:
        self.add(c, -1)


class Filter(Protocol):
    name: str
    # True when the filter never rejects a *plain* node (Ready, schedulable, no NoSchedule/NoExecute
    # taints: ``NodeView.plain``); the selector then skips it on such nodes, which most nodes are
    passes_plain_nodes: bool

    def applies(self, c: ContainerRequest) -> bool:
        """False when this filter cannot reject ``c`` on any node (the chain skips it for ``c``)."""
        ...

    def filter(self, c: ContainerRequest, n: NodeView) -> str | None:
        """None when ``n`` can take ``c``; else the reason (a constant of this module)."""
        ...


class Scorer(Protocol):
    name: str
    weight: int

    def applies(self, c: ContainerRequest) -> bool:
        """False when this scorer would give ``c`` the same score on every node (it is skipped)."""
        ...

    def score(self, c: ContainerRequest, n: NodeView) -> int:
        """How good ``n`` is for ``c``: 0..100."""
        ...


@dataclass(frozen=True, slots=True)
class Policy:
    """An ordered chain: filters (cheapest and most selective first), then weighted scorers."""

    name: str
    filters: Sequence[Filter]
    scorers: Sequence[Scorer]
