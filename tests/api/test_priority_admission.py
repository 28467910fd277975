"""Priority admission without a server: classes resolved into specs, defaults, refusals, deleted classes."""

from __future__ import annotations

import pytest

from corral.api.priority import PriorityAdmission
from corral.model.errors import Invalid
from corral.model.resources import (
    Container,
    ContainerSpec,
    ContainerTemplate,
    Deployment,
    DeploymentSpec,
    ObjectMeta,
    PriorityClass,
    PriorityClassSpec,
)


def admission(*classes: PriorityClass) -> PriorityAdmission:
    async def read(_name: str) -> PriorityClass | None:
        return None

    return PriorityAdmission(lambda: list(classes), read)


CRITICAL = PriorityClass(metadata=ObjectMeta(name="critical"),
                         spec=PriorityClassSpec(value=1000, preemption_policy="Never"))
DEFAULT = PriorityClass(metadata=ObjectMeta(name="normal"), spec=PriorityClassSpec(value=5, global_default=True))


def ctr(**spec: object) -> Container:
    return Container(metadata=ObjectMeta(name="c"), spec=ContainerSpec(image="i", **spec))  # type: ignore[arg-type]


async def test_a_named_class_sets_the_priority_and_policy_of_containers_and_templates() -> None:
    c = ctr(priority_class_name="critical")
    await admission(CRITICAL)(c, True)
    assert (c.spec.priority, c.spec.preemption_policy) == (1000, "Never")
    d = Deployment(metadata=ObjectMeta(name="d"), spec=DeploymentSpec(
        template=ContainerTemplate(spec=ContainerSpec(image="i", priority_class_name="critical"))))
    await admission(CRITICAL)(d, True)
    assert d.spec.template.spec.priority == 1000


async def test_the_global_default_applies_when_no_class_is_named() -> None:
    c = ctr()
    await admission(CRITICAL, DEFAULT)(c, True)
    assert (c.spec.priority_class_name, c.spec.priority) == ("normal", 5)
    plain = ctr()
    await admission(CRITICAL)(plain, True)
    assert plain.spec.priority is None


async def test_an_unknown_class_and_a_hand_set_priority_are_refused_naming_the_field() -> None:
    with pytest.raises(Invalid) as e:
        await admission(CRITICAL)(ctr(priority_class_name="critcal"), True)
    assert [d.field for d in e.value.details] == ["spec.priorityClassName"]
    with pytest.raises(Invalid) as e:
        await admission(CRITICAL)(ctr(priority=10**9), True)
    assert [d.field for d in e.value.details] == ["spec.priority"]


async def test_an_update_keeps_a_resolved_priority_whose_class_was_deleted() -> None:
    c = ctr(priority_class_name="critical", priority=1000)
    await admission()(c, False)  # e.g. the agent removing its finalizer
    assert c.spec.priority == 1000
    with pytest.raises(Invalid):
        await admission()(ctr(priority_class_name="critical", priority=1000), True)
