"""Plain-data builders for the scheduler's unit tests: Nodes and Containers as the store holds them."""

from __future__ import annotations

from corral.model.resources import (
    Condition,
    Container,
    ContainerPort,
    ContainerSpec,
    Node,
    NodeResources,
    NodeSpec,
    NodeStatus,
    ObjectMeta,
    ResourceList,
    ResourceRequirements,
    Taint,
)


def make_node(
    name: str,
    *,
    cpu: str = "4",
    memory: str = "8Gi",
    containers: int = 0,
    ready: bool = True,
    unschedulable: bool = False,
    labels: dict[str, str] | None = None,
    taints: list[Taint] | None = None,
) -> Node:
    return Node(
        metadata=ObjectMeta(name=name, labels=labels or {}),
        spec=NodeSpec(unschedulable=unschedulable, taints=taints or []),
        status=NodeStatus(
            allocatable=NodeResources(cpu=cpu, memory=memory, containers=containers),
            conditions=[Condition(type="Ready", status="True" if ready else "False")],
        ),
    )


def make_container(
    name: str,
    *,
    namespace: str = "default",
    cpu: str = "",
    memory: str = "",
    host_port: int = 0,
    node: str = "",
    node_selector: dict[str, str] | None = None,
) -> Container:
    return Container(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=ContainerSpec(
            image="127.0.0.1:5000/busybox:1",
            resources=ResourceRequirements(requests=ResourceList(cpu=cpu, memory=memory)),
            ports=[ContainerPort(container_port=80, host_port=host_port)] if host_port else [],
            node_selector=node_selector or {},
            node=node,
        ),
    )


def key_of(c: Container) -> str:
    return f"/corral/containers/{c.metadata.namespace}/{c.metadata.name}"
