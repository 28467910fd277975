"""Workload policy at admission: the namespace's security level, as Kubernetes' Pod Security Standards.

A namespace's label ``security.corral.io/level`` chooses the level of the workloads in it:

- ``privileged`` — anything goes (what an admin may always do).
- ``baseline`` (the default, label absent) — no known privilege escalation: no ``privileged``
  container, no ``hostPath`` volume, no hostPort below 1024, no capability added beyond the
  baseline list (``AUDIT_WRITE CHOWN DAC_OVERRIDE FOWNER FSETID KILL MKNOD NET_BIND_SERVICE
  SETFCAP SETGID SETPCAP SETUID SYS_CHROOT``), no ``Unconfined`` seccomp profile.
- ``restricted`` — baseline, and: ``runAsNonRoot: true`` (and no ``runAsUser: 0``),
  ``capabilities.drop`` contains ``ALL`` and only ``NET_BIND_SERVICE`` is added,
  ``allowPrivilegeEscalation`` is not true, volumes only ``emptyDir``, ``volume`` and ``secret``.

Checked for Containers and for the templates of Deployments, Jobs, CronJobs and DaemonSets on create and update (``admit``) by an
``edit`` token — the one non-admin role that writes workloads (an admin's workload is trusted:
hostPath keeps working for admins in any namespace; view and join tokens write nothing). A violation is a 403 whose details name every failing field and whose message names
the level and the namespace. Who may write in the namespace at all is ``authz``'s business.
"""

from __future__ import annotations

from typing import Literal

from corral.api.auth import Identity
from corral.model.errors import FieldError, Forbidden, Invalid
from corral.model.resources import Container, ContainerSpec, CronJob, DaemonSet, Deployment, Job, Namespace, Object
from corral.runtime.security import capability_name

LEVEL_LABEL = "security.corral.io/level"
Level = Literal["privileged", "baseline", "restricted"]
LEVELS: tuple[Level, ...] = ("privileged", "baseline", "restricted")
DEFAULT_LEVEL: Level = "baseline"
PRIVILEGED_PORTS_BELOW = 1024

BASELINE_CAPABILITIES = frozenset(
    f"CAP_{c}" for c in ["AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"])


def level_of(namespace: Namespace | None) -> Level:
    value = namespace.metadata.labels.get(LEVEL_LABEL, DEFAULT_LEVEL) if namespace is not None else DEFAULT_LEVEL
    return value if value in LEVELS else DEFAULT_LEVEL


def level_label_problems(namespace: Namespace) -> list[FieldError]:
    value = namespace.metadata.labels.get(LEVEL_LABEL)
    if value is not None and value not in LEVELS:
        return [FieldError(f"metadata.labels.{LEVEL_LABEL}", f"must be one of {', '.join(LEVELS)}")]
    return []


def baseline_problems(spec: ContainerSpec, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    sc = spec.security_context
    if sc is not None and sc.privileged:
        errors.append(FieldError(f"{path}.securityContext.privileged", "must not be true"))
    for i, v in enumerate(spec.volumes):
        if v.host_path is not None:
            errors.append(FieldError(f"{path}.volumes[{i}].hostPath", "hostPath volumes are not allowed"))
    for i, p in enumerate(spec.ports):
        if 0 < p.host_port < PRIVILEGED_PORTS_BELOW:
            errors.append(FieldError(f"{path}.ports[{i}].hostPort", f"must be 0 or at least {PRIVILEGED_PORTS_BELOW}"))
    if sc is not None and sc.capabilities is not None:
        for i, cap in enumerate(sc.capabilities.add):
            if capability_name(cap) not in BASELINE_CAPABILITIES:
                errors.append(FieldError(f"{path}.securityContext.capabilities.add[{i}]",
                                         f"{cap} is beyond the baseline capabilities"))
    if sc is not None and sc.seccomp_profile is not None and sc.seccomp_profile.type == "Unconfined":
        errors.append(FieldError(f"{path}.securityContext.seccompProfile.type", "must not be Unconfined"))
    return errors


def restricted_problems(spec: ContainerSpec, path: str) -> list[FieldError]:
    errors = baseline_problems(spec, path)
    sc = spec.security_context
    where = f"{path}.securityContext"
    if sc is None or not sc.run_as_non_root:
        errors.append(FieldError(f"{where}.runAsNonRoot", "must be true"))
    if sc is not None and sc.run_as_user == 0:
        errors.append(FieldError(f"{where}.runAsUser", "must not be 0"))
    caps = sc.capabilities if sc is not None else None
    if caps is None or "ALL" not in {d.upper() for d in caps.drop}:
        errors.append(FieldError(f"{where}.capabilities.drop", "must contain ALL"))
    for i, cap in enumerate(caps.add if caps is not None else []):
        if capability_name(cap) != "CAP_NET_BIND_SERVICE":
            errors.append(FieldError(f"{where}.capabilities.add[{i}]", "only NET_BIND_SERVICE may be added"))
    if sc is not None and sc.allow_privilege_escalation:
        errors.append(FieldError(f"{where}.allowPrivilegeEscalation", "must be false"))
    for i, v in enumerate(spec.volumes):
        if v.host_path is None and v.empty_dir is None and not v.volume and v.secret is None:
            errors.append(FieldError(f"{path}.volumes[{i}]", "only emptyDir, volume and secret volumes are allowed"))
    return errors


def _unique(errors: list[FieldError]) -> list[FieldError]:
    return list(dict.fromkeys(errors))  # FieldError is a frozen dataclass: hashable, order kept


def workload_spec(obj: Object) -> tuple[ContainerSpec, str] | None:
    """The container spec a workload object runs (and its path), for every kind that runs one."""
    if isinstance(obj, Container):
        return obj.spec, "spec"
    if isinstance(obj, Deployment | Job | DaemonSet):
        return obj.spec.template.spec, "spec.template.spec"
    if isinstance(obj, CronJob):
        return obj.spec.job_template.spec.template.spec, "spec.jobTemplate.spec.template.spec"
    return None


def admit(identity: Identity, obj: Object, namespace: Namespace | None) -> None:
    """Raise Forbidden (403, every failing field named) if ``obj`` breaks its namespace's level;
    Invalid (422) for a Namespace whose level label is not a level."""
    if isinstance(obj, Namespace) and (problems := level_label_problems(obj)):
        raise Invalid(f"{problems[0].field}: {problems[0].message}", details=problems)
    if identity.role != "edit":  # admins are trusted; nodes never change a spec; view and join never write
        return
    found = workload_spec(obj)
    if found is None:
        return
    spec, path = found
    level = level_of(namespace)
    if level == "privileged":
        return
    errors = _unique(restricted_problems(spec, path) if level == "restricted" else baseline_problems(spec, path))
    if errors:
        ns = obj.metadata.namespace
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise Forbidden(f'{identity.name} may not create this in namespace "{ns}" (security level {level}): '
                        f"{first.field}: {first.message}{more}; an admin, or a namespace labelled "
                        f"{LEVEL_LABEL}=privileged, may", details=errors)
