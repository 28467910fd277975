"""Services across hosts: a cluster IP and a service name reach backends on both hosts, from containers on either.

Two hosts (network namespaces on one LAN, backend host-gw, each with its own worker), one httpd
backend pinned on each answering with its own name, a Service in front of them. Clients run as
containers that do the work and leave it in their logs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from corral.model.resources import (
    Container,
    ContainerPort,
    ContainerSpec,
    ObjectMeta,
    Service,
    ServicePort,
    ServiceSpec,
)
from tests.fixtures.cluster import eventually
from tests.fixtures.hosts import Hosts, start_hosts
from tests.fixtures.registry import Registry
from tests.multihost.conftest import wait_running

WEB = "mkdir -p /www; hostname > /www/index.html; exec httpd -f -p 8080 -h /www"


@pytest_asyncio.fixture(scope="module")
async def hosts(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> AsyncIterator[Hosts]:
    async with start_hosts(tmp_path_factory.mktemp("svc-hosts"), registry, count=2, backend="host-gw") as h:
        yield h


async def run_client(hosts: Hosts, name: str, *, node: str, script: str) -> str:
    await hosts.api.create(Container(metadata=ObjectMeta(name=name),
                                     spec=ContainerSpec(image=hosts.image, command=["sh", "-c", script], node=node,
                                                        restart_policy="Never", termination_grace_period_seconds=0)))

    async def finished() -> Container:
        c = await hosts.api.get(Container, name)
        assert c.status.phase in ("Succeeded", "Failed"), f"{name}: {c.status.phase} {c.status.message}"
        return c

    await eventually(finished, timeout=120, what=f"{name} finishes")
    return (await hosts.api.request("GET", f"/namespaces/default/containers/{name}/logs")).decode()


async def test_a_service_reaches_backends_on_both_hosts_by_name_and_by_node_port(hosts: Hosts) -> None:
    for i, host in enumerate(hosts.hosts, start=1):
        await hosts.api.create(Container(
            metadata=ObjectMeta(name=f"mhweb-{i}", labels={"app": "mhweb"}),
            spec=ContainerSpec(image=hosts.image, command=["sh", "-c", WEB],
                               node=host.name, ports=[ContainerPort(container_port=8080, name="http")],
                               termination_grace_period_seconds=0)))
    for i in (1, 2):
        await wait_running(hosts, f"mhweb-{i}")
    svc = await hosts.api.create(Service(metadata=ObjectMeta(name="mhweb"),
                                         spec=ServiceSpec(selector={"app": "mhweb"}, type="NodePort",
                                                          ports=[ServicePort(port=80, target_port="http")])))
    node_port = svc.spec.ports[0].node_port
    fetch = ("for i in $(seq 1 30); do timeout 3 wget -q -O- http://mhweb/ && break; sleep 1; done; "
             "for i in $(seq 1 24); do timeout 3 wget -q -O- http://mhweb.default.svc.cluster.local/; done")
    for host in hosts.hosts:
        out = await run_client(hosts, f"mhclient-{host.name}", node=host.name, script=fetch)
        assert {"mhweb-1", "mhweb-2"} <= set(out.split()), f"from {host.name}:\n{out}"
    # a node port on the other host's address, from a container on the first
    other = hosts.hosts[1]
    out = await run_client(hosts, "mhclient-nodeport", node=hosts.hosts[0].name,
                           script=f"for i in $(seq 1 12); do timeout 3 wget -q -O- http://{other.ip}:{node_port}/; done")
    assert {"mhweb-1", "mhweb-2"} <= set(out.split()), out
