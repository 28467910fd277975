"""The registry against a real etcd: guaranteed_update's retry on a lost compare-and-swap, its
preconditions and no-change answers, graceful deletes, and the scheduler's batched bindings."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import TypeVar

import msgspec
import pytest

from corral.model.errors import AlreadyExists, Conflict, NotFound
from corral.model.kinds import BY_KIND
from corral.model.resources import Container, ContainerSpec, Deployment, DeploymentSpec, Object, ObjectMeta
from corral.store import typed
from corral.store.etcd import EtcdStore
from corral.store.objects import Objects
from corral.store.registry import Registry, Removal, Written, key_of

ObjT = TypeVar("ObjT", bound=Object)

DEPLOYMENTS = BY_KIND["Deployment"]
CONTAINERS = BY_KIND["Container"]


@pytest.fixture
def namespace() -> str:
    """A namespace no other test writes in. The registry's keys are the kinds' own, so these tests
    use a private etcd: controllers other tests leave running on the shared one never touch them."""
    return f"reg-{uuid.uuid4().hex[:10]}"


@dataclass
class Decided:
    """A binding as the scheduler hands it over (any record with these three fields)."""

    key: str
    container: Container
    node: str


async def made(registry: Registry, namespace: str, name: str = "web", **labels: str) -> Deployment:
    return await registry.create(Deployment(metadata=ObjectMeta(name=name, namespace=namespace, labels=labels),
                                            spec=DeploymentSpec(replicas=1)))


def relabel(d: ObjT, **labels: str) -> ObjT:
    d.metadata.labels = {**d.metadata.labels, **labels}
    return d


async def test_a_lost_compare_and_swap_is_retried_on_what_etcd_has_now(private_store: EtcdStore, namespace: str) -> None:
    registry = Registry(private_store)
    d = await made(registry, namespace)
    key = key_of(d)
    seen: list[dict[str, str]] = []

    async def mutate(current: Deployment) -> Deployment:
        seen.append(dict(current.metadata.labels))
        if len(seen) == 1:  # someone else writes between our read and our write
            other = relabel(await Objects(private_store).get(Deployment, "web", namespace=namespace), theirs="1")
            await Objects(private_store).update(other)
        return relabel(current, ours="1")

    written = await registry.guaranteed_update(DEPLOYMENTS, key, mutate)
    assert seen == [{}, {"theirs": "1"}]  # the second attempt starts from the other writer's version
    stored = await Objects(private_store).get(Deployment, "web", namespace=namespace)
    assert stored.metadata.labels == {"theirs": "1", "ours": "1"}
    assert stored.metadata.resource_version == written.obj.metadata.resource_version == str(written.revision)


async def test_concurrent_updates_of_one_object_all_land(private_store: EtcdStore, namespace: str) -> None:
    registry = Registry(private_store)
    d = await made(registry, namespace)

    def bump(current: Deployment) -> Deployment:
        current.spec = msgspec.structs.replace(current.spec, replicas=current.spec.replicas + 1)
        return current

    await asyncio.gather(*(registry.guaranteed_update(DEPLOYMENTS, key_of(d), bump, attempts=50) for _ in range(8)))
    stored = await Objects(private_store).get(Deployment, "web", namespace=namespace)
    assert stored.spec.replicas == 9


async def test_a_stale_cached_copy_costs_one_read_from_etcd_not_a_lost_write(private_store: EtcdStore, namespace: str) -> None:
    registry = Registry(private_store)
    old = await made(registry, namespace)
    old_revision = int(old.metadata.resource_version)
    await Objects(private_store).update(relabel(await Objects(private_store).get(Deployment, "web", namespace=namespace), newer="1"))
    calls: list[str] = []

    def mutate(current: Deployment) -> Deployment:
        calls.append(current.metadata.resource_version)
        return relabel(current, ours="1")

    await registry.guaranteed_update(DEPLOYMENTS, key_of(old), mutate, cached=(old, old_revision))
    assert calls[0] == str(old_revision) and len(calls) == 2
    assert (await Objects(private_store).get(Deployment, "web", namespace=namespace)).metadata.labels == {"newer": "1", "ours": "1"}
    assert old.metadata.labels == {}  # the cached copy was never changed


async def test_no_change_writes_nothing(private_store: EtcdStore, namespace: str) -> None:
    registry = Registry(private_store)
    d = await made(registry, namespace)
    written: Written[Deployment] = await registry.guaranteed_update(DEPLOYMENTS, key_of(d), lambda current: None)
    assert not written.changed
    assert written.revision == int(d.metadata.resource_version)
    kv = await private_store.get(key_of(d))
    assert kv is not None and kv.mod_revision == written.revision


async def test_a_precondition_on_an_old_version_is_a_conflict_at_once(private_store: EtcdStore, namespace: str) -> None:
    registry = Registry(private_store)
    d = await made(registry, namespace)
    stale = int(d.metadata.resource_version)
    await Objects(private_store).update(relabel(d, first="1"))
    calls = 0

    def mutate(current: Deployment) -> Deployment:
        nonlocal calls
        calls += 1
        return relabel(current, second="1")

    with pytest.raises(Conflict, match="has been modified since you read it"):
        await registry.guaranteed_update(DEPLOYMENTS, key_of(d), mutate, precondition=stale)
    assert calls == 1
    assert (await Objects(private_store).get(Deployment, "web", namespace=namespace)).metadata.labels == {"first": "1"}


async def test_a_conflict_the_mutate_raises_is_the_callers_and_is_not_retried(private_store: EtcdStore, namespace: str) -> None:
    registry = Registry(private_store)
    d = await made(registry, namespace)
    calls = 0

    def mutate(current: Deployment) -> Deployment:
        nonlocal calls
        calls += 1
        raise Conflict("the patch's test failed")

    with pytest.raises(Conflict, match="test failed"):
        await registry.guaranteed_update(DEPLOYMENTS, key_of(d), mutate)
    assert calls == 1


async def test_an_object_that_keeps_changing_is_given_up_after_the_attempts(private_store: EtcdStore, namespace: str) -> None:
    registry = Registry(private_store)
    d = await made(registry, namespace)
    objects = Objects(private_store)

    async def always_beaten(current: Deployment) -> Deployment:
        await objects.update(relabel(await objects.get(Deployment, "web", namespace=namespace), n=uuid.uuid4().hex))
        return relabel(current, ours="1")

    with pytest.raises(Conflict, match="keeps changing"):
        await registry.guaranteed_update(DEPLOYMENTS, key_of(d), always_beaten, attempts=3)


async def test_a_removal_answer_deletes_with_a_compare_and_swap(private_store: EtcdStore, namespace: str) -> None:
    registry = Registry(private_store)
    d = await made(registry, namespace)
    written: Written[Deployment] = await registry.guaranteed_update(DEPLOYMENTS, key_of(d), lambda current: Removal(current))
    assert written.removed
    assert await private_store.get(key_of(d)) is None
    with pytest.raises(NotFound, match="not found"):
        await registry.guaranteed_update(DEPLOYMENTS, key_of(d), lambda current: current)


async def test_finalizers_hold_a_delete_until_the_last_one_is_cleared(private_store: EtcdStore, namespace: str) -> None:
    objects = Objects(private_store)
    d = await objects.create(Deployment(metadata=ObjectMeta(name="held", namespace=namespace,
                                                            finalizers=["example.com/a", "example.com/b"])))
    marked = await objects.delete(Deployment, "held", namespace=namespace)
    assert marked is not None and marked.metadata.deletion_timestamp
    one_left = await objects.update(msgspec.structs.replace(
        marked, metadata=msgspec.structs.replace(marked.metadata, finalizers=["example.com/b"])))
    assert await private_store.get(key_of(d)) is not None and one_left.metadata.finalizers == ["example.com/b"]
    await objects.update(msgspec.structs.replace(
        one_left, metadata=msgspec.structs.replace(one_left.metadata, finalizers=[])))
    assert await private_store.get(key_of(d)) is None
    assert await objects.delete(Deployment, "held", namespace=namespace) is None  # already gone


async def test_a_create_of_an_existing_name_is_already_exists(private_store: EtcdStore, namespace: str) -> None:
    registry = Registry(private_store)
    await made(registry, namespace)
    with pytest.raises(AlreadyExists, match=f'deployment "web" in namespace "{namespace}" already exists'):
        await made(registry, namespace)


async def test_bindings_commit_in_one_batch_and_a_stale_one_loses_alone(private_store: EtcdStore, namespace: str) -> None:
    registry = Registry(private_store)
    cs = [await registry.create(Container(metadata=ObjectMeta(name=f"c{i}", namespace=namespace),
                                          spec=ContainerSpec(image="busybox"))) for i in range(3)]
    stale = cs[1]
    await Objects(private_store).update(relabel(await Objects(private_store).get(Container, "c1", namespace=namespace), x="1"))
    results = await registry.bind([Decided(key_of(c), c, "n1") for c in cs])
    assert results[0] is not None and results[2] is not None and results[1] is None
    for c, result in zip(cs, results, strict=True):
        kv = await private_store.get(key_of(c))
        assert kv is not None
        stored = typed.decode(kv, Container)
        if c is stale:
            assert stored.spec.node == ""
        else:
            assert (stored.spec.node, stored.status.phase, kv.mod_revision) == ("n1", "Scheduled", result)
            assert stored.metadata.generation == 1


async def test_a_cache_that_lags_behind_the_callers_version_is_read_again_from_etcd(
        private_store: EtcdStore, namespace: str) -> None:
    registry = Registry(private_store)
    old = await made(registry, namespace)
    newer = await Objects(private_store).update(
        relabel(await Objects(private_store).get(Deployment, "web", namespace=namespace), newer="1"))

    def mutate(current: Deployment) -> Deployment:
        if current.metadata.resource_version != newer.metadata.resource_version:
            raise Conflict("not the version the client patched")  # as a patch naming its resourceVersion does
        return relabel(current, ours="1")

    written = await registry.guaranteed_update(DEPLOYMENTS, key_of(old), mutate,
                                               cached=(old, int(old.metadata.resource_version)),
                                               precondition=int(newer.metadata.resource_version))
    assert written.obj.metadata.labels == {"newer": "1", "ours": "1"}
