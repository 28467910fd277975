"""The Endpoints controller against the session's real control plane (etcd, API, leader with controllers).

Containers here are made through the API with a nodeSelector no node has (so nothing runs them);
their status — IP, Running, ready — is then written straight to etcd in one transaction, as a burst
of agents' status writes would land, so the controller's batching can be seen: one Endpoints write
for the whole burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest_asyncio

from corral.api.client import ApiClient
from corral.model.errors import NotFound
from corral.model.kinds import BY_KIND
from corral.model.resources import (
    Container,
    ContainerPort,
    ContainerSpec,
    ContainerStatus,
    Endpoints,
    Namespace,
    ObjectMeta,
    Service,
    ServicePort,
    ServiceSpec,
)
from corral.store import typed
from corral.store.allocation import IP_PREFIX
from corral.store.base import Put
from tests.fixtures.cluster import eventually
from tests.fixtures.control import RunningControl

COUNT = 40


@pytest_asyncio.fixture
async def client(control_plane: RunningControl) -> AsyncIterator[ApiClient]:
    async with ApiClient(control_plane.url, control_plane.admin_token, ssl_context=control_plane.ssl) as c:
        yield c


@pytest_asyncio.fixture
async def namespace(client: ApiClient) -> AsyncIterator[str]:
    name = f"ep-{uuid.uuid4().hex[:8]}"
    await client.create(Namespace(metadata=ObjectMeta(name=name)))
    try:
        yield name
    finally:
        with contextlib.suppress(NotFound):
            await client.delete(Namespace, name, namespace="")


async def test_a_burst_of_ready_containers_is_one_endpoints_write_and_a_deleted_service_frees_all_it_held(
        control_plane: RunningControl, client: ApiClient, namespace: str) -> None:
    svc = await client.create(Service(metadata=ObjectMeta(name="web", namespace=namespace),
                                      spec=ServiceSpec(selector={"app": "web"},
                                                       ports=[ServicePort(port=80, target_port="http")])))

    async def empty_endpoints() -> Endpoints:
        ep = await client.get(Endpoints, "web", namespace=namespace)
        assert not ep.spec.addresses and ep.metadata.owner_references[0].uid == svc.metadata.uid
        return ep

    first = await eventually(empty_endpoints, timeout=20, what="an empty Endpoints owned by the Service")
    for i in range(COUNT):
        await client.create(Container(metadata=ObjectMeta(name=f"web-{i}", namespace=namespace, labels={"app": "web"}),
                                      spec=ContainerSpec(image="busybox", node_selector={"nowhere": "true"},
                                                         ports=[ContainerPort(container_port=8080, name="http")])))
    await asyncio.sleep(0.5)  # the creates (no IPs yet) change nothing the Endpoints show
    assert (await client.get(Endpoints, "web", namespace=namespace)).metadata.resource_version == \
        first.metadata.resource_version

    store = control_plane.plane.store
    info = BY_KIND["Container"]
    puts = []
    for i in range(COUNT):
        kv = await store.get(info.key(namespace, f"web-{i}"))
        assert kv is not None
        c = typed.decode(kv, Container)
        c.status = ContainerStatus(phase="Running", ready=i % 4 != 0, ip=f"10.99.0.{i + 2}", node="n1")
        c.metadata.resource_version = ""
        puts.append(Put(kv.key, msgspec.json.encode(c), expected_revision=kv.mod_revision))
    assert all(r is not None for r in await store.batch(puts))  # one etcd transaction

    async def all_listed() -> Endpoints:
        ep = await client.get(Endpoints, "web", namespace=namespace)
        assert len(ep.spec.addresses) == COUNT * 3 // 4 and len(ep.spec.not_ready_addresses) == COUNT // 4
        return ep

    ep = await eventually(all_listed, timeout=20, what="every container listed")
    writes = ep.metadata.generation - first.metadata.generation
    assert writes == 1, f"{writes} Endpoints writes for one burst"
    assert {p.port for a in ep.spec.addresses for p in a.ports} == {8080}

    # deleted beside the API (as a namespace's deletion does): the controller still frees its address
    await store.delete(BY_KIND["Service"].key(namespace, "web"))

    async def gone() -> None:
        with contextlib.suppress(NotFound):
            await client.get(Endpoints, "web", namespace=namespace)
            raise AssertionError("the Endpoints are still there")
        assert await store.get(IP_PREFIX + svc.spec.cluster_ip) is None, "the cluster IP is still allocated"

    await eventually(gone, timeout=20, what="the Endpoints and the cluster IP go with their Service")
