"""Taints by condition, without I/O: DiskPressure=True adds the taint, anything else takes it away."""

from __future__ import annotations

from corral.controllers.nodeconditions import DISK_PRESSURE_TAINT, wanted_taints
from corral.model.resources import Condition, Node, NodeSpec, NodeStatus, ObjectMeta, Taint

OTHER = Taint(key="dedicated", value="gpu", effect="NoSchedule")


def node(pressure: str | None, *taints: Taint) -> Node:
    conditions = [Condition(type="Ready", status="True")]
    if pressure is not None:
        conditions.append(Condition(type="DiskPressure", status=pressure))
    return Node(metadata=ObjectMeta(name="n"), spec=NodeSpec(taints=list(taints)), status=NodeStatus(conditions=conditions))


def test_disk_pressure_adds_the_taint_once_and_keeps_the_others() -> None:
    pressure = Taint(key=DISK_PRESSURE_TAINT, effect="NoSchedule")
    assert wanted_taints(node("True", OTHER)) == [OTHER, pressure]
    assert wanted_taints(node("True", OTHER, pressure)) == [OTHER, pressure]


def test_no_pressure_or_no_condition_takes_the_taint_away() -> None:
    pressure = Taint(key=DISK_PRESSURE_TAINT, effect="NoSchedule")
    assert wanted_taints(node("False", pressure, OTHER)) == [OTHER]
    assert wanted_taints(node(None, pressure)) == []
