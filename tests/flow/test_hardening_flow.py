"""Hardened defaults in a real container: seccomp filter on, no raw sockets, read-only name files, pids limit."""

from __future__ import annotations

from corral.model.resources import Capabilities, Container, ContainerSpec, ObjectMeta, SecurityContext
from tests.fixtures.cluster import Cluster, eventually
from tests.flow.test_create_flow import delete_and_wait, running
from tests.flow.test_secrets_flow import logs

PROBE = ("grep Seccomp: /proc/1/status; "
         "ping -c1 -W1 127.0.0.1 >/dev/null 2>&1 && echo ping=ok || echo ping=refused; "
         "(echo x >> /etc/hosts) 2>/dev/null && echo hosts=writable || echo hosts=read-only; "
         "unshare -U true 2>/dev/null && echo userns=yes || echo userns=no; "
         "echo whoami=$(id -u); echo done; sleep 3600")


async def run_probe(cluster: Cluster, name: str, security: SecurityContext | None = None) -> str:
    await cluster.api.create(Container(metadata=ObjectMeta(name=name), spec=ContainerSpec(
        image=cluster.image, command=["sh", "-c", PROBE], security_context=security,
        termination_grace_period_seconds=1)))
    await cluster.wait_for(name, running, timeout=60)

    async def finished() -> str:
        text = await logs(cluster, name)
        assert "done" in text
        return text

    return await eventually(finished, timeout=20, what=f"{name} prints its probe")


async def test_a_container_runs_under_seccomp_without_raw_sockets_and_cannot_rewrite_its_names(
        cluster: Cluster) -> None:
    try:
        text = await run_probe(cluster, "hardened")
        assert "Seccomp:\t2" in text, text  # mode 2: a filter
        assert "ping=refused" in text and "hosts=read-only" in text and "userns=no" in text, text
    finally:
        await delete_and_wait(cluster, "hardened")


async def test_added_capabilities_and_run_as_user_are_honoured(cluster: Cluster) -> None:
    sc = SecurityContext(capabilities=Capabilities(add=["NET_RAW"]), run_as_user=1000, run_as_group=1000)
    try:
        text = await run_probe(cluster, "net-raw", sc)
        assert "whoami=1000" in text, text
    finally:
        await delete_and_wait(cluster, "net-raw")
    try:
        text = await run_probe(cluster, "root-net-raw", SecurityContext(capabilities=Capabilities(add=["NET_RAW"])))
        assert "ping=ok" in text, text
    finally:
        await delete_and_wait(cluster, "root-net-raw")
