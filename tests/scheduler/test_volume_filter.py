"""A container that mounts a named Volume fits only the node the Volume is bound to."""

from __future__ import annotations

from corral.model.resources import (
    Container,
    ContainerSpec,
    ObjectMeta,
    Volume,
    VolumeSource,
    VolumeSpec,
    VolumeStatus,
)
from corral.scheduler.algorithm import Selector
from corral.scheduler.framework import ContainerRequest, NodeView
from corral.scheduler.policy import build_policy
from corral.scheduler.volumes import VolumeNode, volume_bound_reason, volume_filter
from tests.scheduler.helpers import make_node


def mounting(*volumes: str, namespace: str = "default") -> ContainerRequest:
    spec = ContainerSpec(image="busybox", volumes=[VolumeSource(name=f"v{i}", volume=v) for i, v in enumerate(volumes)])
    return ContainerRequest.of("k", Container(metadata=ObjectMeta(name="c", namespace=namespace), spec=spec))


def volume(name: str, *, node: str = "", pinned: str = "", namespace: str = "default") -> Volume:
    return Volume(metadata=ObjectMeta(name=name, namespace=namespace), spec=VolumeSpec(node=pinned),
                  status=VolumeStatus(phase="Bound" if node else "Pending", node=node))


def view(name: str) -> NodeView:
    v = NodeView(name)
    v.update_from(make_node(name))
    return v


def test_a_container_without_named_volumes_is_not_filtered_at_all() -> None:
    f = VolumeNode()
    f.set_volume(volume("data", node="n1"))
    assert not f.applies(mounting())


def test_a_bound_volume_rejects_every_other_node_with_its_reason() -> None:
    f = VolumeNode()
    f.set_volume(volume("data", node="n2"))
    c = mounting("data")
    assert f.applies(c)
    assert f.filter(c, view("n2")) is None
    assert f.filter(c, view("n1")) == volume_bound_reason("default", "data", "n2") == "volume default/data is bound to node n2"


def test_an_unbound_volume_fits_every_node_and_spec_node_binds_before_status() -> None:
    f = VolumeNode()
    f.set_volume(volume("data"))
    assert f.filter(mounting("data"), view("n1")) is None
    f.set_volume(volume("data", pinned="n3"))
    assert f.filter(mounting("data"), view("n1")) == "volume default/data is bound to node n3"


def test_the_same_name_in_another_namespace_is_another_volume() -> None:
    f = VolumeNode()
    f.set_volume(volume("data", node="n2", namespace="other"))
    assert f.filter(mounting("data"), view("n1")) is None


def test_a_forgotten_volume_no_longer_binds() -> None:
    f = VolumeNode()
    f.set_volume(volume("data", node="n2"))
    f.forget_volume("default", "data")
    assert f.filter(mounting("data"), view("n1")) is None


def test_the_policy_carries_the_filter_and_the_selector_places_on_the_volume_node_or_nowhere() -> None:
    policy = build_policy()
    f = volume_filter(policy)
    assert f is not None
    f.set_volume(volume("data", node="n2"))
    nodes = [view("n1"), view("n2"), view("n3")]
    selector = Selector(policy)
    assert selector.select(mounting("data"), nodes).node == "n2"
    decision = selector.select(mounting("data"), [view("n1"), view("n3")])  # its node is gone
    assert decision.node is None
    assert decision.message == "0/2 nodes available: 2 volume default/data is bound to node n2"
