"""What a valid Service is, and the facts about Services that every layer shares (pure).

``validate_service`` is the meaning pass for a Service (called from ``validation.validate``): it
names every bad field at once — ports out of range, duplicate or missing port names, a
``targetPort`` that is neither a port number nor a port name, NodePort fields on a ClusterIP
Service, a ``clusterIP`` that is not an IPv4 address, an empty selector. Whether ``clusterIP`` lies
inside the service CIDR, and whether a ``nodePort`` is free, is decided where the cluster's settings
and the allocations are known: the allocator (``store/allocation.py``).

``resolve_target_port`` is how a service port maps onto one container: a number is itself, a name
is the container port with that name (and no port at all when the container has none by that name,
as Kubernetes does).
"""

from __future__ import annotations

import ipaddress
import re

from corral.model import names
from corral.model.errors import FieldError
from corral.model.resources import HEADLESS, ContainerSpec, Service, ServicePort

NODE_PORT_MIN = 30000
NODE_PORT_MAX = 32767
# IANA service names (Kubernetes' IsValidPortName): 1-15 of [a-z0-9-], a letter among them, no '--', no edge '-'
_PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")


def port_name_problem(name: str) -> str | None:
    if not _PORT_NAME.match(name) or "--" in name or not any(c.isalpha() for c in name):
        return (f"{name!r} is not a port name: 1-15 lower-case letters, digits and '-', with at least one "
                "letter, not starting or ending with '-' (e.g. 'http')")
    return None


def is_headless(svc: Service) -> bool:
    return svc.spec.cluster_ip == HEADLESS


def target_port_of(port: ServicePort) -> int | str:
    """``targetPort`` with its default (the service port) applied."""
    return port.target_port or port.port


def resolve_target_port(port: ServicePort, container: ContainerSpec) -> int | None:
    """The container port ``port`` reaches on ``container``; None when a named port is missing there."""
    target = target_port_of(port)
    if isinstance(target, int):
        return target
    for cp in container.ports:
        if cp.name == target and cp.protocol.upper() == port.protocol:
            return cp.container_port
    return None


def _check_port(port: ServicePort, path: str, svc: Service, errors: list[FieldError]) -> None:
    if not 1 <= port.port <= 65535:
        errors.append(FieldError(f"{path}.port", f"must be a port number between 1 and 65535, not {port.port}"))
    if port.name and (problem := port_name_problem(port.name)):
        errors.append(FieldError(f"{path}.name", problem))
    target = port.target_port
    if isinstance(target, int):
        if not 0 <= target <= 65535:  # 0: the same as ``port``
            errors.append(FieldError(f"{path}.targetPort", f"must be a port number between 1 and 65535, not {target}"))
    elif problem := port_name_problem(target):
        errors.append(FieldError(f"{path}.targetPort", f"must be a port number or a container port's name: {problem}"))
    if port.node_port:
        if svc.spec.type != "NodePort":
            errors.append(FieldError(f"{path}.nodePort", "may only be set on a Service of type NodePort"))
        elif not NODE_PORT_MIN <= port.node_port <= NODE_PORT_MAX:
            errors.append(FieldError(f"{path}.nodePort",
                                     f"must be in the node port range {NODE_PORT_MIN}-{NODE_PORT_MAX}, not {port.node_port}"))


def validate_service(svc: Service, errors: list[FieldError]) -> None:
    spec = svc.spec
    if not spec.selector:
        errors.append(FieldError("spec.selector", "must select the containers to send traffic to (e.g. {app: web})"))
    for key, value in spec.selector.items():
        if (problem := names.label_key_problem(key)) or (problem := names.label_value_problem(value)):
            errors.append(FieldError(f"spec.selector.{key}", problem))
    headless = is_headless(svc)
    if not spec.ports and not headless:
        errors.append(FieldError("spec.ports", "must list at least one port (only a headless Service may have none)"))
    seen_names: set[str] = set()
    seen_ports: set[tuple[int, str]] = set()
    seen_node_ports: set[int] = set()
    for i, port in enumerate(spec.ports):
        path = f"spec.ports[{i}]"
        _check_port(port, path, svc, errors)
        if len(spec.ports) > 1 and not port.name:
            errors.append(FieldError(f"{path}.name", "is required when a Service has more than one port"))
        if port.name:
            if port.name in seen_names:
                errors.append(FieldError(f"{path}.name", f"{port.name!r} is used by another port of this Service"))
            seen_names.add(port.name)
        if (port.port, port.protocol) in seen_ports:
            errors.append(FieldError(f"{path}.port", f"{port.port}/{port.protocol} is listed twice"))
        seen_ports.add((port.port, port.protocol))
        if port.node_port:
            if port.node_port in seen_node_ports:
                errors.append(FieldError(f"{path}.nodePort", f"{port.node_port} is used by another port of this Service"))
            seen_node_ports.add(port.node_port)
    if spec.cluster_ip and not headless:
        try:
            ipaddress.IPv4Address(spec.cluster_ip)
        except ValueError:
            errors.append(FieldError("spec.clusterIP", f"{spec.cluster_ip!r} is not an IPv4 address "
                                                       "(leave it empty to get one, or 'None' for a headless Service)"))
    if headless and spec.type == "NodePort":
        errors.append(FieldError("spec.type", "a headless Service (clusterIP: None) cannot be of type NodePort"))
