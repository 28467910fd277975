"""NetworkPolicy rendered as nftables: sets of addresses, rules that depend on policies only, and a
text the kernel's nft really loads (into a throwaway network namespace)."""

from __future__ import annotations

import asyncio
from typing import Any

from corral.model import kinds, validation
from corral.model.resources import (
    Container,
    ContainerPort,
    ContainerSpec,
    ContainerStatus,
    Namespace,
    NetworkPolicy,
    ObjectMeta,
)
from corral.network.loopback_guard import render_loopback_guard
from corral.network.nftables import render_table
from corral.network.policy import delta_commands, element_changes, policy_key, render_policy

NETPOL = kinds.BY_KIND["NetworkPolicy"]


def policy(name: str, spec: dict[str, Any], namespace: str = "default") -> NetworkPolicy:
    obj = validation.decode({"metadata": {"name": name, "namespace": namespace}, "spec": spec}, NETPOL)
    assert isinstance(obj, NetworkPolicy)
    return obj


def container(name: str, ip: str, labels: dict[str, str], *, node: str = "n1", namespace: str = "default",
              ports: list[ContainerPort] | None = None, phase: str = "Running") -> Container:
    return Container(metadata=ObjectMeta(name=name, namespace=namespace, labels=labels),
                     spec=ContainerSpec(image="x", node=node, ports=ports or []),
                     status=ContainerStatus(phase=phase, ip=ip, node=node))  # type: ignore[arg-type]


def set_line(text: str, name: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"set {name} "))


DB, LOCK_OUT = f"policy_{policy_key('default', 'db')}", f"policy_{policy_key('default', 'lock-out')}"


POLICIES = [
    policy("db", {"podSelector": {"matchLabels": {"app": "db"}},
                  "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}},
                                        {"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}}],
                               "ports": [{"port": 5432}, {"port": "metrics"}, {"port": 9000, "endPort": 9009,
                                                                              "protocol": "UDP"}]}]}),
    policy("lock-out", {"podSelector": {}, "policyTypes": ["Egress"],
                        "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"team": "a"}},
                                            "podSelector": {"matchLabels": {"app": "api"}}}]}]}),
]
NAMESPACES = [Namespace(metadata=ObjectMeta(name="default")), Namespace(metadata=ObjectMeta(name="a", labels={"team": "a"}))]


def test_selections_are_sets_of_container_addresses_and_only_this_nodes_containers_are_targets() -> None:
    containers = [
        container("db-1", "10.88.0.5", {"app": "db"}, ports=[ContainerPort(9100, name="metrics")]),
        container("db-2", "10.88.1.5", {"app": "db"}, node="n2"),
        container("web", "10.88.1.7", {"app": "web"}, node="n2"),
        container("api", "10.88.0.9", {"app": "api"}, namespace="a"),
        container("api-default", "10.88.0.10", {"app": "api"}),
        container("done", "10.88.0.11", {"app": "web"}, phase="Succeeded"),
    ]
    text = render_policy(POLICIES, containers, NAMESPACES, node="n1").part.text
    assert "elements = { 10.88.0.5 }" in set_line(text, f"{DB}_sel"), "db-2 is on another node"
    peers = set_line(text, f"{DB}_in0_peers")
    assert "10.88.1.7" in peers and "10.88.0.11" not in peers, "a finished container's address is not a peer"
    assert "192.168.0.0-192.168.0.255, 192.168.2.0-192.168.255.255" in peers, "the ipBlock minus its except"
    assert "10.88.0.5 . tcp . 9100" in set_line(text, f"{DB}_in0_named")
    assert "udp . 9000-9009" in set_line(text, f"{DB}_in0_ports")
    assert "elements = { 10.88.0.9 }" in set_line(text, f"{LOCK_OUT}_out0_peers"), "namespace AND pod selector"
    assert "10.88.0.5" in set_line(text, "policy_ingress_isolated")
    assert "10.88.0.10" in set_line(text, "policy_egress_isolated")
    assert "10.88.0.9" not in set_line(text, "policy_egress_isolated"), "the policy is in another namespace"


def test_the_rules_do_not_change_when_containers_come_and_go() -> None:
    def rules(n: int) -> tuple[list[str], int]:
        containers = [container(f"c{i}", f"10.88.{i // 250}.{i % 250 + 2}", {"app": ["db", "web"][i % 2]})
                      for i in range(n)]
        rendered = render_policy(POLICIES, containers, NAMESPACES, node="n1")
        return [line for line in rendered.part.text.splitlines() if not line.startswith("set ")], rendered.elements

    few, few_elements = rules(2)
    many, many_elements = rules(500)
    assert few == many
    assert many_elements > few_elements


