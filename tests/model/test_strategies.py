"""The kinds' write strategies as pure functions: what a create, update, status write, delete and
binding may do (``model/strategies.py``)."""

from __future__ import annotations

import msgspec
import pytest

from corral.model.errors import Forbidden
from corral.model.kinds import BY_KIND, KINDS
from corral.model.lifecycle import AGENT_FINALIZER, NAMESPACE_FINALIZER, ORPHAN_FINALIZER
from corral.model.resources import (
    Condition,
    Container,
    ContainerSpec,
    ContainerStatus,
    Deployment,
    DeploymentStatus,
    Namespace,
    Node,
    NodeAddress,
    NodeStatus,
    ObjectMeta,
    Secret,
    Volume,
)
from corral.model.strategies import CONTAINERS, STRATEGIES, kind_of, removable, strategy_for

DEPLOYMENTS = strategy_for(BY_KIND["Deployment"])


def stored_container(**spec: object) -> Container:
    c = Container(metadata=ObjectMeta(name="web", namespace="default"), spec=ContainerSpec(image="busybox", **spec))  # type: ignore[arg-type]
    CONTAINERS.prepare_for_create(c)
    c.metadata.resource_version = "7"
    c.status = ContainerStatus(phase="Running", node="n1")
    return c


def copy(c: Container) -> Container:
    return msgspec.json.decode(msgspec.json.encode(c), type=Container)


def test_every_kind_has_a_strategy_and_every_object_names_its_kind() -> None:
    assert set(STRATEGIES) == set(KINDS)
    for info in KINDS:
        assert strategy_for(info).info is info
        assert kind_of(info.type) is info
        assert kind_of(info.type()) is info


# --- create ---------------------------------------------------------------------------------------


def test_a_create_stamps_identity_and_clears_what_only_the_server_writes() -> None:
    c = Container(metadata=ObjectMeta(name="web", uid="mine", generation=9, deletion_timestamp="2020-01-01T00:00:00Z",
                                      resource_version="3"),
                  spec=ContainerSpec(image="busybox"), status=ContainerStatus(phase="Running"))
    CONTAINERS.prepare_for_create(c)
    meta = c.metadata
    assert meta.uid and meta.uid != "mine"
    assert meta.creation_timestamp.endswith("Z")
    assert (meta.generation, meta.deletion_timestamp, meta.resource_version) == (1, "", "")
    assert c.status == ContainerStatus()  # a status subresource: the status is the agents', not the creator's
    assert meta.finalizers == [AGENT_FINALIZER]


def test_a_node_keeps_the_status_its_agent_registers_it_with() -> None:
    n = Node(metadata=ObjectMeta(name="n1"), status=NodeStatus(addresses=[NodeAddress(type="InternalIP", address="10.0.0.1")]))
    strategy_for(BY_KIND["Node"]).prepare_for_create(n)
    assert n.status.addresses[0].address == "10.0.0.1"


def test_a_new_namespace_is_active_and_carries_its_finalizer() -> None:
    ns = Namespace(metadata=ObjectMeta(name="team"))
    strategy_for(BY_KIND["Namespace"]).prepare_for_create(ns)
    assert ns.status.phase == "Active"
    assert ns.metadata.finalizers == [NAMESPACE_FINALIZER]


# --- update ---------------------------------------------------------------------------------------


def test_the_generation_goes_up_on_a_spec_change_only() -> None:
    current = stored_container()
    relabelled = copy(current)
    relabelled.metadata.labels = {"app": "web"}
    CONTAINERS.prepare_for_update(relabelled, current)
    assert relabelled.metadata.generation == 1
    changed = copy(current)
    changed.spec.image = "busybox:2"
    CONTAINERS.prepare_for_update(changed, current)
    assert changed.metadata.generation == 2


def test_an_update_carries_over_identity_deletion_and_the_status_it_may_not_write() -> None:
    current = stored_container()
    current.metadata.deletion_timestamp = "2026-01-01T00:00:00.000000Z"
    current.metadata.deletion_grace_period_seconds = 3
    sent = copy(current)
    sent.metadata.uid = "forged"
    sent.metadata.creation_timestamp = "1999-01-01T00:00:00Z"
    sent.metadata.deletion_timestamp = ""
    sent.metadata.deletion_grace_period_seconds = None
    sent.metadata.labels = {"x": "y"}
    sent.status = ContainerStatus(phase="Failed")
    CONTAINERS.prepare_for_update(sent, current)
    assert (sent.metadata.uid, sent.metadata.creation_timestamp) == (current.metadata.uid, current.metadata.creation_timestamp)
    assert sent.metadata.deletion_timestamp == current.metadata.deletion_timestamp
    assert sent.metadata.deletion_grace_period_seconds == 3
    assert sent.status.phase == "Running"  # the status is written through /status only
    assert sent.metadata.labels == {"x": "y"}  # what the writer owns goes through


