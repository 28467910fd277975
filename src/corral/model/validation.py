"""Validation that reports every bad field, with its path, in one answer.

Two passes. The *shape* pass walks the JSON against the msgspec type description (cached per
type) and records each wrong type, unknown field (with a "did you mean" hint) and missing required
field — msgspec itself stops at the first error, and users deserve the whole list. Only when the
shape is right is the JSON converted to the Struct, and the *meaning* pass checks names, labels,
quantities, ports, references and cross-field rules. Either pass raises ``Invalid`` with all the
``FieldError``s it found.
"""

from __future__ import annotations

import difflib
import functools
from typing import Any, TypeVar

import msgspec
import msgspec.inspect as mi

from corral.model import names, networkpolicy, quantities, secrets
from corral.model.cron import schedule_problem
from corral.model.errors import FieldError, Invalid
from corral.model.kinds import EVENTS, KindInfo
from corral.model.placement import placement_problems
from corral.model.resources import (
    API_VERSION,
    ContainerSpec,
    CronJob,
    DaemonSet,
    Deployment,
    Job,
    JobSpec,
    NetworkPolicy,
    Node,
    Object,
    ObjectMeta,
    PriorityClass,
    Probe,
    Secret,
    SecretVolumeSource,
    Service,
    Volume,
)
from corral.model.services import validate_service

T = TypeVar("T")

_TYPE_WORDS = {
    mi.StrType: "a string",
    mi.IntType: "an integer",
    mi.BoolType: "a boolean (true or false)",
    mi.FloatType: "a number",
    mi.ListType: "a list",
    mi.DictType: "an object (a map)",
    mi.StructType: "an object",
    mi.NoneType: "null",
}


@functools.cache
def _info(tp: Any) -> mi.Type:
    return mi.type_info(tp)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _describe(t: mi.Type) -> str:
    if isinstance(t, mi.LiteralType):
        return "one of " + ", ".join(repr(v) for v in t.values)
    if isinstance(t, mi.UnionType):
        return " or ".join(_describe(x) for x in t.types)
    return _TYPE_WORDS.get(type(t), "a value")


def _matches(value: Any, t: mi.Type) -> bool:
    """Whether ``value``'s JSON type fits ``t`` at the top level (the walk checks inside)."""
    match t:
        case mi.AnyType():
            return True
        case mi.NoneType():
            return value is None
        case mi.StrType():
            return isinstance(value, str)
        case mi.BoolType():
            return isinstance(value, bool)
        case mi.IntType():
            return isinstance(value, int) and not isinstance(value, bool)
        case mi.FloatType():
            return isinstance(value, int | float) and not isinstance(value, bool)
        case mi.ListType():
            return isinstance(value, list)
        case mi.DictType() | mi.StructType():
            return isinstance(value, dict)
        case mi.LiteralType():
            return value in t.values
        case mi.UnionType():
            return any(_matches(value, x) for x in t.types)
    return True


def _join(path: str, part: str) -> str:
    return f"{path}.{part}" if path else part


def check_shape(value: Any, t: mi.Type, path: str, errors: list[FieldError]) -> None:
    """Append a FieldError for every place where ``value`` does not fit ``t``."""
    if isinstance(t, mi.UnionType):
        fits = [x for x in t.types if _matches(value, x)]
        if not fits:
            errors.append(FieldError(path, f"must be {_describe(t)}, not {_json_type(value)}"))
            return
        t = fits[0]
    if not _matches(value, t):
        if isinstance(t, mi.LiteralType):
            errors.append(FieldError(path, f"must be {_describe(t)}, not {value!r}"))
        else:
            errors.append(FieldError(path, f"must be {_describe(t)}, not {_json_type(value)}"))
        return
    if isinstance(t, mi.IntType):
        if t.ge is not None and value < t.ge:
            errors.append(FieldError(path, f"must be at least {t.ge}"))
    elif isinstance(t, mi.ListType):
        for i, item in enumerate(value):
            check_shape(item, t.item_type, f"{path}[{i}]", errors)
    elif isinstance(t, mi.DictType):
        for k, v in value.items():
            check_shape(v, t.value_type, _join(path, str(k)), errors)
    elif isinstance(t, mi.StructType):
        fields = {f.encode_name: f for f in t.fields}
        for k, v in value.items():
            f = fields.get(k)
            if f is None:
                hint = difflib.get_close_matches(k, list(fields), n=1)
                suggestion = f"; did you mean {hint[0]!r}?" if hint else f"; known fields: {', '.join(fields)}"
                errors.append(FieldError(_join(path, k), f"unknown field{suggestion}"))
                continue
            check_shape(v, f.type, _join(path, k), errors)
        for f in t.fields:
            if f.required and f.encode_name not in value:
                errors.append(FieldError(_join(path, f.encode_name), "is required"))


