"""The scheduler's cache: nodes, and what is bound or assumed on each, as running sums.

Fed by the informers' events (``set_node``/``delete_node``, ``set_container``/``delete_container``)
and by the loop's own decisions (``assume`` before the bind is written, ``forget`` when the CAS
lost; the watch ``confirm``s it when it shows the binding). Every event is O(1) (host ports: the
container's few ports): a container's parsed request is kept per key, and its node's sums are
adjusted by it, never recomputed by walking the node's containers.

What counts on a node: every container whose ``spec.node`` names it (bound by us, or pinned by a
user) until it is Succeeded/Failed or gone, plus the placements this scheduler assumed and whose
binding is in flight. A container without requests counts 0 towards fitting and the scoring
defaults of ``framework`` towards scoring.

A node that disappears while containers still count on it keeps its sums (``exists=False``) and
is not offered to filters; if it comes back, the sums are still right.

``on_change`` is called when capacity may have appeared (a node added or changed in a way that
matters, a container finished or deleted, an assumed placement forgotten): the loop retries its
parked containers then. Heartbeats alone do not call it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from corral.model.resources import Container, Node
from corral.scheduler.framework import ContainerRequest, NodeView

_FINISHED = frozenset({"Succeeded", "Failed"})


@dataclass(slots=True)
class _Placement:
    request: ContainerRequest
    node: str
    assumed: bool
    terminating: bool = False  # deletionTimestamp set: still counted until it is gone (preemption waits)


def _shape(n: NodeView) -> tuple[object, ...]:
    """What a node change must alter to possibly make a parked container fit."""
    return (n.exists, n.ready, n.unschedulable, n.labels, n.taints, n.alloc_cpu, n.alloc_memory, n.alloc_count)


class SchedulerCache:
    def __init__(self, *, on_change: Callable[[], None] | None = None) -> None:
        self._nodes: dict[str, NodeView] = {}
        self._placed: dict[str, _Placement] = {}
        self._listed: list[NodeView] | None = None
        self._on_change = on_change or (lambda: None)
        # for affinity and spreading (scheduler/affinity.py): placed containers by (namespace, label,
        # value), and those with required anti-affinity terms; both stay empty without labels or terms
        self._by_label: dict[tuple[str, str, str], set[str]] = {}
        self._anti_holders: dict[tuple[str, str, str], set[str]] = {}  # by the first pair of each term

    # --- reading -------------------------------------------------------------------------------

    def nodes(self) -> list[NodeView]:
        """The nodes that exist, in a stable order (rebuilt only when membership changes)."""
        if self._listed is None:
            self._listed = [n for _, n in sorted(self._nodes.items()) if n.exists]
        return self._listed

    def node(self, name: str) -> NodeView | None:
        n = self._nodes.get(name)
        return n if n is not None and n.exists else None

    def placement(self, key: str) -> tuple[str, bool] | None:
        """(node, assumed) where ``key`` counts, or None."""
        p = self._placed.get(key)
        return (p.node, p.assumed) if p else None

    def selected(self, namespace: str, selector: tuple[tuple[str, str], ...]) -> Iterator[tuple[ContainerRequest, str]]:
        """Placed containers of ``namespace`` that have every label pair of ``selector``, with their node."""
        sets = [self._by_label.get((namespace, k, v)) for k, v in selector]
        if not sets or any(s is None for s in sets):
            return
        smallest = min((s for s in sets if s is not None), key=len)
        for key in list(smallest):
            p = self._placed.get(key)
            if p is not None and all(pair in p.request.labels for pair in selector):
                yield p.request, p.node

    def anti_affinity_holders(self, namespace: str, labels: tuple[tuple[str, str], ...]
                              ) -> Iterator[tuple[ContainerRequest, str]]:
        """Placed containers with a required anti-affinity term that may select a container with
        ``labels`` in ``namespace`` (each is indexed by one pair of each term's selector)."""
        if not self._anti_holders:
            return
        seen: set[str] = set()
        for k, v in labels:
            for key in self._anti_holders.get((namespace, k, v), ()):
                if key not in seen:
                    seen.add(key)
                    p = self._placed[key]
                    yield p.request, p.node

    def placements(self) -> Iterator[tuple[ContainerRequest, str, bool]]:
        """Every counted container: (request, node, terminating) — for preemption, which is rare."""
        for p in self._placed.values():
            yield p.request, p.node, p.terminating

    def is_assumed(self, key: str) -> bool:
        p = self._placed.get(key)
        return p is not None and p.assumed

    # --- nodes ---------------------------------------------------------------------------------

    def set_node(self, node: Node) -> None:
        name = node.metadata.name
        view = self._nodes.get(name)
        if view is None:
            view = self._nodes[name] = NodeView(name)
            before: tuple[object, ...] = ()
        else:
            before = _shape(view)
        was = view.exists
        view.update_from(node)
        if not was or not before:
            self._listed = None
        if _shape(view) != before:
            self._on_change()

    def delete_node(self, name: str) -> None:
        view = self._nodes.get(name)
        if view is None:
            return
        if view.count:
            view.exists = False
        else:
            del self._nodes[name]
        self._listed = None

    def _view(self, name: str) -> NodeView:
        view = self._nodes.get(name)
        if view is None:  # a container bound to a node not (yet) seen: keep its sums for it
            view = self._nodes[name] = NodeView(name, exists=False)
        return view

    # --- containers ----------------------------------------------------------------------------

    def set_container(self, key: str, c: Container) -> None:
        """A container was added or changed: count it where ``spec.node`` says, or release it."""
        node = c.spec.node
        prev = self._placed.get(key)
        if node and c.status.phase not in _FINISHED:
            request = ContainerRequest.of(key, c)
            terminating = bool(c.metadata.deletion_timestamp)
            if prev is not None:
                if prev.node == node and prev.request == request:
                    prev.assumed = False  # the watch shows what we assumed: confirmed
                    prev.terminating = terminating
                    return
                self._release(key, prev, notify=False)
            self._place(key, request, node, assumed=False)
            self._placed[key].terminating = terminating
            return
        if prev is None:
            return
        if prev.assumed and not node and c.status.phase not in _FINISHED:
            return  # an older version of a container whose binding is in flight
        self._release(key, prev, notify=True)

    def delete_container(self, key: str) -> None:
        prev = self._placed.get(key)
        if prev is not None:
            self._release(key, prev, notify=True)

    def assume(self, request: ContainerRequest, node: str) -> None:
        """Count ``request`` on ``node`` now, before its binding is written."""
        prev = self._placed.get(request.key)
        if prev is not None:
            self._release(request.key, prev, notify=False)
        self._place(request.key, request, node, assumed=True)

    def confirm(self, key: str) -> None:
        p = self._placed.get(key)
        if p is not None:
            p.assumed = False

    def forget(self, key: str) -> None:
        """The binding of an assumed placement was lost: stop counting it."""
        p = self._placed.get(key)
        if p is not None and p.assumed:
            self._release(key, p, notify=True)

    def _place(self, key: str, request: ContainerRequest, node: str, *, assumed: bool) -> None:
        self._placed[key] = _Placement(request, node, assumed)
        self._view(node).add(request)
        for k, v in request.labels:
            self._by_label.setdefault((request.namespace, k, v), set()).add(key)
        if request.placement is not None:
            for term in request.placement.anti_affinity:
                k, v = term.selector[0]
                self._anti_holders.setdefault((request.namespace, k, v), set()).add(key)

    def _release(self, key: str, p: _Placement, *, notify: bool) -> None:
        del self._placed[key]
        request = p.request
        for k, v in request.labels:
            index = (request.namespace, k, v)
            keys = self._by_label.get(index)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_label[index]
        if request.placement is not None:
            for term in request.placement.anti_affinity:
                k, v = term.selector[0]
                index = (request.namespace, k, v)
                holders = self._anti_holders.get(index)
                if holders is not None:
                    holders.discard(key)
                    if not holders:
                        del self._anti_holders[index]
        view = self._nodes.get(p.node)
        if view is not None:
            view.remove(p.request)
            if not view.exists and not view.count:
                del self._nodes[p.node]
        if notify:
            self._on_change()
