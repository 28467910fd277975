"""The resource types of the API contract, as msgspec Structs.

Every object is ``{"apiVersion": "corral/v1", "kind", "metadata", "spec", "status"}``. Field names
are camelCase on the wire (``rename="camel"``) and defaults are left out of the JSON. Quantities
stay strings as the user wrote them (``"64Mi"``); ``quantities`` parses them to exact integers
where they are used. The types here are plain data: validation lives in ``validation.py``.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec

API_VERSION = "corral/v1"


class _Base(msgspec.Struct, rename="camel", omit_defaults=True, forbid_unknown_fields=True):
    pass


class _Object(msgspec.Struct, rename="camel", omit_defaults=False, forbid_unknown_fields=True):
    """The top level of every kind: ``apiVersion``, ``kind``, ``metadata``, ``spec`` and ``status``
    are always in its JSON (default or not), as the contract promises."""


class OwnerReference(_Base):
    kind: str
    name: str
    uid: str
    controller: bool = False
    api_version: str = API_VERSION


class ObjectMeta(_Base):
    name: str = ""
    namespace: str = ""
    uid: str = ""
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    resource_version: str = ""
    generation: int = 0
    creation_timestamp: str = ""
    deletion_timestamp: str = ""
    deletion_grace_period_seconds: int | None = None
    owner_references: list[OwnerReference] = []
    finalizers: list[str] = []


class Condition(_Base):
    type: str
    status: Literal["True", "False", "Unknown"] = "Unknown"
    reason: str = ""
    message: str = ""
    last_transition_time: str = ""
    last_update_time: str = ""  # when the condition was last confirmed (a Deployment's progress)


# --- placement: node affinity, container (anti-)affinity, topology spread ------------------------


class NodeSelectorRequirement(_Base):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: list[str] = []


class NodeSelectorTerm(_Base):
    """All expressions must hold (AND); ``matchFields`` knows ``metadata.name`` (the node's name)."""

    match_expressions: list[NodeSelectorRequirement] = []
    match_fields: list[NodeSelectorRequirement] = []


class PreferredSchedulingTerm(_Base):
    weight: int
    preference: NodeSelectorTerm


class NodeAffinity(_Base):
    required: list[NodeSelectorTerm] = []  # any one term must hold (OR)
    preferred: list[PreferredSchedulingTerm] = []


class ContainerAffinityTerm(_Base):
    label_selector: LabelSelector
    topology_key: str


class WeightedContainerAffinityTerm(_Base):
    weight: int
    term: ContainerAffinityTerm


class ContainerAffinity(_Base):
    required: list[ContainerAffinityTerm] = []
    preferred: list[WeightedContainerAffinityTerm] = []


class Affinity(_Base):
    node_affinity: NodeAffinity | None = None
    container_affinity: ContainerAffinity | None = None
    container_anti_affinity: ContainerAffinity | None = None


class TopologySpreadConstraint(_Base):
    max_skew: int
    topology_key: str
    label_selector: LabelSelector
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"] = "DoNotSchedule"


# --- Container -------------------------------------------------------------------------------


class SecretKeySelector(_Base):
    name: str
    key: str
    optional: bool = False


class EnvVarSource(_Base):
    secret_key_ref: SecretKeySelector | None = None


class EnvVar(_Base):
    name: str
    value: str = ""
    value_from: EnvVarSource | None = None


class ResourceList(_Base):
    cpu: str = ""
    memory: str = ""


class ResourceRequirements(_Base):
    requests: ResourceList = msgspec.field(default_factory=ResourceList)
    limits: ResourceList = msgspec.field(default_factory=ResourceList)


class ContainerPort(_Base):
    container_port: int
    host_port: int = 0
    protocol: Literal["tcp", "udp"] = "tcp"
    name: str = ""


class VolumeMount(_Base):
    name: str
    mount_path: str
    read_only: bool = False


class EmptyDirSource(_Base):
    size_limit: str = ""


class HostPathSource(_Base):
    path: str
    type: Literal["", "Directory", "DirectoryOrCreate", "File"] = ""


class KeyToPath(_Base):
    key: str
    path: str
    mode: int | None = None


class SecretVolumeSource(_Base):
    secret_name: str
    items: list[KeyToPath] = []
    default_mode: int = 0o400
    optional: bool = False


class VolumeSource(_Base):
    name: str
    empty_dir: EmptyDirSource | None = None
    volume: str = ""
    host_path: HostPathSource | None = None
    secret: SecretVolumeSource | None = None


class Toleration(_Base):
    key: str = ""
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str = ""
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""


class ExecAction(_Base):
    command: list[str]


class HTTPGetAction(_Base):
    port: int
    path: str = "/"


class TCPSocketAction(_Base):
    port: int


class Probe(_Base):
    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    initial_delay_seconds: int = 0
    period_seconds: int = 10
    timeout_seconds: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3


class LocalObjectReference(_Base):
    name: str


class Capabilities(_Base):
    add: list[str] = []
    drop: list[str] = []


class SeccompProfile(_Base):
    type: Literal["RuntimeDefault", "Unconfined"] = "RuntimeDefault"


class SecurityContext(_Base):
    """How the container's process is confined (see runtime/security.py for how each field is applied)."""

    privileged: bool = False
    capabilities: Capabilities | None = None
    read_only_root_filesystem: bool = False
    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool = False
    allow_privilege_escalation: bool = False
    seccomp_profile: SeccompProfile | None = None


class ContainerSpec(_Base):
    image: str = ""
    command: list[str] = []
    args: list[str] = []
    env: list[EnvVar] = []
    working_dir: str = ""
    user: str = ""
    resources: ResourceRequirements = msgspec.field(default_factory=ResourceRequirements)
    ports: list[ContainerPort] = []
    volume_mounts: list[VolumeMount] = []
    volumes: list[VolumeSource] = []
    restart_policy: Literal["Always", "OnFailure", "Never"] = "Always"
    node_selector: dict[str, str] = {}
    tolerations: list[Toleration] = []
    node: str = ""
    termination_grace_period_seconds: int = 10
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    affinity: Affinity | None = None
    topology_spread_constraints: list[TopologySpreadConstraint] = []
    priority_class_name: str = ""
    priority: int | None = None  # resolved from priorityClassName at admission
    preemption_policy: Literal["", "PreemptLowerPriority", "Never"] = ""  # likewise
    image_pull_secrets: list[LocalObjectReference] = []
    security_context: SecurityContext | None = None


Phase = Literal["Pending", "Scheduled", "Creating", "Running", "Succeeded", "Failed", "Unknown"]

MAX_PULL_LAYERS = 256  # more blobs than any real image has: the cap keeps a status write small
ByteCount = Annotated[int, msgspec.Meta(ge=0)]  # never negative


class PullLayer(_Base):
    """One blob of an image being pulled: ``done`` of its ``size`` bytes."""

    digest: str = ""
    size: ByteCount = 0
    done: ByteCount = 0


class PullStatus(_Base):
    """How far the pull of a container's image is: written by its node's agent while the pull runs
    (a few times a second at most), removed from the status when the pull ends."""

    image: str = ""
    layers: Annotated[list[PullLayer], msgspec.Meta(max_length=MAX_PULL_LAYERS)] = []
    bytes_done: ByteCount = 0
    bytes_total: ByteCount = 0


class ContainerStatus(_Base):
    phase: Phase = "Pending"
    node: str = ""
    ip: str = ""
    container_id: str = ""
    image_digest: str = ""
    started_at: str = ""
    finished_at: str = ""
    exit_code: int | None = None
    restart_count: int = 0
    ready: bool = False
    reason: str = ""
    message: str = ""
    observed_generation: int = 0
    conditions: list[Condition] = []
    nominated_node: str = ""  # where this container preempted others and waits to be placed
    pull: PullStatus | None = None  # while its node pulls the image (roles/agentpulls.py)


class Container(_Object, kw_only=True):
    KIND: ClassVar[str] = "Container"
    api_version: str = API_VERSION
    kind: str = "Container"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: ContainerSpec = msgspec.field(default_factory=ContainerSpec)
    status: ContainerStatus = msgspec.field(default_factory=ContainerStatus)


# --- Namespace -------------------------------------------------------------------------------


class NamespaceSpec(_Base):
    pass


class NamespaceStatus(_Base):
    phase: Literal["Active", "Terminating"] = "Active"


class Namespace(_Object, kw_only=True):
    KIND: ClassVar[str] = "Namespace"
    api_version: str = API_VERSION
    kind: str = "Namespace"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: NamespaceSpec = msgspec.field(default_factory=NamespaceSpec)
    status: NamespaceStatus = msgspec.field(default_factory=NamespaceStatus)


# --- Node ------------------------------------------------------------------------------------


class Taint(_Base):
    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"


class NodeSpec(_Base):
    unschedulable: bool = False
    taints: list[Taint] = []
    pod_cidr: str = ""


class NodeAddress(_Base):
    type: Literal["InternalIP", "ExternalIP", "Hostname"]
    address: str


class NodeResources(_Base):
    cpu: str = ""
    memory: str = ""
    containers: int = 0


class NodeInfo(_Base):
    agent_version: str = ""
    containerd_version: str = ""
    kernel_version: str = ""
    os: str = ""
    architecture: str = ""
    runtime: str = ""


class NodeStatus(_Base):
    addresses: list[NodeAddress] = []
    capacity: NodeResources = msgspec.field(default_factory=NodeResources)
    allocatable: NodeResources = msgspec.field(default_factory=NodeResources)
    conditions: list[Condition] = []
    last_heartbeat: str = ""
    agent_endpoint: str = ""
    node_info: NodeInfo = msgspec.field(default_factory=NodeInfo)


class Node(_Object, kw_only=True):
    KIND: ClassVar[str] = "Node"
    api_version: str = API_VERSION
    kind: str = "Node"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: NodeSpec = msgspec.field(default_factory=NodeSpec)
    status: NodeStatus = msgspec.field(default_factory=NodeStatus)


# --- Deployment ------------------------------------------------------------------------------


class LabelSelectorRequirement(_Base):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = []


class LabelSelector(_Base):
    match_labels: dict[str, str] = {}
    match_expressions: list[LabelSelectorRequirement] = []


class TemplateMeta(_Base):
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


class ContainerTemplate(_Base):
    metadata: TemplateMeta = msgspec.field(default_factory=TemplateMeta)
    spec: ContainerSpec = msgspec.field(default_factory=ContainerSpec)


class RollingUpdate(_Base):
    max_surge: int | str = "25%"
    max_unavailable: int | str = "25%"


class DeploymentStrategy(_Base):
    type: Literal["RollingUpdate", "Recreate"] = "RollingUpdate"
    rolling_update: RollingUpdate = msgspec.field(default_factory=RollingUpdate)


class DeploymentSpec(_Base):
    replicas: int = 1
    selector: LabelSelector = msgspec.field(default_factory=LabelSelector)
    template: ContainerTemplate = msgspec.field(default_factory=ContainerTemplate)
    strategy: DeploymentStrategy = msgspec.field(default_factory=DeploymentStrategy)
    paused: bool = False
    progress_deadline_seconds: int = 600
    revision_history_limit: int = 10
    min_ready_seconds: int = 0


class DeploymentStatus(_Base):
    observed_generation: int = 0
    replicas: int = 0
    updated_replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    unavailable_replicas: int = 0
    revision: int = 0
    conditions: list[Condition] = []


class Deployment(_Object, kw_only=True):
    KIND: ClassVar[str] = "Deployment"
    api_version: str = API_VERSION
    kind: str = "Deployment"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: DeploymentSpec = msgspec.field(default_factory=DeploymentSpec)
    status: DeploymentStatus = msgspec.field(default_factory=DeploymentStatus)


# --- Volume ----------------------------------------------------------------------------------


class VolumeSpec(_Base):
    size: str = ""
    node: str = ""


class VolumeStatus(_Base):
    phase: Literal["Pending", "Available", "Bound", "Released"] = "Pending"
    node: str = ""
    path: str = ""
    used: str = ""  # disk used on its node (a quantity, e.g. 12Mi), reported by that node's agent


class Volume(_Object, kw_only=True):
    KIND: ClassVar[str] = "Volume"
    api_version: str = API_VERSION
    kind: str = "Volume"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: VolumeSpec = msgspec.field(default_factory=VolumeSpec)
    status: VolumeStatus = msgspec.field(default_factory=VolumeStatus)


# --- NetworkPolicy ---------------------------------------------------------------------------


class IPBlock(_Base):
    cidr: str
    except_: list[str] = msgspec.field(default_factory=list, name="except")


class NetworkPolicyPeer(_Base):
    """Who is on the other end: containers (podSelector and/or namespaceSelector, ANDed) or an ipBlock."""

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None


class NetworkPolicyPort(_Base):
    port: int | str | None = None  # a number or the name of a container port; none: every port
    end_port: int | None = None
    protocol: Literal["TCP", "UDP"] = "TCP"


class NetworkPolicyIngressRule(_Base):
    from_: list[NetworkPolicyPeer] = msgspec.field(default_factory=list, name="from")
    ports: list[NetworkPolicyPort] = []


class NetworkPolicyEgressRule(_Base):
    to: list[NetworkPolicyPeer] = []
    ports: list[NetworkPolicyPort] = []


class NetworkPolicySpec(_Base):
    pod_selector: LabelSelector = msgspec.field(default_factory=LabelSelector)
    policy_types: list[Literal["Ingress", "Egress"]] = []
    ingress: list[NetworkPolicyIngressRule] = []
    egress: list[NetworkPolicyEgressRule] = []


class NetworkPolicyStatus(_Base):
    pass


class NetworkPolicy(_Object, kw_only=True):
    KIND: ClassVar[str] = "NetworkPolicy"
    api_version: str = API_VERSION
    kind: str = "NetworkPolicy"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: NetworkPolicySpec = msgspec.field(default_factory=NetworkPolicySpec)
    status: NetworkPolicyStatus = msgspec.field(default_factory=NetworkPolicyStatus)


# --- Event -----------------------------------------------------------------------------------


class ObjectReference(_Base):
    kind: str = ""
    namespace: str = ""
    name: str = ""
    uid: str = ""


class EventSource(_Base):
    component: str = ""
    node: str = ""


class EventSpec(_Base):
    involved_object: ObjectReference = msgspec.field(default_factory=ObjectReference)
    reason: str = ""
    message: str = ""
    type: Literal["Normal", "Warning"] = "Normal"
    source: EventSource = msgspec.field(default_factory=EventSource)
    count: int = 1
    first_timestamp: str = ""
    last_timestamp: str = ""


class EventStatus(_Base):
    pass


class Event(_Object, kw_only=True):
    KIND: ClassVar[str] = "Event"
    api_version: str = API_VERSION
    kind: str = "Event"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: EventSpec = msgspec.field(default_factory=EventSpec)
    status: EventStatus = msgspec.field(default_factory=EventStatus)


# --- Secret ----------------------------------------------------------------------------------


class SecretSpec(_Base):
    pass


class SecretStatus(_Base):
    pass


class Secret(_Object, kw_only=True):
    """Kubernetes-shaped: ``data`` (key -> base64), ``stringData`` (write-only, merged into ``data``
    on write), ``type``. Encrypted at rest (store/sealing.py); see model/secrets.py."""

    KIND: ClassVar[str] = "Secret"
    api_version: str = API_VERSION
    kind: str = "Secret"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    type: str = "Opaque"
    data: dict[str, str] = {}
    string_data: dict[str, str] = {}
    spec: SecretSpec = msgspec.field(default_factory=SecretSpec)
    status: SecretStatus = msgspec.field(default_factory=SecretStatus)


# --- Service and Endpoints -------------------------------------------------------------------

HEADLESS = "None"  # ``spec.clusterIP: None``: no virtual IP; DNS answers with the endpoints' addresses


class ServicePort(_Base):
    port: int
    name: str = ""
    target_port: int | str = 0  # a number, or the name of a container port; 0: the same as ``port``
    protocol: Literal["TCP", "UDP"] = "TCP"
    node_port: int = 0  # type NodePort: allocated from 30000-32767 when left 0


class ServiceSpec(_Base):
    selector: dict[str, str] = {}
    ports: list[ServicePort] = []
    type: Literal["ClusterIP", "NodePort"] = "ClusterIP"
    cluster_ip: str = msgspec.field(default="", name="clusterIP")  # allocated when empty; "None": headless
    session_affinity: Literal["None", "ClientIP"] = "None"


class ServiceStatus(_Base):
    pass


class Service(_Object, kw_only=True):
    KIND: ClassVar[str] = "Service"
    api_version: str = API_VERSION
    kind: str = "Service"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: ServiceSpec = msgspec.field(default_factory=ServiceSpec)
    status: ServiceStatus = msgspec.field(default_factory=ServiceStatus)


class EndpointPort(_Base):
    port: int  # the container's port this service port reaches (``targetPort`` resolved for it)
    name: str = ""  # the service port's name
    protocol: Literal["TCP", "UDP"] = "TCP"


class EndpointAddress(_Base):
    ip: str
    node: str = ""
    container: str = ""
    uid: str = ""
    ports: list[EndpointPort] = []


class EndpointsSpec(_Base):
    addresses: list[EndpointAddress] = []
    not_ready_addresses: list[EndpointAddress] = []


class EndpointsStatus(_Base):
    pass


class Endpoints(_Object, kw_only=True):
    KIND: ClassVar[str] = "Endpoints"
    api_version: str = API_VERSION
    kind: str = "Endpoints"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: EndpointsSpec = msgspec.field(default_factory=EndpointsSpec)
    status: EndpointsStatus = msgspec.field(default_factory=EndpointsStatus)


# --- Job, CronJob ----------------------------------------------------------------------------


class JobSpec(_Base):
    template: ContainerTemplate = msgspec.field(default_factory=ContainerTemplate)
    completions: int = 1
    parallelism: int = 1
    backoff_limit: int = 6
    active_deadline_seconds: int | None = None
    ttl_seconds_after_finished: int | None = None


class JobStatus(_Base):
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    start_time: str = ""
    completion_time: str = ""
    conditions: list[Condition] = []


class Job(_Object, kw_only=True):
    KIND: ClassVar[str] = "Job"
    api_version: str = API_VERSION
    kind: str = "Job"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: JobSpec = msgspec.field(default_factory=JobSpec)
    status: JobStatus = msgspec.field(default_factory=JobStatus)


class JobTemplate(_Base):
    metadata: TemplateMeta = msgspec.field(default_factory=TemplateMeta)
    spec: JobSpec = msgspec.field(default_factory=JobSpec)


class CronJobSpec(_Base):
    schedule: str = ""
    job_template: JobTemplate = msgspec.field(default_factory=JobTemplate)
    time_zone: str = ""
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = "Allow"
    starting_deadline_seconds: int | None = None
    successful_jobs_history_limit: int = 3
    failed_jobs_history_limit: int = 1
    suspend: bool = False


class CronJobStatus(_Base):
    active: list[ObjectReference] = []
    last_schedule_time: str = ""
    last_successful_time: str = ""


class CronJob(_Object, kw_only=True):
    KIND: ClassVar[str] = "CronJob"
    api_version: str = API_VERSION
    kind: str = "CronJob"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: CronJobSpec = msgspec.field(default_factory=CronJobSpec)
    status: CronJobStatus = msgspec.field(default_factory=CronJobStatus)


# --- DaemonSet -------------------------------------------------------------------------------


class DaemonSetRollingUpdate(_Base):
    max_unavailable: int | str = 1


class DaemonSetUpdateStrategy(_Base):
    type: Literal["RollingUpdate", "OnDelete"] = "RollingUpdate"
    rolling_update: DaemonSetRollingUpdate = msgspec.field(default_factory=DaemonSetRollingUpdate)


class DaemonSetSpec(_Base):
    selector: LabelSelector = msgspec.field(default_factory=LabelSelector)
    template: ContainerTemplate = msgspec.field(default_factory=ContainerTemplate)
    update_strategy: DaemonSetUpdateStrategy = msgspec.field(default_factory=DaemonSetUpdateStrategy)


class DaemonSetStatus(_Base):
    observed_generation: int = 0
    desired_number_scheduled: int = 0
    current_number_scheduled: int = 0
    number_ready: int = 0
    updated_number_scheduled: int = 0
    number_unavailable: int = 0
    number_misscheduled: int = 0


class DaemonSet(_Object, kw_only=True):
    KIND: ClassVar[str] = "DaemonSet"
    api_version: str = API_VERSION
    kind: str = "DaemonSet"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: DaemonSetSpec = msgspec.field(default_factory=DaemonSetSpec)
    status: DaemonSetStatus = msgspec.field(default_factory=DaemonSetStatus)


# --- PriorityClass ---------------------------------------------------------------------------


class PriorityClassSpec(_Base):
    value: int = 0
    global_default: bool = False
    preemption_policy: Literal["PreemptLowerPriority", "Never"] = "PreemptLowerPriority"
    description: str = ""


class PriorityClassStatus(_Base):
    pass


class PriorityClass(_Object, kw_only=True):
    KIND: ClassVar[str] = "PriorityClass"
    api_version: str = API_VERSION
    kind: str = "PriorityClass"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: PriorityClassSpec = msgspec.field(default_factory=PriorityClassSpec)
    status: PriorityClassStatus = msgspec.field(default_factory=PriorityClassStatus)


Object = (Container | Namespace | Node | Deployment | Volume | NetworkPolicy | Event | Service | Endpoints | Secret
          | Job | CronJob | DaemonSet | PriorityClass)
JSON = dict[str, Any]


# --- the wire form ---------------------------------------------------------------------------

#: kinds whose ``status.phase`` is always in their JSON (msgspec leaves a default value out)
DEFAULT_PHASES: dict[str, bytes] = {"Container": b"Pending", "Namespace": b"Active", "Volume": b"Pending"}
_STATUS = b'"status":{'


def with_phase(kind: str, data: bytes) -> bytes:
    """``data`` (an object's JSON) with ``status.phase`` spelled out when it was left out as the
    default, so a client reading ``.status.phase`` always finds it. ``status`` is the object's last
    field, and a key can only appear unescaped in JSON as a key, so the last ``"status":{`` is it."""
    phase = DEFAULT_PHASES.get(kind)
    if phase is None:
        return data
    i = data.rfind(_STATUS)
    if i < 0:
        return data
    j = i + len(_STATUS)
    if data.startswith(b'"phase"', j):
        return data
    sep = b"" if data[j:j + 1] == b"}" else b","
    return b'%s"phase":"%s"%s%s' % (data[:j], phase, sep, data[j:])