def convert(data: Any, tp: type[T], *, path: str = "") -> T:
    """Check the whole shape of ``data`` against ``tp``, then convert it; Invalid lists every problem."""
    errors: list[FieldError] = []
    check_shape(data, _info(tp), path, errors)  # type: ignore[arg-type]
    if errors:
        raise Invalid(_summary(errors), details=errors)
    try:
        return msgspec.convert(data, tp)
    except msgspec.ValidationError as e:  # a rule the shape pass does not model
        raise Invalid(str(e), details=[FieldError(path or "$", str(e))]) from e


def _summary(errors: list[FieldError]) -> str:
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{first.field}: {first.message}{more}"


# --- the meaning pass ------------------------------------------------------------------------


def validate_meta(meta: ObjectMeta, info: KindInfo, errors: list[FieldError], *, path: str = "metadata") -> None:
    check = names.subdomain_problem if info is EVENTS else names.name_problem
    if problem := check(meta.name):
        errors.append(FieldError(f"{path}.name", problem))
    if info.namespaced and meta.namespace and (problem := names.name_problem(meta.namespace)):
        errors.append(FieldError(f"{path}.namespace", problem))
    validate_labels(meta.labels, f"{path}.labels", errors)
    for key in meta.annotations:
        if problem := names.label_key_problem(key):
            errors.append(FieldError(f"{path}.annotations.{key}", problem))
    for i, f in enumerate(meta.finalizers):
        if not f or len(f) > 253:
            errors.append(FieldError(f"{path}.finalizers[{i}]", "must be a non-empty string of at most 253 characters"))


def validate_labels(labels: dict[str, str], path: str, errors: list[FieldError]) -> None:
    for key, value in labels.items():
        if (problem := names.label_key_problem(key)) or (problem := names.label_value_problem(value)):
            errors.append(FieldError(f"{path}.{key}", problem))


def _check_probe(probe: Probe | None, path: str, errors: list[FieldError]) -> None:
    if probe is None:
        return
    handlers = [h for h in (probe.exec, probe.http_get, probe.tcp_socket) if h is not None]
    if len(handlers) != 1:
        errors.append(FieldError(path, "must have exactly one of exec, httpGet or tcpSocket"))
    for field in ("initial_delay_seconds", "period_seconds", "timeout_seconds", "success_threshold", "failure_threshold"):
        value = getattr(probe, field)
        minimum = 0 if field == "initial_delay_seconds" else 1
        if value < minimum:
            camel = field.split("_")[0] + "".join(w.title() for w in field.split("_")[1:])
            errors.append(FieldError(f"{path}.{camel}", f"must be at least {minimum}"))
    for handler, name in ((probe.http_get, "httpGet"), (probe.tcp_socket, "tcpSocket")):
        if handler is not None and not 1 <= handler.port <= 65535:
            errors.append(FieldError(f"{path}.{name}.port", "must be a port number between 1 and 65535"))
    if probe.http_get is not None:
        p = probe.http_get.path
        if not p.startswith("/") or p.startswith("//") or any(ord(c) < 0x21 or ord(c) == 0x7F for c in p) or len(p) > 2048:
            errors.append(FieldError(f"{path}.httpGet.path", "must be an absolute URL path such as /healthz "
                                     "(no spaces, control characters or '//' prefix)"))
    if probe.exec is not None and not probe.exec.command:
        errors.append(FieldError(f"{path}.exec.command", "must not be empty"))


