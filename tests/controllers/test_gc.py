"""Garbage collection against the session's real control plane (etcd, API, leader with controllers).

Owners are Deployments with no replicas whose selector matches none of the containers made here,
so a deployment controller leaves them alone; the "dependents" are Containers created directly with
an ownerReference to the Deployment, and a nodeSelector no node has, so they stay unbound and a
delete removes them at once. The last test goes through the deployment controller and ``corral
delete --cascade``. Each test has its own namespace. Event expiry runs an API server of its own with
a 2 s TTL on the session etcd.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable

import pytest
import pytest_asyncio
from aiohttp import web
from click.testing import CliRunner, Result

from corral.api.auth import Identity
from corral.api.client import ApiClient
from corral.api.server import ApiServer
from corral.cli.delete import delete
from corral.model.errors import BadRequest, NotFound
from corral.model.lifecycle import ORPHAN_FINALIZER
from corral.model.resources import (
    Container,
    ContainerSpec,
    ContainerTemplate,
    Deployment,
    DeploymentSpec,
    Event,
    EventSpec,
    LabelSelector,
    Namespace,
    ObjectMeta,
    ObjectReference,
    OwnerReference,
    TemplateMeta,
)
from corral.store.embedded import EmbeddedEtcd, free_port
from corral.store.etcd import EtcdStore
from corral.store.leases import BucketLeases
from corral.store.objects import Objects
from tests.fixtures.cluster import eventually
from tests.fixtures.control import RunningControl

IMAGE = "127.0.0.1:5000/busybox:1"


async def absent(read: Awaitable[object]) -> None:
    try:
        await read
    except NotFound:
        return
    raise AssertionError("still there")


@pytest_asyncio.fixture
async def client(control_plane: RunningControl) -> AsyncIterator[ApiClient]:
    async with ApiClient(control_plane.url, control_plane.admin_token, ssl_context=control_plane.ssl) as c:
        yield c


@pytest_asyncio.fixture
async def namespace(client: ApiClient) -> AsyncIterator[str]:
    name = f"gc-{uuid.uuid4().hex[:8]}"
    await client.create(Namespace(metadata=ObjectMeta(name=name)))
    try:
        yield name
    finally:
        with contextlib.suppress(NotFound):
            await client.delete(Namespace, name, namespace="")


async def make_owner(client: ApiClient, namespace: str, name: str) -> Deployment:
    labels = {"gc-owner": name}
    spec = DeploymentSpec(replicas=0, selector=LabelSelector(match_labels=labels),
                          template=ContainerTemplate(metadata=TemplateMeta(labels=labels),
                                                     spec=ContainerSpec(image=IMAGE)))
    return await client.create(Deployment(metadata=ObjectMeta(name=name, namespace=namespace), spec=spec))


async def make_dependent(client: ApiClient, namespace: str, name: str, *owners: Deployment) -> Container:
    refs = [OwnerReference(kind="Deployment", name=o.metadata.name, uid=o.metadata.uid) for o in owners]
    meta = ObjectMeta(name=name, namespace=namespace, labels={"gc-test": "dependent"}, owner_references=refs)
    spec = ContainerSpec(image=IMAGE, node_selector={"corral-test/no-such-node": "true"})
    return await client.create(Container(metadata=meta, spec=spec))


async def names(client: ApiClient, namespace: str) -> list[str]:
    items, _ = await client.list(Container, namespace=namespace)
    return sorted(c.metadata.name for c in items)


async def test_deleting_an_owner_deletes_its_dependents_in_the_background(client: ApiClient, namespace: str) -> None:
    owner = await make_owner(client, namespace, "web")
    await make_dependent(client, namespace, "web-1", owner)
    await make_dependent(client, namespace, "web-2", owner)
    await make_dependent(client, namespace, "loner")  # owns itself: stays
    await client.delete(Deployment, "web", namespace=namespace)

    async def only_the_loner_is_left() -> None:
        assert await names(client, namespace) == ["loner"]

    await eventually(only_the_loner_is_left, timeout=15, what="the owner's containers collected")


async def test_a_dependent_stays_while_one_of_its_owners_remains(client: ApiClient, namespace: str) -> None:
    a, b = await make_owner(client, namespace, "a"), await make_owner(client, namespace, "b")
    await make_dependent(client, namespace, "shared", a, b)
    await make_dependent(client, namespace, "only-a", a)
    await client.delete(Deployment, "a", namespace=namespace)

    async def only_a_s_own_went() -> None:
        assert await names(client, namespace) == ["shared"]

    await eventually(only_a_s_own_went, timeout=15, what="the container owned by a alone collected")
    await asyncio.sleep(0.5)  # and the shared one is not collected a moment later either
    assert await names(client, namespace) == ["shared"]


async def test_a_dependent_whose_owner_never_existed_is_collected(client: ApiClient, namespace: str) -> None:
    ghost = Deployment(metadata=ObjectMeta(name="ghost", namespace=namespace, uid=str(uuid.uuid4())))
    await make_dependent(client, namespace, "haunted", ghost)

    async def collected() -> None:
        assert await names(client, namespace) == []

    await eventually(collected, timeout=15, what="the container of a missing owner collected")


async def test_an_orphan_delete_keeps_the_dependents_and_drops_their_owner_reference(
        client: ApiClient, namespace: str) -> None:
    keep, other = await make_owner(client, namespace, "keep"), await make_owner(client, namespace, "other")
    await make_dependent(client, namespace, "kept-1", keep)
    await make_dependent(client, namespace, "kept-2", keep, other)
    await client.request("DELETE", f"/namespaces/{namespace}/deployments/keep",
                         params={"propagationPolicy": "Orphan"})

    async def owner_gone() -> None:
        await absent(client.get(Deployment, "keep", namespace=namespace))

    await eventually(owner_gone, timeout=15, what="the orphaning owner removed")
    await asyncio.sleep(0.5)  # time for a wrong collection to happen
    first = await client.get(Container, "kept-1", namespace=namespace)
    second = await client.get(Container, "kept-2", namespace=namespace)
    assert first.metadata.owner_references == []
    assert [r.name for r in second.metadata.owner_references] == ["other"]
    assert not first.metadata.deletion_timestamp and not second.metadata.deletion_timestamp


async def test_an_orphan_delete_marks_the_owner_with_the_orphan_finalizer_first(
        client: ApiClient, namespace: str) -> None:
    await make_owner(client, namespace, "marked")
    body = await client.request("DELETE", f"/namespaces/{namespace}/deployments/marked",
                                params={"propagationPolicy": "Orphan"})
    assert ORPHAN_FINALIZER.encode() in body and b"deletionTimestamp" in body


async def test_an_unknown_propagation_policy_is_a_bad_request(client: ApiClient, namespace: str) -> None:
    await make_owner(client, namespace, "policy")
    with pytest.raises(BadRequest) as caught:
        await client.request("DELETE", f"/namespaces/{namespace}/deployments/policy",
                             params={"propagationPolicy": "Sideways"})
    assert "propagationPolicy" in str(caught.value)
    await client.get(Deployment, "policy", namespace=namespace)  # still there


# --- event expiry ----------------------------------------------------------------------------


async def test_events_created_through_the_api_expire_after_the_event_ttl_on_shared_leases(
        etcd: EmbeddedEtcd) -> None:
    store = EtcdStore([etcd.endpoint])
    server = ApiServer(store, event_ttl=2)
    caches = asyncio.create_task(server.run_caches())
    runner = web.AppRunner(server.app(), access_log=None, shutdown_timeout=1.0)
    try:
        await server.ensure_default_namespace()
        token = await server.tokens.issue(Identity("admin"))
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        for cache in server.caches.values():
            await cache.wait_ready()
        prefix = f"ttl-{uuid.uuid4().hex[:6]}"
        async with ApiClient(f"http://127.0.0.1:{port}", token) as c:
            for i in range(5):
                spec = EventSpec(involved_object=ObjectReference(kind="Container", namespace="default", name="x"),
                                 reason="Testing", message=f"event {i}")
                await c.create(Event(metadata=ObjectMeta(name=f"{prefix}.{i}", namespace="default"), spec=spec))
            kvs = [await store.get(f"/corral/events/default/{prefix}.{i}") for i in range(5)]
            assert all(kv is not None and kv.lease for kv in kvs)
            assert len({kv.lease for kv in kvs if kv is not None}) == 1  # one lease for the bucket
            assert server.event_leases is not None and server.event_leases.granted == 1

            async def expired() -> None:
                assert [e for e in (await c.list(Event, namespace="default"))[0]
                        if e.metadata.name.startswith(prefix)] == []

            await eventually(expired, timeout=10, what="the events expired")
    finally:
        await runner.cleanup()
        caches.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await caches
        await store.close()


async def test_bucket_leases_grant_once_per_bucket_and_again_after_a_lost_lease(etcd: EmbeddedEtcd) -> None:
    now = [0.0]
    store = EtcdStore([etcd.endpoint])
    try:
        leases = BucketLeases(store, ttl=60, clock=lambda: now[0])
        assert (leases.bucket, leases.lease_ttl) == (6.0, 66)
        first = await asyncio.gather(*(leases.current() for _ in range(20)))
        assert len(set(first)) == 1 and leases.granted == 1  # concurrent callers share one grant
        now[0] = 5.9
        assert await leases.current() == first[0]
        now[0] = 6.0
        second = await leases.current()
        assert second != first[0] and leases.granted == 2
        await store.revoke_lease(second)
        with pytest.raises(NotFound):
            await store.create(f"/corral/_test/{uuid.uuid4().hex}", b"x", lease=second)
        leases.forget(second)
        assert await leases.current() not in (first[0], second) and leases.granted == 3
        for lease in {first[0], await leases.current()}:
            await store.revoke_lease(lease)
    finally:
        await store.close()


async def test_events_that_controllers_create_through_objects_get_the_shared_lease_even_after_it_expired(etcd: EmbeddedEtcd) -> None:
    store = EtcdStore([etcd.endpoint])
    try:
        leases = BucketLeases(store, ttl=60)
        objects = Objects(store, event_leases=leases)
        name = f"ctl-{uuid.uuid4().hex[:8]}"
        event = await objects.create(Event(metadata=ObjectMeta(name=name, namespace="default"),
                                           spec=EventSpec(reason="Testing")))
        kv = await store.get(f"/corral/events/default/{name}")
        assert kv is not None and kv.lease == await leases.current()
        assert event.metadata.uid
        await store.revoke_lease(kv.lease)  # takes the event with it
        assert await store.get(f"/corral/events/default/{name}") is None
        # the lease is gone but still the bucket's: the next Event goes on a fresh one, not NotFound
        later = await objects.create(Event(metadata=ObjectMeta(name=name + "-2", namespace="default"),
                                           spec=EventSpec(reason="Testing")))
        kv2 = await store.get(f"/corral/events/default/{later.metadata.name}")
        assert kv2 is not None and kv2.lease not in (0, kv.lease) and leases.granted == 2
        await store.revoke_lease(kv2.lease)
    finally:
        await store.close()


# --- with the deployment controller, through the CLI -----------------------------------------


async def corral_delete(control_plane: RunningControl, *args: str) -> Result:
    env = {"CORRAL_SERVER": control_plane.url, "CORRAL_TOKEN": control_plane.admin_token, "CORRAL_CA": str(control_plane.ca_file)}
    return await asyncio.to_thread(CliRunner().invoke, delete, list(args), env=env)


async def test_corral_delete_deployment_removes_its_containers_and_cascade_orphan_keeps_them(
        control_plane: RunningControl, client: ApiClient, namespace: str) -> None:
    for name in ("gone", "kept"):
        labels = {"app": name}
        spec = DeploymentSpec(replicas=2, selector=LabelSelector(match_labels=labels),
                              template=ContainerTemplate(metadata=TemplateMeta(labels=labels), spec=ContainerSpec(
                                  image=IMAGE, node_selector={"corral-test/no-such-node": "true"})))
        await client.create(Deployment(metadata=ObjectMeta(name=name, namespace=namespace), spec=spec))

    async def two_each() -> list[Container]:
        items, _ = await client.list(Container, namespace=namespace)
        assert sorted(c.metadata.labels["app"] for c in items) == ["gone", "gone", "kept", "kept"]
        return items

    await eventually(two_each, timeout=20, what="the deployment controller made two containers each")
    background = await corral_delete(control_plane, "deployment", "gone", "-n", namespace)
    assert background.exit_code == 0, background.output
    orphan = await corral_delete(control_plane, "deployment", "kept", "-n", namespace, "--cascade=orphan")
    assert orphan.exit_code == 0, orphan.output

    async def only_the_orphans_are_left() -> list[Container]:
        await absent(client.get(Deployment, "kept", namespace=namespace))
        items, _ = await client.list(Container, namespace=namespace)
        assert [c.metadata.labels["app"] for c in items] == ["kept", "kept"]
        assert all(c.metadata.owner_references == [] and not c.metadata.deletion_timestamp for c in items)
        return items

    await eventually(only_the_orphans_are_left, timeout=20, what="gone's containers collected, kept's orphaned")
