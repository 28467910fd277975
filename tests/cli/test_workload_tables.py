"""The tables of Jobs, CronJobs, DaemonSets and PriorityClasses, worked out from objects alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from corral.cli import tables
from corral.model.kinds import BY_KIND
from corral.model.resources import (
    Condition,
    CronJob,
    CronJobSpec,
    CronJobStatus,
    DaemonSet,
    DaemonSetStatus,
    Job,
    JobSpec,
    JobStatus,
    ObjectMeta,
    ObjectReference,
    PriorityClass,
    PriorityClassSpec,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def ago(**kw: float) -> str:
    return (NOW - timedelta(**kw)).isoformat().replace("+00:00", "Z")


def row(obj: object) -> list[str]:
    info = BY_KIND[obj.kind]  # type: ignore[attr-defined]
    return tables.row(obj, info, tables.Context(now=NOW))  # type: ignore[arg-type]


def test_a_job_row_shows_completions_status_and_how_long_it_ran() -> None:
    meta = ObjectMeta(name="resize", creation_timestamp=ago(minutes=10))
    running = Job(metadata=meta, spec=JobSpec(completions=5), status=JobStatus(succeeded=2, start_time=ago(seconds=90)))
    assert row(running) == ["resize", "2/5", "Running", "90s", "10m"]
    failed = Job(metadata=meta, spec=JobSpec(completions=5), status=JobStatus(
        succeeded=1, start_time=ago(minutes=9),
        conditions=[Condition(type="Failed", status="True", reason="BackoffLimitExceeded",
                              last_transition_time=ago(minutes=6))]))
    assert row(failed) == ["resize", "1/5", "Failed (BackoffLimitExceeded)", "3m", "10m"]
    assert tables.columns(BY_KIND["Job"]) == ["NAME", "COMPLETIONS", "STATUS", "DURATION", "AGE"]


def test_cronjob_daemonset_and_priorityclass_rows() -> None:
    cj = CronJob(metadata=ObjectMeta(name="nightly", creation_timestamp=ago(days=3)),
                 spec=CronJobSpec(schedule="30 2 * * *", time_zone="Europe/Paris"),
                 status=CronJobStatus(active=[ObjectReference(name="nightly-1")], last_schedule_time=ago(hours=5)))
    assert row(cj) == ["nightly", "30 2 * * *", "Europe/Paris", "false", "1", "5h", "3d"]
    ds = DaemonSet(metadata=ObjectMeta(name="logs", creation_timestamp=ago(hours=1)), status=DaemonSetStatus(
        desired_number_scheduled=3, current_number_scheduled=3, number_ready=2, updated_number_scheduled=1))
    assert row(ds) == ["logs", "3", "3", "2", "1", "<none>", "60m"]
    pc = PriorityClass(metadata=ObjectMeta(name="critical", creation_timestamp=ago(days=1)),
                       spec=PriorityClassSpec(value=1000, global_default=True))
    assert row(pc) == ["critical", "1000", "true", "PreemptLowerPriority", "24h"]
