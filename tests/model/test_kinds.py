"""The kinds as typed constants: one KindInfo per kind, the same object however it is reached."""

from __future__ import annotations

from corral.model import kinds
from corral.model.kinds import BY_KIND, BY_PLURAL, CONTAINERS, CRONJOBS, JOBS, KINDS, OWNERS, Kind, lookup
from corral.model.resources import Container, CronJob, DaemonSet, Deployment, Job
from corral.model.strategies import kind_of


def test_every_kind_is_a_named_constant_and_each_constant_is_the_one_in_kinds() -> None:
    constants = {name: v for name, v in vars(kinds).items() if isinstance(v, Kind)}
    assert set(constants.values()) == set(KINDS)
    for name, info in constants.items():
        assert name == info.plural.upper()
        assert BY_KIND[info.kind] is info and BY_PLURAL[info.plural] is info


def test_a_kind_reached_by_any_name_an_object_or_its_class_is_the_constant_itself() -> None:
    for word in ("Container", "containers", "container", "ctr", "c"):
        assert lookup(word) is CONTAINERS
    assert lookup("cj") is CRONJOBS and lookup("jobs") is JOBS
    assert kind_of(Container()) is CONTAINERS and kind_of(CronJob) is CRONJOBS


def test_the_owner_kinds_are_those_whose_controllers_own_objects() -> None:
    assert {info.type for info in OWNERS} == {Deployment, Job, CronJob, DaemonSet}