def test_a_policy_that_selects_nothing_here_keeps_its_rules_and_an_empty_selection() -> None:
    rendered = render_policy(POLICIES, [], NAMESPACES, node="n1")
    assert set_line(rendered.part.text, f"{DB}_sel").endswith("{ type ipv4_addr; }")
    assert rendered.rules == render_policy(POLICIES, [container("x", "10.88.0.2", {"app": "db"})],
                                           NAMESPACES, node="n1").rules


def test_the_rendered_table_loads_into_the_kernel() -> None:
    containers = [container("db-1", "10.88.0.5", {"app": "db"}, ports=[ContainerPort(9100, name="metrics")]),
                  container("web", "10.88.1.7", {"app": "web"})]
    script = render_table("inet", "policytest", [render_policy(POLICIES, containers, NAMESPACES, node="n1").part,
                                                 render_loopback_guard("crl0000")])

    async def load() -> tuple[int, str]:
        # a network namespace of its own: nothing is left behind in the host's nftables
        proc = await asyncio.create_subprocess_exec(
            "unshare", "--net", "sh", "-c", "nft -f - && nft list table inet policytest",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate(script.encode())
        return proc.returncode or 0, out.decode()

    rc, out = asyncio.run(load())
    assert rc == 0, out
    assert "hook forward" in out and "hook input" in out and f"{DB}_in0_named" in out


def test_a_container_arriving_changes_only_the_elements_of_the_sets_it_joins() -> None:
    before = [container("db-1", "10.88.0.5", {"app": "db"}), container("web", "10.88.1.7", {"app": "web"}, node="n2")]
    old = render_policy(POLICIES, before, NAMESPACES, node="n1")
    new = render_policy(POLICIES, [*before, container("web-2", "10.88.1.9", {"app": "web"}, node="n2")],
                        NAMESPACES, node="n1")
    assert new.skeleton == old.skeleton
    changes = element_changes(old, new)
    assert changes == {f"{DB}_in0_peers": ([], ["10.88.1.9"])}


def test_the_delta_between_two_renders_makes_the_kernel_table_equal_to_a_fresh_load_of_the_second() -> None:
    containers = [container("db-1", "10.88.0.5", {"app": "db"}, ports=[ContainerPort(9100, name="metrics")]),
                  container("web", "10.88.1.7", {"app": "web"}), container("api", "10.88.0.9", {"app": "api"},
                                                                          namespace="a")]
    old = render_policy(POLICIES, containers, NAMESPACES, node="n1")
    changed = [policy("db", {"podSelector": {"matchLabels": {"app": "db"}},  # a port, a peer and a type changed
                             "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "api"}}}],
                                          "ports": [{"port": 5433}]}]}),
               policy("new", {"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]})]
    new = render_policy(changed, [*containers[1:], container("db-2", "10.88.0.6", {"app": "db"})],
                        NAMESPACES, node="n1")
    commands = delta_commands(old, new, family="inet", table="policytest")
    assert any(c.startswith(f"delete set inet policytest {LOCK_OUT}") for c in commands)
    full_old = render_table("inet", "policytest", [old.part, render_loopback_guard("crl0000")])
    full_new = render_table("inet", "policytest", [new.part, render_loopback_guard("crl0000")])
    script = (f"nft -f /dev/fd/3 3<<'EOF'\n{full_old}EOF\n"
              f"nft -f /dev/fd/3 3<<'EOF'\n" + "\n".join(commands) + "\nEOF\n"
              "nft list table inet policytest > /tmp/.policy-delta-$$ && nft delete table inet policytest\n"
              f"nft -f /dev/fd/3 3<<'EOF'\n{full_new}EOF\n"
              "nft list table inet policytest | sort > /tmp/.policy-fresh-$$; sort /tmp/.policy-delta-$$ | "
              "diff - /tmp/.policy-fresh-$$; rc=$?; rm -f /tmp/.policy-delta-$$ /tmp/.policy-fresh-$$; exit $rc\n")

    async def run() -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec("unshare", "--net", "sh", "-c", script,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode()

    rc, out = asyncio.run(run())
    assert rc == 0, out
