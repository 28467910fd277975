"""What the agent wants in the kernel for its peers, and which nodes are peers — pure."""

from __future__ import annotations

import re

import pytest

from corral.model.cluster import ClusterConfig
from corral.model.errors import Invalid
from corral.model.resources import Condition, Node, NodeAddress, NodeSpec, NodeStatus, ObjectMeta
from corral.network.overlay import Peer, Route, device_for, plan, vtep_address
from corral.roles.peers import VXLAN_MAC_ANNOTATION, link_mtu, peers_of
from corral.roles.podcidr import check_override

A = Peer("a", "10.42.1.0/24", "192.168.1.11", "aa:aa:aa:aa:aa:01")
B = Peer("b", "10.42.2.0/24", "192.168.1.12", "")


def test_host_gw_routes_each_podcidr_via_its_node_ip() -> None:
    p = plan("host-gw", [A, B])
    assert p.routes == {Route("10.42.1.0/24", "192.168.1.11"), Route("10.42.2.0/24", "192.168.1.12")}
    assert not p.fdb and not p.neighbours


def test_vxlan_routes_onlink_via_the_vtep_with_fdb_and_neighbour_and_waits_for_the_mac() -> None:
    p = plan("vxlan", [A, B])
    assert p.routes == {Route("10.42.1.0/24", "10.42.1.0", onlink_vxlan=True)}
    assert p.fdb == {("aa:aa:aa:aa:aa:01", "192.168.1.11")}
    assert p.neighbours == {("10.42.1.0", "aa:aa:aa:aa:aa:01")}
    assert vtep_address("10.42.7.0/24") == "10.42.7.0"


def test_the_vxlan_device_is_named_after_the_bridge_unless_it_is_the_default() -> None:
    assert device_for("corral0") == "corral.vxlan"
    assert len(device_for("crl1234abcd")) <= 15


def node(name: str, *, ip: str, cidr: str, ready: str = "True", mac: str = "") -> Node:
    return Node(metadata=ObjectMeta(name=name, annotations={VXLAN_MAC_ANNOTATION: mac} if mac else {}),
                spec=NodeSpec(pod_cidr=cidr),
                status=NodeStatus(addresses=[NodeAddress("InternalIP", ip)],
                                  conditions=[Condition(type="Ready", status=ready)]))


def test_peers_are_the_other_ready_nodes_with_a_podcidr_and_a_real_ip() -> None:
    nodes = [node("me", ip="192.168.1.10", cidr="10.42.0.0/24"),
             node("a", ip="192.168.1.11", cidr="10.42.1.0/24", mac="aa:aa:aa:aa:aa:01"),
             node("lost", ip="192.168.1.13", cidr="10.42.3.0/24", ready="Unknown"),
             node("new", ip="192.168.1.14", cidr=""),
             node("local", ip="127.0.0.1", cidr="10.42.5.0/24")]
    assert peers_of(nodes, me="me") == [Peer("a", "10.42.1.0/24", "192.168.1.11", "aa:aa:aa:aa:aa:01")]


def test_the_containers_mtu_leaves_room_for_the_vxlan_header() -> None:
    assert link_mtu(ClusterConfig(backend="vxlan"), node_ip="192.168.1.10", uplink_mtu=1500) == 1450
    assert link_mtu(ClusterConfig(backend="host-gw"), node_ip="192.168.1.10", uplink_mtu=9000) == 9000
    assert link_mtu(ClusterConfig(), node_ip="127.0.0.1", uplink_mtu=65536) == 1500


def test_a_pod_cidr_override_must_lie_in_the_cluster_cidr_and_overlap_no_other_node() -> None:
    check_override("10.42.9.0/24", cluster_cidr="10.42.0.0/16", others={"a": "10.42.1.0/24"})
    with pytest.raises(Invalid, match=re.escape("outside the cluster CIDR 10.42.0.0/16")):
        check_override("10.88.0.0/24", cluster_cidr="10.42.0.0/16", others={})
    with pytest.raises(Invalid, match=re.escape("overlaps node a's podCIDR 10.42.1.0/24")):
        check_override("10.42.1.128/25", cluster_cidr="10.42.0.0/16", others={"a": "10.42.1.0/24"})
    with pytest.raises(Invalid, match="not an IPv4 network"):
        check_override("10.42.1.0/33", cluster_cidr="10.42.0.0/16", others={})
