"""kubectl-style tables, worked out from objects alone (no server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from corral.cli import tables
from corral.model.kinds import BY_KIND
from corral.model.resources import (
    Condition,
    Container,
    ContainerStatus,
    Node,
    NodeResources,
    NodeSpec,
    NodeStatus,
    ObjectMeta,
    PullLayer,
    PullStatus,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def _ago(**kw: float) -> str:
    return (NOW - timedelta(**kw)).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(("delta", "shown"), [
    ({"seconds": 5}, "5s"), ({"seconds": 119}, "119s"), ({"minutes": 3}, "3m"), ({"hours": 2}, "2h"),
    ({"hours": 47}, "47h"), ({"days": 4}, "4d"), ({"days": 800}, "2y"),
])
def test_ages_use_the_largest_readable_unit(delta: dict[str, float], shown: str) -> None:
    assert tables.age(_ago(**delta), NOW) == shown


def test_an_age_without_a_timestamp_is_none() -> None:
    assert tables.age("", NOW) == "<none>"


def test_a_container_row_shows_where_it_runs_and_a_terminating_one_says_so() -> None:
    c = Container(metadata=ObjectMeta(name="web", namespace="ns1", creation_timestamp=_ago(minutes=3)),
                  status=ContainerStatus(phase="Running", node="n1", ip="10.88.0.7", restart_count=2))
    info = BY_KIND["Container"]
    ctx = tables.Context(now=NOW)
    assert tables.row(c, info, ctx) == ["web", "Running", "n1", "10.88.0.7", "2", "3m"]
    assert tables.row(c, info, ctx, all_namespaces=True)[0] == "ns1"
    c.metadata.deletion_timestamp = _ago(seconds=1)
    assert tables.row(c, info, ctx)[1] == "Terminating"


def test_a_node_is_ready_only_with_a_true_ready_condition_and_shows_cordoning() -> None:
    n = Node(metadata=ObjectMeta(name="n1", creation_timestamp=_ago(days=4)),
             spec=NodeSpec(unschedulable=True),
             status=NodeStatus(conditions=[Condition(type="Ready", status="True")],
                               allocatable=NodeResources(cpu="2", memory="4Gi", containers=110)))
    ctx = tables.Context(now=NOW, containers_per_node={"n1": 3})
    assert tables.row(n, BY_KIND["Node"], ctx) == ["n1", "Ready,SchedulingDisabled", "2", "4Gi", "3/110", "4d"]
    n.status.conditions = [Condition(type="Ready", status="Unknown")]
    n.spec.unschedulable = False
    assert tables.node_status(n) == "NotReady"


def test_columns_line_up_three_spaces_apart() -> None:
    text = tables.render(["NAME", "STATUS"], [["a-long-name", "Running"], ["b", "Pending"]])
    assert text.splitlines() == ["NAME          STATUS", "a-long-name   Running", "b             Pending"]


def test_a_volume_row_shows_its_size_usage_and_node() -> None:
    from corral.model.resources import Volume, VolumeSpec, VolumeStatus

    v = Volume(metadata=ObjectMeta(name="data", creation_timestamp=_ago(minutes=3)), spec=VolumeSpec(size="1Gi"),
               status=VolumeStatus(phase="Bound", node="n1", used="12Mi"))
    info = BY_KIND["Volume"]
    assert tables.columns(info) == ["NAME", "STATUS", "SIZE", "USED", "NODE", "AGE"]
    assert tables.row(v, info, tables.Context(now=NOW)) == ["data", "Bound", "1Gi", "12Mi", "n1", "3m"]


def test_a_network_policy_row_shows_its_selector_and_types() -> None:
    from corral.model.resources import LabelSelector, LabelSelectorRequirement, NetworkPolicy, NetworkPolicySpec

    p = NetworkPolicy(metadata=ObjectMeta(name="db", namespace="ns1", creation_timestamp=_ago(hours=2)),
                      spec=NetworkPolicySpec(pod_selector=LabelSelector(
                          match_labels={"app": "db"},
                          match_expressions=[LabelSelectorRequirement("tier", "In", ["a", "b"])]),
                          policy_types=["Ingress", "Egress"]))
    ctx = tables.Context(now=NOW)
    assert tables.row(p, BY_KIND["NetworkPolicy"], ctx) == ["db", "app=db,tier In (a,b)", "Ingress,Egress", "2h"]
    assert tables.row(NetworkPolicy(metadata=ObjectMeta(name="all")), BY_KIND["NetworkPolicy"], ctx)[1] == "<all>"


def test_a_service_row_shows_its_type_cluster_ip_ports_and_ready_endpoints() -> None:
    from corral.model.resources import Service, ServicePort, ServiceSpec

    info = BY_KIND["Service"]
    svc = Service(metadata=ObjectMeta(name="web", namespace="default", creation_timestamp=_ago(minutes=3)),
                  spec=ServiceSpec(selector={"app": "web"}, type="NodePort", cluster_ip="10.43.0.10",
                                   ports=[ServicePort(port=80, node_port=30080), ServicePort(port=53, protocol="UDP")]))
    ctx = tables.Context(now=NOW, endpoints_per_service={("default", "web"): 3})
    assert tables.columns(info) == ["NAME", "TYPE", "CLUSTER-IP", "PORT(S)", "ENDPOINTS", "AGE"]
    assert tables.row(svc, info, ctx) == ["web", "NodePort", "10.43.0.10", "80:30080/TCP,53/UDP", "3", "3m"]
    headless = Service(metadata=ObjectMeta(name="db", namespace="default"), spec=ServiceSpec(cluster_ip="None"))
    assert tables.row(headless, info, ctx)[1:5] == ["Headless", "None", "<none>", "0"]


def test_a_container_whose_image_is_being_pulled_shows_how_far_the_pull_is() -> None:
    pull = PullStatus(image="reg/app:1", layers=[PullLayer(digest="sha256:a", size=400, done=100)],
                      bytes_done=100, bytes_total=400)
    c = Container(metadata=ObjectMeta(name="web"), status=ContainerStatus(phase="Pending", reason="", pull=pull))
    assert tables.container_status(c) == "Pulling:25%"
    c.status.pull = PullStatus(image="reg/app:1")
    assert tables.container_status(c) == "Pulling"