def validate_container_spec(spec: ContainerSpec, path: str, errors: list[FieldError]) -> None:
    if not spec.image.strip():
        errors.append(FieldError(f"{path}.image", "is required: name the image to run, e.g. '127.0.0.1:5000/busybox:1'"))
    elif any(c.isspace() for c in spec.image) or len(spec.image) > 512:
        errors.append(FieldError(f"{path}.image", f"{spec.image!r} is not an image reference"))
    for i, e in enumerate(spec.env):
        if problem := names.env_name_problem(e.name):
            errors.append(FieldError(f"{path}.env[{i}].name", problem))
        ref = e.value_from.secret_key_ref if e.value_from is not None else None
        if e.value_from is not None and ref is None:
            errors.append(FieldError(f"{path}.env[{i}].valueFrom", "must have secretKeyRef"))
        if ref is not None:
            if e.value:
                errors.append(FieldError(f"{path}.env[{i}].value", "must be empty when valueFrom is set"))
            if problem := names.name_problem(ref.name):
                errors.append(FieldError(f"{path}.env[{i}].valueFrom.secretKeyRef.name", problem))
            if problem := secrets.key_problem(ref.key):
                errors.append(FieldError(f"{path}.env[{i}].valueFrom.secretKeyRef.key", problem))
    for i, pull in enumerate(spec.image_pull_secrets):
        if problem := names.name_problem(pull.name):
            errors.append(FieldError(f"{path}.imagePullSecrets[{i}].name", problem))
    if spec.working_dir and not spec.working_dir.startswith("/"):
        errors.append(FieldError(f"{path}.workingDir", "must be an absolute path"))
    res = spec.resources
    parsed: dict[str, int] = {}
    for group_name, group in (("requests", res.requests), ("limits", res.limits)):
        for field, parse in (("cpu", quantities.parse_cpu), ("memory", quantities.parse_memory)):
            text = getattr(group, field)
            if text == "":
                continue
            try:
                parsed[f"{group_name}.{field}"] = parse(text)
            except quantities.QuantityError as e:
                errors.append(FieldError(f"{path}.resources.{group_name}.{field}", str(e)))
    for field in ("cpu", "memory"):
        req, lim = parsed.get(f"requests.{field}"), parsed.get(f"limits.{field}")
        if req is not None and lim is not None and req > lim:
            errors.append(FieldError(f"{path}.resources.requests.{field}",
                                     f"must not exceed limits.{field} ({getattr(res.limits, field)})"))
    if (mem := parsed.get("limits.memory")) is not None and 0 < mem < 4 * 2**20:
        errors.append(FieldError(f"{path}.resources.limits.memory", "must be at least 4Mi for a container to start"))
    seen_ports: set[tuple[int, str]] = set()
    for i, p in enumerate(spec.ports):
        if not 1 <= p.container_port <= 65535:
            errors.append(FieldError(f"{path}.ports[{i}].containerPort", "must be a port number between 1 and 65535"))
        if p.host_port and not 1 <= p.host_port <= 65535:
            errors.append(FieldError(f"{path}.ports[{i}].hostPort", "must be 0 (none) or a port number between 1 and 65535"))
        if p.host_port and (p.host_port, p.protocol) in seen_ports:
            errors.append(FieldError(f"{path}.ports[{i}].hostPort", f"{p.host_port}/{p.protocol} is used twice"))
        if p.host_port:
            seen_ports.add((p.host_port, p.protocol))
    volume_names: set[str] = set()
    for i, v in enumerate(spec.volumes):
        vpath = f"{path}.volumes[{i}]"
        if problem := names.name_problem(v.name):
            errors.append(FieldError(f"{vpath}.name", problem))
        if v.name in volume_names:
            errors.append(FieldError(f"{vpath}.name", f"volume {v.name!r} is defined twice"))
        volume_names.add(v.name)
        sources = [s for s in (v.empty_dir, v.volume or None, v.host_path, v.secret) if s is not None]
        if len(sources) != 1:
            errors.append(FieldError(vpath, "must have exactly one of emptyDir, volume, hostPath or secret"))
        if v.secret is not None:
            _check_secret_volume(v.secret, f"{vpath}.secret", errors)
        if v.volume and (problem := names.name_problem(v.volume)):
            errors.append(FieldError(f"{vpath}.volume", problem))
        if v.host_path is not None and not v.host_path.path.startswith("/"):
            errors.append(FieldError(f"{vpath}.hostPath.path", "must be an absolute path"))
        if v.empty_dir is not None and v.empty_dir.size_limit:
            try:
                quantities.parse_memory(v.empty_dir.size_limit)
            except quantities.QuantityError as e:
                errors.append(FieldError(f"{vpath}.emptyDir.sizeLimit", str(e)))
    mount_paths: set[str] = set()
    for i, m in enumerate(spec.volume_mounts):
        mpath = f"{path}.volumeMounts[{i}]"
        if m.name not in volume_names:
            errors.append(FieldError(f"{mpath}.name", f"no volume named {m.name!r} in {path}.volumes"))
        if not m.mount_path.startswith("/"):
            errors.append(FieldError(f"{mpath}.mountPath", "must be an absolute path"))
        elif m.mount_path in mount_paths:
            errors.append(FieldError(f"{mpath}.mountPath", f"{m.mount_path} is mounted twice"))
        mount_paths.add(m.mount_path)
    validate_labels(spec.node_selector, f"{path}.nodeSelector", errors)
    if spec.node and (problem := names.name_problem(spec.node)):
        errors.append(FieldError(f"{path}.node", problem))
    if spec.termination_grace_period_seconds < 0:
        errors.append(FieldError(f"{path}.terminationGracePeriodSeconds", "must not be negative"))
    _check_probe(spec.liveness_probe, f"{path}.livenessProbe", errors)
    _check_probe(spec.readiness_probe, f"{path}.readinessProbe", errors)
    placement_problems(spec, path, errors)


