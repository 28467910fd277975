"""The cluster's network settings: one record every control instance and every agent reads.

``ClusterConfig`` holds what all nodes must agree on — the cluster CIDR and how it is split per
node, the service CIDR, the cluster DNS domain, and how nodes reach each other's containers (the
backend). The first control instance to start records it in etcd (``CLUSTER_CONFIG_KEY``); later
instances use the recorded one (their flags, where they differ, are reported and ignored), and the
API serves it at ``GET /cluster`` to agents, so no two nodes can disagree.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

import msgspec

from corral.model.errors import FieldError, Invalid

CLUSTER_CONFIG_KEY = "/corral/_cluster/config"

Backend = Literal["vxlan", "host-gw"]


class ClusterConfig(msgspec.Struct, rename="camel", forbid_unknown_fields=False):
    cluster_cidr: str = "10.42.0.0/16"
    node_cidr_size: int = 24
    service_cidr: str = "10.43.0.0/16"
    cluster_domain: str = "cluster.local"
    backend: Backend = "vxlan"
    vxlan_vni: int = 1
    vxlan_port: int = 8472


def validate_cluster_config(cfg: ClusterConfig) -> None:
    """Raise ``Invalid`` naming every setting that is wrong (the field names are the serve flags')."""
    problems: list[FieldError] = []
    cluster: ipaddress.IPv4Network | None = None
    try:
        cluster = ipaddress.IPv4Network(cfg.cluster_cidr)
    except ValueError as e:
        problems.append(FieldError("clusterCIDR", f"{cfg.cluster_cidr!r} is not an IPv4 network ({e})"))
    if cluster is not None and not cluster.prefixlen <= cfg.node_cidr_size <= 30:
        problems.append(FieldError("nodeCIDRSize", f"must be between the cluster CIDR's prefix ({cluster.prefixlen}) "
                                                   f"and 30, not {cfg.node_cidr_size}"))
    try:
        service = ipaddress.IPv4Network(cfg.service_cidr)
        if cluster is not None and service.overlaps(cluster):
            problems.append(FieldError("serviceCIDR", f"{cfg.service_cidr} overlaps the cluster CIDR {cfg.cluster_cidr}"))
    except ValueError as e:
        problems.append(FieldError("serviceCIDR", f"{cfg.service_cidr!r} is not an IPv4 network ({e})"))
    labels = cfg.cluster_domain.split(".")
    if not cfg.cluster_domain or any(not label or len(label) > 63 for label in labels):
        problems.append(FieldError("clusterDomain", f"{cfg.cluster_domain!r} is not a DNS domain (e.g. cluster.local)"))
    if not 1 <= cfg.vxlan_vni <= 16_777_215:
        problems.append(FieldError("vxlanVNI", f"must be 1-16777215, not {cfg.vxlan_vni}"))
    if not 1 <= cfg.vxlan_port <= 65_535:
        problems.append(FieldError("vxlanPort", f"must be 1-65535, not {cfg.vxlan_port}"))
    if problems:
        raise Invalid("the cluster settings are not valid", details=problems)


def differences(recorded: ClusterConfig, asked: ClusterConfig) -> list[str]:
    """``field: recorded vs asked`` for every setting that differs (pure)."""
    out = []
    for name in recorded.__struct_fields__:
        a, b = getattr(recorded, name), getattr(asked, name)
        if a != b:
            out.append(f"{name}: {a} (recorded) vs {b} (asked)")
    return out
