"""Priority admission: a container spec's ``priorityClassName`` becomes ``spec.priority`` when it is written.

Kubernetes resolves a pod's priority class once, at admission, so that the scheduler compares plain
integers and never looks a class up per decision. corral does the same for every container spec
the API accepts — a Container's, and the templates of Deployments, Jobs, CronJobs and DaemonSets
(their controllers copy the resolved fields into the containers they make, which reach etcd
without passing the API again):

- a ``priorityClassName`` naming a PriorityClass sets ``priority`` to its ``value`` and
  ``preemptionPolicy`` to its policy; a name that does not exist is refused (422 naming the field);
- no name: the class with ``globalDefault: true`` (if one exists) is applied and named; else the
  priority stays unset (0 to the scheduler);
- a ``priority`` without a class name is refused: it is the server's to set.

Classes are read from the API's PriorityClass watch cache (cluster-scoped, few); a name the cache
does not have yet (a class created a moment ago) is read from etcd before it is refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

from corral.model.errors import FieldError, Invalid
from corral.model.resources import (
    Container,
    ContainerSpec,
    CronJob,
    DaemonSet,
    Deployment,
    Job,
    Object,
    PriorityClass,
)


def container_specs(obj: Object) -> Iterator[tuple[str, ContainerSpec]]:
    """Every container spec of ``obj`` that runs, with its field path."""
    if isinstance(obj, Container):
        yield "spec", obj.spec
    elif isinstance(obj, Deployment | Job | DaemonSet):
        yield "spec.template.spec", obj.spec.template.spec
    elif isinstance(obj, CronJob):
        yield "spec.jobTemplate.spec.template.spec", obj.spec.job_template.spec.template.spec


class PriorityAdmission:
    """Called with each decoded, validated object before it is written; may raise Invalid."""

    def __init__(self, classes: Callable[[], list[PriorityClass]],
                 read: Callable[[str], Awaitable[PriorityClass | None]]) -> None:
        self.classes = classes
        self.read = read

    async def __call__(self, obj: Object) -> None:
        specs = list(container_specs(obj))
        if not specs:
            return
        classes = {c.metadata.name: c for c in self.classes()}
        errors: list[FieldError] = []
        for path, spec in specs:
            name = spec.priority_class_name
            if not name:
                if spec.priority is not None:
                    errors.append(FieldError(f"{path}.priority", "is set by the server from priorityClassName; "
                                             "name a PriorityClass instead (corral get priorityclasses)"))
                    continue
                default = next((c for c in sorted(classes.values(), key=lambda c: -c.spec.value)
                                if c.spec.global_default), None)
                if default is None:
                    continue
                name = spec.priority_class_name = default.metadata.name
            pc = classes.get(name) or await self.read(name)
            if pc is None:
                known = ", ".join(sorted(classes)) or "none yet"
                errors.append(FieldError(f"{path}.priorityClassName",
                                         f"no PriorityClass named {name!r} (there are: {known})"))
                continue
            spec.priority = pc.spec.value
            spec.preemption_policy = pc.spec.preemption_policy
        if errors:
            raise Invalid(f"{errors[0].field}: {errors[0].message}", details=errors)