def _check_secret_volume(src: SecretVolumeSource, path: str, errors: list[FieldError]) -> None:
    if problem := names.name_problem(src.secret_name):
        errors.append(FieldError(f"{path}.secretName", problem))
    if not 0 <= src.default_mode <= 0o777:
        errors.append(FieldError(f"{path}.defaultMode", "must be a file mode between 0 and 0777 (e.g. 256 for 0400)"))
    for i, item in enumerate(src.items):
        if problem := secrets.key_problem(item.key):
            errors.append(FieldError(f"{path}.items[{i}].key", problem))
        parts = item.path.split("/")
        if not item.path or item.path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            errors.append(FieldError(f"{path}.items[{i}].path", "must be a relative path without '..' or empty parts"))
        if item.mode is not None and not 0 <= item.mode <= 0o777:
            errors.append(FieldError(f"{path}.items[{i}].mode", "must be a file mode between 0 and 0777"))


def _check_percent_or_int(value: int | str, path: str, errors: list[FieldError]) -> None:
    if isinstance(value, int):
        if value < 0:
            errors.append(FieldError(path, "must not be negative"))
    elif not (value.endswith("%") and value[:-1].isdigit() and int(value[:-1]) <= 100):
        errors.append(FieldError(path, f"{value!r} must be a number or a percentage such as '25%'"))


