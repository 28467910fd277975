"""Each filter says why a node cannot take a container, or lets it pass."""

from __future__ import annotations

from corral.model.resources import Taint, Toleration
from corral.scheduler import filters
from corral.scheduler.framework import (
    HOST_PORT,
    INSUFFICIENT_CPU,
    INSUFFICIENT_MEMORY,
    NODE_NAME,
    NODE_SELECTOR,
    NOT_READY,
    TAINT,
    TOO_MANY,
    UNSCHEDULABLE,
    ContainerRequest,
    NodeView,
)
from tests.scheduler.helpers import make_container, make_node


def view(**kw: object) -> NodeView:
    v = NodeView("n1")
    v.update_from(make_node("n1", **kw))  # type: ignore[arg-type]
    return v


def request(**kw: object) -> ContainerRequest:
    c = make_container("c", **kw)  # type: ignore[arg-type]
    return ContainerRequest.of("k", c)


def test_a_node_that_is_not_ready_is_rejected_as_not_ready() -> None:
    assert filters.NodeReady().filter(request(), view(ready=False)) == NOT_READY
    assert filters.NodeReady().filter(request(), view()) is None


def test_a_cordoned_node_is_rejected_as_unschedulable() -> None:
    assert filters.NodeSchedulable().filter(request(), view(unschedulable=True)) == UNSCHEDULABLE
    assert filters.NodeSchedulable().filter(request(), view()) is None


def test_requests_must_fit_allocatable_minus_what_is_already_counted() -> None:
    n = view(cpu="1", memory="1Gi")
    fit = filters.ResourcesFit()
    assert fit.filter(request(cpu="600m", memory="512Mi"), n) is None
    n.add(request(cpu="600m", memory="100Mi"))
    assert fit.filter(request(cpu="600m"), n) == INSUFFICIENT_CPU
    assert fit.filter(request(cpu="400m", memory="1000Mi"), n) == INSUFFICIENT_MEMORY
    assert fit.filter(request(cpu="400m", memory="924Mi"), n) is None


def test_a_container_without_requests_is_never_rejected_for_resources() -> None:
    assert not filters.ResourcesFit().applies(request())
    assert filters.ResourcesFit().filter(request(), view(cpu="0", memory="0")) is None


def test_node_selector_must_match_every_label() -> None:
    sel = filters.NodeSelector()
    n = view(labels={"disk": "ssd", "zone": "a"})
    assert sel.filter(request(node_selector={"disk": "ssd"}), n) is None
    assert sel.filter(request(node_selector={"disk": "ssd", "zone": "b"}), n) == NODE_SELECTOR
    assert not sel.applies(request())


def test_a_used_host_port_conflicts_only_for_the_same_protocol_and_port() -> None:
    ports = filters.HostPorts()
    n = view()
    n.add(request(host_port=8080))
    assert ports.filter(request(host_port=8080), n) == HOST_PORT
    assert ports.filter(request(host_port=8081), n) is None
    n.remove(request(host_port=8080))
    assert ports.filter(request(host_port=8080), n) is None


def test_a_taint_without_a_matching_toleration_rejects() -> None:
    n = view(taints=[Taint(key="gpu", value="yes")])
    taints = filters.TaintToleration()
    assert taints.filter(request(), n) == TAINT
    c = make_container("c")
    c.spec.tolerations = [Toleration(key="gpu", operator="Exists")]
    assert taints.filter(ContainerRequest.of("k", c), n) is None


def test_the_container_count_limit_applies_when_allocatable_sets_one() -> None:
    n = view(containers=1)
    count = filters.ContainerCount()
    assert count.filter(request(), n) is None
    n.add(request())
    assert count.filter(request(), n) == TOO_MANY
    assert count.filter(request(), view()) is None  # 0: no limit


def test_a_pinned_container_fits_only_its_node() -> None:
    assert filters.NodeName().filter(request(node="n2"), view()) == NODE_NAME
    assert filters.NodeName().filter(request(node="n1"), view()) is None
