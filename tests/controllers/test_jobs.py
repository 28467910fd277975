"""The Job controller's arithmetic, without I/O: counting containers, the back-off, the container it builds."""

from __future__ import annotations

from corral.controllers.jobs import JOB_NAME_LABEL, backoff_delay, build_container, count
from corral.model.resources import (
    Container,
    ContainerSpec,
    ContainerStatus,
    ContainerTemplate,
    Job,
    JobSpec,
    ObjectMeta,
    TemplateMeta,
)


def ctr(name: str, phase: str, *, restarts: int = 0, policy: str = "Never", finished: str = "",
        deleting: bool = False) -> Container:
    return Container(
        metadata=ObjectMeta(name=name, creation_timestamp="2026-01-01T00:00:00Z",
                            deletion_timestamp="2026-01-01T00:01:00Z" if deleting else ""),
        spec=ContainerSpec(image="i", restart_policy=policy),  # type: ignore[arg-type]
        status=ContainerStatus(phase=phase, restart_count=restarts, finished_at=finished),  # type: ignore[arg-type]
    )


def test_the_back_off_doubles_from_its_base_up_to_six_minutes() -> None:
    assert [backoff_delay(n, base=10, cap=360) for n in range(0, 8)] == [0, 10, 20, 40, 80, 160, 320, 360]
    assert backoff_delay(500, base=10, cap=360) == 360


def test_counting_sorts_containers_and_counts_on_failure_restarts_as_failures() -> None:
    counts = count([
        ctr("a", "Succeeded"), ctr("b", "Failed", finished="2026-01-01T00:00:05Z"),
        ctr("c", "Running"), ctr("d", "Running", deleting=True),
        ctr("e", "Running", restarts=2, policy="OnFailure", finished="2026-01-01T00:00:09Z"),
    ])
    assert [c.metadata.name for c in counts.active] == ["c", "e"]
    assert (counts.succeeded, counts.failed) == (1, 3)
    assert counts.last_failure is not None and counts.last_failure.second == 9


def test_a_jobs_container_has_its_template_the_job_label_and_the_owner() -> None:
    job = Job(metadata=ObjectMeta(name="resize", namespace="ns", uid="u1"), spec=JobSpec(
        template=ContainerTemplate(metadata=TemplateMeta(labels={"app": "r"}),
                                   spec=ContainerSpec(image="i", restart_policy="Never"))))
    c = build_container(job)
    assert c.metadata.name.startswith("resize-") and len(c.metadata.name) == len("resize-") + 5
    assert c.metadata.labels == {"app": "r", JOB_NAME_LABEL: "resize"}
    ref = c.metadata.owner_references[0]
    assert (ref.kind, ref.name, ref.uid, ref.controller) == ("Job", "resize", "u1", True)
    assert c.spec.restart_policy == "Never" and c.metadata.namespace == "ns"