def validate_deployment(obj: Deployment, errors: list[FieldError]) -> None:
    spec = obj.spec
    if spec.replicas < 0:
        errors.append(FieldError("spec.replicas", "must not be negative"))
    validate_labels(spec.selector.match_labels, "spec.selector.matchLabels", errors)
    validate_labels(spec.template.metadata.labels, "spec.template.metadata.labels", errors)
    if spec.selector.match_expressions:
        errors.append(FieldError("spec.selector.matchExpressions", "is not supported for deployments; use matchLabels"))
    if not spec.selector.match_labels:
        errors.append(FieldError("spec.selector.matchLabels", "must not be empty (e.g. {app: web})"))
    else:
        selector = names.selector_from_labels(spec.selector.match_labels)
        if not selector.matches(spec.template.metadata.labels):
            errors.append(FieldError("spec.template.metadata.labels", "must match spec.selector.matchLabels"))
    validate_container_spec(spec.template.spec, "spec.template.spec", errors)
    if spec.template.spec.node:
        errors.append(FieldError("spec.template.spec.node", "a deployment's replicas cannot be pinned to one node; use nodeSelector"))
    ru = spec.strategy.rolling_update
    _check_percent_or_int(ru.max_surge, "spec.strategy.rollingUpdate.maxSurge", errors)
    _check_percent_or_int(ru.max_unavailable, "spec.strategy.rollingUpdate.maxUnavailable", errors)
    if ru.max_surge in (0, "0%") and ru.max_unavailable in (0, "0%"):
        errors.append(FieldError("spec.strategy.rollingUpdate", "maxSurge and maxUnavailable cannot both be zero"))
    if spec.progress_deadline_seconds < 1:
        errors.append(FieldError("spec.progressDeadlineSeconds", "must be at least 1"))


def validate_node(obj: Node, errors: list[FieldError]) -> None:
    for i, t in enumerate(obj.spec.taints):
        if problem := names.label_key_problem(t.key):
            errors.append(FieldError(f"spec.taints[{i}].key", problem))


def validate_job_spec(spec: JobSpec, path: str, errors: list[FieldError]) -> None:
    validate_labels(spec.template.metadata.labels, f"{path}.template.metadata.labels", errors)
    validate_container_spec(spec.template.spec, f"{path}.template.spec", errors)
    if spec.template.spec.restart_policy == "Always":
        errors.append(FieldError(f"{path}.template.spec.restartPolicy",
                                 "a job's containers must end: set Never or OnFailure"))
    if spec.template.spec.node:
        errors.append(FieldError(f"{path}.template.spec.node", "a job's containers cannot be pinned; use nodeSelector"))
    for field, value, minimum in (("completions", spec.completions, 1), ("parallelism", spec.parallelism, 0),
                                  ("backoffLimit", spec.backoff_limit, 0)):
        if value < minimum:
            errors.append(FieldError(f"{path}.{field}", f"must be at least {minimum}"))
    if spec.active_deadline_seconds is not None and spec.active_deadline_seconds < 1:
        errors.append(FieldError(f"{path}.activeDeadlineSeconds", "must be at least 1"))
    if spec.ttl_seconds_after_finished is not None and spec.ttl_seconds_after_finished < 0:
        errors.append(FieldError(f"{path}.ttlSecondsAfterFinished", "must not be negative"))


def validate_cronjob(obj: CronJob, errors: list[FieldError]) -> None:
    spec = obj.spec
    if problem := schedule_problem(spec.schedule, spec.time_zone):
        field = "spec.timeZone" if problem.startswith("time zone") else "spec.schedule"
        errors.append(FieldError(field, problem))
    if len(obj.metadata.name) > 52:
        errors.append(FieldError("metadata.name", "must be at most 52 characters (its jobs add 11)"))
    validate_job_spec(spec.job_template.spec, "spec.jobTemplate.spec", errors)
    if spec.starting_deadline_seconds is not None and spec.starting_deadline_seconds < 1:
        errors.append(FieldError("spec.startingDeadlineSeconds", "must be at least 1"))
    for field, value in (("successfulJobsHistoryLimit", spec.successful_jobs_history_limit),
                         ("failedJobsHistoryLimit", spec.failed_jobs_history_limit)):
        if value < 0:
            errors.append(FieldError(f"spec.{field}", "must not be negative"))


