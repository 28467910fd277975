"""The rollout arithmetic on plain data: bounds, plans, a simulated rollout, revisions, conditions."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from corral.cli.rollout import rollout_state
from corral.controllers import rollout
from corral.controllers.rollout import Counts, Replica, plan, resolve_bounds
from corral.model.lifecycle import parse_time
from corral.model.resources import (
    Condition,
    ContainerSpec,
    ContainerTemplate,
    Deployment,
    DeploymentSpec,
    DeploymentStatus,
    EnvVar,
    ObjectMeta,
    TemplateMeta,
)

_names = itertools.count()


def ok(h: str, n: int) -> list[Replica]:
    return [Replica(name=f"{h}-{next(_names)}", hash=h, created=f"2024-01-01T00:00:{i:02d}Z", scheduled=True,
                    running=True, ready=True, available=True) for i in range(n)]


def starting(h: str, n: int) -> list[Replica]:
    return [Replica(name=f"{h}-{next(_names)}", hash=h, created="2024-01-02T00:00:00Z") for _ in range(n)]


@pytest.mark.parametrize(("replicas", "surge", "unavailable", "expected"), [
    (10, "25%", "25%", (3, 2)),  # surge rounds up, unavailable down
    (4, 1, 0, (1, 0)),
    (1, "25%", "25%", (1, 0)),
    (3, "0%", "10%", (0, 1)),  # both zero: one may be unavailable, else nothing could move
    (20, "50%", 5, (10, 5)),
])
def test_percentages_round_like_kubernetes(replicas: int, surge: int | str, unavailable: int | str,
                                           expected: tuple[int, int]) -> None:
    assert resolve_bounds(replicas, surge, unavailable) == expected


def test_a_deployment_with_too_few_containers_creates_the_rest() -> None:
    assert plan(ok("a", 1), want=3, new_hash="a").create == {"a": 2}


def test_scaling_down_deletes_the_least_useful_containers_first() -> None:
    good = ok("a", 2)
    pending = starting("a", 1)
    step = plan(good + pending, want=1, new_hash="a")
    assert step.delete[0] == pending[0].name and len(step.delete) == 2 and not step.create


def test_failed_containers_are_deleted_and_replaced() -> None:
    failed = Replica(name="x", hash="a", finished=True)
    step = plan([*ok("a", 2), failed], want=3, new_hash="a")
    assert step.delete == ["x"] and step.create == {"a": 1}


def test_terminating_containers_do_not_count() -> None:
    gone = Replica(name="x", hash="a", terminating=True, scheduled=True, running=True)
    assert plan([*ok("a", 2), gone], want=3, new_hash="a").create == {"a": 1}


def test_a_rolling_update_first_surges_then_deletes_old_only_within_availability() -> None:
    step = plan(ok("old", 4), want=4, new_hash="new", surge=1, unavailable=1)
    assert step.create == {"new": 1}
    assert len(step.delete) == 1  # 4 available, 3 needed: one old one may go


def test_with_no_unavailability_allowed_old_containers_wait_for_new_ones_to_be_available() -> None:
    step = plan(ok("old", 3) + starting("new", 1), want=3, new_hash="new", surge=1, unavailable=0)
    assert step.create == {} and step.delete == []


def test_unhealthy_old_containers_go_first_and_cost_no_availability() -> None:
    sick = Replica(name="sick", hash="old", scheduled=True, running=True)
    step = plan([*ok("old", 3), sick], want=4, new_hash="new", surge=0, unavailable=1)
    assert step.delete[0] == "sick" and len(step.delete) == 1  # 3 available = the minimum: no more


def simulate(*, want: int, surge: int, unavailable: int, start: int) -> tuple[int, int, int]:
    """Drive plans to the end; each round the oldest new container gets ready. (min available, max live, rounds)"""
    world = ok("old", start)
    min_available, max_live = want, start
    for rounds in range(1, 200):
        step = plan(world, want=want, new_hash="new", surge=surge, unavailable=unavailable)
        world = [r for r in world if r.name not in step.delete]
        for h, n in step.create.items():
            world += starting(h, n)
        live = [r for r in world if r.live]
        max_live = max(max_live, len(live))
        min_available = min(min_available, sum(1 for r in live if r.available))
        pending = next((r for r in world if not r.available), None)
        if pending is not None:
            world = [r for r in world if r is not pending] + ok(pending.hash, 1)
        if step.empty and all(r.hash == "new" and r.available for r in world) and len(world) == want:
            return min_available, max_live, rounds
    raise AssertionError("the rollout did not finish")


@pytest.mark.parametrize(("want", "surge", "unavailable"), [(4, 1, 1), (4, 1, 0), (4, 0, 1), (20, 5, 5), (3, 2, 0)])
def test_a_simulated_rollout_stays_within_its_bounds_and_finishes(want: int, surge: int, unavailable: int) -> None:
    min_available, max_live, _ = simulate(want=want, surge=surge, unavailable=unavailable, start=want)
    assert min_available >= want - unavailable
    assert max_live <= want + surge


def test_a_new_template_that_never_gets_ready_stalls_without_dropping_below_the_minimum() -> None:
    world = ok("old", 4)
    for _ in range(10):
        step = plan(world, want=4, new_hash="bad", surge=1, unavailable=1)
        world = [r for r in world if r.name not in step.delete]
        for h, n in step.create.items():
            world += starting(h, n)
    assert sum(1 for r in world if r.available) == 3 and len(world) == 5


def test_scaling_down_during_a_rollout_removes_surplus_new_containers() -> None:
    step = plan(ok("old", 1) + ok("new", 4), want=2, new_hash="new", surge=1, unavailable=0)
    assert sum(1 for n in step.delete if n.startswith("new")) == 2


def test_paused_deployments_scale_with_the_newest_live_revision_but_do_not_roll() -> None:
    world = ok("old", 2)
    assert plan(world, want=2, new_hash="new", paused=True, scale_hash="old").empty
    assert plan(world, want=3, new_hash="new", paused=True, scale_hash="old").create == {"old": 1}


def test_recreate_deletes_every_old_container_before_creating_new_ones() -> None:
    old = ok("old", 2)
    assert rollout.plan_recreate(old, want=2, new_hash="new").create == {}
    dying = [Replica(name="d", hash="old", terminating=True)]
    assert rollout.plan_recreate(dying, want=2, new_hash="new").create == {}
    assert rollout.plan_recreate([], want=2, new_hash="new").create == {"new": 2}


def template(value: str) -> ContainerTemplate:
    return ContainerTemplate(metadata=TemplateMeta(labels={"app": "web", "tier": "x"}),
                             spec=ContainerSpec(image="busybox", env=[EnvVar(name="V", value=value)]))


def test_the_template_hash_is_stable_and_ignores_label_order() -> None:
    a = template("1")
    b = template("1")
    b.metadata.labels = {"tier": "x", "app": "web"}
    assert rollout.template_hash(a) == rollout.template_hash(b)
    assert rollout.template_hash(a) != rollout.template_hash(template("2"))
    assert len(rollout.template_hash(a)) == 10


def test_revisions_grow_and_an_old_template_comes_back_with_a_new_number() -> None:
    history, rev, changed = rollout.record_revision([], template("1"), limit=10)
    assert (rev, changed) == (1, True)
    history, rev, changed = rollout.record_revision(history, template("1"), limit=10)
    assert (rev, changed) == (1, False)
    history, rev, _ = rollout.record_revision(history, template("2"), limit=10)
    target = rollout.undo_target(history)
    assert target is not None and target.revision == 1
    history, rev, _ = rollout.record_revision(history, target.template, limit=10)
    assert rev == 3 and [e.revision for e in history] == [2, 3]
    text = rollout.write_history(history)
    assert rollout.read_history({rollout.HISTORY_ANNOTATION: text}) == history


def test_history_keeps_at_most_the_limit_of_old_revisions() -> None:
    history: list[rollout.RevisionEntry] = []
    for i in range(6):
        history, _, _ = rollout.record_revision(history, template(str(i)), limit=2)
    assert [e.revision for e in history] == [4, 5, 6]


NOW = datetime(2024, 1, 1, tzinfo=UTC)


def progressing(conds: list[Condition], before: Counts, after: Counts, *, now: datetime = NOW,
                new_revision: bool = False) -> Condition:
    out = rollout.progressing(conds, name="web", before=before, after=after, want=3, paused=False,
                              new_revision=new_revision, deadline=10, now=now)
    return next(c for c in out if c.type == "Progressing")


def test_progress_deadline_is_exceeded_only_after_that_long_without_progress() -> None:
    start = Counts(replicas=4, updated=1, ready=3, available=3)
    cond = progressing([], start, start, new_revision=True)
    assert cond.status == "True"
    assert progressing([cond], start, start, now=NOW + timedelta(seconds=5)).status == "True"
    later = progressing([cond], start, start, now=NOW + timedelta(seconds=11))
    assert (later.status, later.reason) == ("False", "ProgressDeadlineExceeded")
    moved = progressing([cond], start, Counts(replicas=4, updated=2, ready=3, available=3),
                        now=NOW + timedelta(seconds=9))
    assert moved.reason == "ReplicaSetUpdated" and parse_time(moved.last_update_time) == NOW + timedelta(seconds=9)


def test_a_finished_rollout_is_new_replica_set_available() -> None:
    done = Counts(replicas=3, updated=3, ready=3, available=3)
    assert progressing([], done, done).reason == "NewReplicaSetAvailable"


def status_deployment(*, replicas: int = 3, updated: int = 3, live: int = 3, available: int = 3, paused: bool = False,
                      reason: str = "ReplicaSetUpdated", observed: int = 2) -> Deployment:
    d = Deployment(metadata=ObjectMeta(name="web", generation=2), spec=DeploymentSpec(replicas=replicas, paused=paused))
    d.status = DeploymentStatus(observed_generation=observed, replicas=live, updated_replicas=updated,
                                available_replicas=available,
                                conditions=[Condition(type="Progressing", status="True", reason=reason)])
    return d


@pytest.mark.parametrize(("kwargs", "done", "words"), [
    ({}, True, "successfully rolled out"),
    ({"observed": 1}, None, "to be observed"),
    ({"updated": 1, "live": 4}, None, "1 out of 3 new replicas"),
    ({"live": 4}, None, "1 old replicas are pending termination"),
    ({"available": 2}, None, "2 of 3 updated replicas are available"),
    ({"updated": 1, "reason": "ProgressDeadlineExceeded"}, False, "exceeded its progress deadline"),
    ({"updated": 1, "paused": True}, False, "is paused"),
])
def test_rollout_status_words_each_state_and_fails_only_on_a_deadline_or_a_pause(
        kwargs: dict[str, Any], done: bool | None, words: str) -> None:
    state, message = rollout_state(status_deployment(**kwargs))
    assert state is done and words in message
