"""The resource types of the API contract, as msgspec Structs.

Every object is ``{"apiVersion": "corral/v1", "kind", "metadata", "spec", "status"}``. Field names
are camelCase on the wire (``rename="camel"``) and defaults are left out of the JSON. Quantities
stay strings as the user wrote them (``"64Mi"``); ``quantities`` parses them to exact integers
where they are used. The types here are plain data: validation lives in ``validation.py``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import msgspec

API_VERSION = "corral/v1"


class _Base(msgspec.Struct, rename="camel", omit_defaults=True, forbid_unknown_fields=True):
    pass


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
    image_pull_secrets: list[LocalObjectReference] = []
    security_context: SecurityContext | None = None


Phase = Literal["Pending", "Scheduled", "Creating", "Running", "Succeeded", "Failed", "Unknown"]


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


class Container(_Base, kw_only=True):
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


class Namespace(_Base, kw_only=True):
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


class Node(_Base, kw_only=True):
    KIND: ClassVar[str] = "Node"
    api_version: str = API_VERSION
    kind: str = "Node"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: NodeSpec = msgspec.field(default_factory=NodeSpec)
    status: NodeStatus = msgspec.field(default_factory=NodeStatus)


# --- Deployment ------------------------------------------------------------------------------


class LabelSelector(_Base):
    match_labels: dict[str, str] = {}


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


class Deployment(_Base, kw_only=True):
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


class Volume(_Base, kw_only=True):
    KIND: ClassVar[str] = "Volume"
    api_version: str = API_VERSION
    kind: str = "Volume"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: VolumeSpec = msgspec.field(default_factory=VolumeSpec)
    status: VolumeStatus = msgspec.field(default_factory=VolumeStatus)


# --- NetworkPolicy ---------------------------------------------------------------------------


class PolicyPeer(_Base):
    selector: LabelSelector | None = None
    cidr: str = ""


class PolicyPort(_Base):
    port: int
    protocol: Literal["tcp", "udp"] = "tcp"


class PolicyRule(_Base):
    peers: list[PolicyPeer] = []
    ports: list[PolicyPort] = []


class NetworkPolicySpec(_Base):
    selector: LabelSelector = msgspec.field(default_factory=LabelSelector)
    ingress: list[PolicyRule] = []
    egress: list[PolicyRule] = []
    policy_types: list[Literal["Ingress", "Egress"]] = []


class NetworkPolicyStatus(_Base):
    pass


class NetworkPolicy(_Base, kw_only=True):
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


class Event(_Base, kw_only=True):
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


class Secret(_Base, kw_only=True):
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


Object = Container | Namespace | Node | Deployment | Volume | NetworkPolicy | Event | Secret
JSON = dict[str, Any]