def validate_daemonset(obj: DaemonSet, errors: list[FieldError]) -> None:
    spec = obj.spec
    validate_labels(spec.selector.match_labels, "spec.selector.matchLabels", errors)
    validate_labels(spec.template.metadata.labels, "spec.template.metadata.labels", errors)
    if spec.selector.match_expressions:
        errors.append(FieldError("spec.selector.matchExpressions", "is not supported for daemon sets; use matchLabels"))
    if not spec.selector.match_labels:
        errors.append(FieldError("spec.selector.matchLabels", "must not be empty (e.g. {app: logs})"))
    elif not names.selector_from_labels(spec.selector.match_labels).matches(spec.template.metadata.labels):
        errors.append(FieldError("spec.template.metadata.labels", "must match spec.selector.matchLabels"))
    validate_container_spec(spec.template.spec, "spec.template.spec", errors)
    if spec.template.spec.node:
        errors.append(FieldError("spec.template.spec.node", "a daemon set places one container on every node; "
                                 "use nodeSelector to choose nodes"))
    _check_percent_or_int(spec.update_strategy.rolling_update.max_unavailable,
                          "spec.updateStrategy.rollingUpdate.maxUnavailable", errors)
    if spec.update_strategy.rolling_update.max_unavailable in (0, "0%"):
        errors.append(FieldError("spec.updateStrategy.rollingUpdate.maxUnavailable", "must not be zero"))


def validate_priority_class(obj: PriorityClass, errors: list[FieldError]) -> None:
    if not -(2**31) <= obj.spec.value <= 10**9:
        errors.append(FieldError("spec.value", "must be between -2147483648 and 1000000000 (higher is reserved)"))


def validate_volume(obj: Volume, errors: list[FieldError]) -> None:
    if obj.spec.size:
        try:
            if quantities.parse_memory(obj.spec.size) <= 0:
                errors.append(FieldError("spec.size", "must be more than 0"))
        except quantities.QuantityError as e:
            errors.append(FieldError("spec.size", str(e)))
    if obj.spec.node and (problem := names.name_problem(obj.spec.node)):
        errors.append(FieldError("spec.node", problem))


def validate(obj: Object, info: KindInfo) -> None:
    """The meaning pass for a whole object; raises Invalid naming every bad field. Fills the defaults
    that depend on other fields (a NetworkPolicy's policyTypes): the stored object says what is enforced."""
    errors: list[FieldError] = []
    if obj.api_version != API_VERSION:
        errors.append(FieldError("apiVersion", f"must be {API_VERSION!r}"))
    if obj.kind != info.kind:
        errors.append(FieldError("kind", f"must be {info.kind!r} at this path, not {obj.kind!r}"))
    validate_meta(obj.metadata, info, errors)
    spec = obj.spec
    if isinstance(spec, ContainerSpec):
        validate_container_spec(spec, "spec", errors)
    elif isinstance(obj, Deployment):
        validate_deployment(obj, errors)
    elif isinstance(obj, Node):
        validate_node(obj, errors)
    elif isinstance(obj, NetworkPolicy):
        networkpolicy.apply_defaults(obj)  # policyTypes as Kubernetes defaults them, stored as enforced
        networkpolicy.validate_network_policy(obj, errors)
    elif isinstance(obj, Service):
        validate_service(obj, errors)
    elif isinstance(obj, Job):
        validate_job_spec(obj.spec, "spec", errors)
    elif isinstance(obj, CronJob):
        validate_cronjob(obj, errors)
    elif isinstance(obj, DaemonSet):
        validate_daemonset(obj, errors)
    elif isinstance(obj, PriorityClass):
        validate_priority_class(obj, errors)
    elif isinstance(obj, Volume):
        validate_volume(obj, errors)
    elif isinstance(obj, Secret):
        secrets.validate_secret(obj, errors)
        if not errors:
            secrets.merge_string_data(obj)  # stringData is write-only: stored and served only as data
    if errors:
        raise Invalid(_summary(errors), details=errors)


def decode(data: Any, info: KindInfo) -> Object:
    """JSON (already parsed) → a validated object of ``info``'s kind."""
    if isinstance(data, dict):
        data.setdefault("apiVersion", API_VERSION)
        data.setdefault("kind", info.kind)
    obj = convert(data, info.type)
    validate(obj, info)
    return obj