def test_a_kind_without_a_status_subresource_takes_the_status_an_update_sends() -> None:
    strategy = strategy_for(BY_KIND["Namespace"])
    current = Namespace(metadata=ObjectMeta(name="team"))
    strategy.prepare_for_create(current)
    sent = msgspec.structs.replace(current, status=msgspec.structs.replace(current.status, phase="Terminating"))
    strategy.prepare_for_update(sent, current)
    assert sent.status.phase == "Terminating"


def test_the_spec_of_an_object_being_deleted_cannot_change_but_its_metadata_can() -> None:
    current = stored_container()
    current.metadata.deletion_timestamp = "2026-01-01T00:00:00.000000Z"
    changed = copy(current)
    changed.spec.image = "other"
    with pytest.raises(Forbidden, match="being deleted"):
        CONTAINERS.prepare_for_update(changed, current)
    released = copy(current)
    released.metadata.finalizers = []
    CONTAINERS.prepare_for_update(released, current)
    assert removable(released)


# --- status ---------------------------------------------------------------------------------------


def test_a_status_write_changes_the_status_and_nothing_else() -> None:
    current = Deployment(metadata=ObjectMeta(name="d", namespace="default", labels={"a": "b"}, generation=4))
    DEPLOYMENTS.prepare_for_create(current)
    before_meta, before_spec = msgspec.json.encode(current.metadata), msgspec.json.encode(current.spec)
    written = DEPLOYMENTS.prepare_for_status(current, DeploymentStatus(replicas=3, observed_generation=1))
    assert written.status.replicas == 3
    assert msgspec.json.encode(written.metadata) == before_meta
    assert msgspec.json.encode(written.spec) == before_spec


# --- delete ---------------------------------------------------------------------------------------


def test_finalizers_hold_a_delete_until_they_are_cleared() -> None:
    v = Volume(metadata=ObjectMeta(name="data", namespace="default", finalizers=["example.com/keep"]))
    strategy = strategy_for(BY_KIND["Volume"])
    assert strategy.prepare_for_delete(v, grace=5) is False
    assert v.metadata.deletion_timestamp and v.metadata.deletion_grace_period_seconds == 5
    assert not removable(v)
    v.metadata.finalizers = []
    assert removable(v)
    assert strategy_for(BY_KIND["Secret"]).prepare_for_delete(Secret(metadata=ObjectMeta(name="s"))) is True


def test_a_container_never_bound_goes_at_once_and_a_bound_one_waits_for_its_agent() -> None:
    unbound = stored_container()
    assert CONTAINERS.prepare_for_delete(unbound) is True
    bound = stored_container(node="n1")
    assert CONTAINERS.prepare_for_delete(bound) is False
    assert bound.metadata.finalizers == [AGENT_FINALIZER] and bound.metadata.deletion_timestamp


def test_an_orphaning_delete_holds_owner_kinds_only() -> None:
    d = Deployment(metadata=ObjectMeta(name="d", namespace="default"))
    assert DEPLOYMENTS.prepare_for_delete(d, orphan=True) is False
    assert d.metadata.finalizers == [ORPHAN_FINALIZER]
    s = Secret(metadata=ObjectMeta(name="s", namespace="default"))
    assert strategy_for(BY_KIND["Secret"]).prepare_for_delete(s, orphan=True) is True


def test_a_namespace_being_deleted_is_terminating_and_waits_for_the_namespace_controller() -> None:
    ns = Namespace(metadata=ObjectMeta(name="old"))  # made before namespaces had their finalizer
    assert strategy_for(BY_KIND["Namespace"]).prepare_for_delete(ns) is False
    assert ns.status.phase == "Terminating"
    assert ns.metadata.finalizers == [NAMESPACE_FINALIZER]


# --- binding --------------------------------------------------------------------------------------


def test_a_binding_places_the_container_without_counting_as_a_spec_change() -> None:
    c = stored_container()
    c.status = ContainerStatus(reason="Unschedulable", message="0/3 nodes fit", nominated_node="n2",
                               conditions=[Condition(type="Scheduled", status="False", reason="Unschedulable"),
                                           Condition(type="Other", status="True")])
    before = msgspec.json.encode(c)
    bound = CONTAINERS.bind(c, "n1", now="2026-01-01T00:00:00.000000Z")
    assert msgspec.json.encode(c) == before  # the informer's object is never changed
    assert (bound.spec.node, bound.status.node, bound.status.phase) == ("n1", "n1", "Scheduled")
    assert (bound.status.reason, bound.status.message, bound.status.nominated_node) == ("", "", "")
    assert [(x.type, x.status) for x in bound.status.conditions] == [("Other", "True"), ("Scheduled", "True")]
    assert bound.metadata.generation == c.metadata.generation
