"""Node lifecycle logic without I/O: the release countdown, the agent's fence, and drain's eviction plan."""

from __future__ import annotations

from corral.cli.nodes import max_unavailable, plan_evictions
from corral.controllers.daemonsets import build_container
from corral.controllers.nodes import container_lost_message, node_lost_message, release_countdown, stays_on_lost_node
from corral.model.resources import (
    Container,
    ContainerSpec,
    ContainerStatus,
    ContainerTemplate,
    DaemonSet,
    DaemonSetSpec,
    Deployment,
    DeploymentSpec,
    DeploymentStrategy,
    LabelSelector,
    ObjectMeta,
    OwnerReference,
    RollingUpdate,
)
from corral.roles.fencing import Fence


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_countdown_reaches_zero_at_grace_plus_margin_and_the_messages_say_so() -> None:
    assert release_countdown(5.0, grace=5.0, margin=3.0) == 3.0
    assert release_countdown(8.5, grace=5.0, margin=3.0) < 0
    assert container_lost_message("node-2", 2.2) == "node node-2 lost; released in 3s"
    assert node_lost_message("node-2", 6.4, grace=5.0, release_in=1.6) == \
        "no heartbeat from node-2 for 6s (grace 5s); its containers are released in 2s"
    assert node_lost_message("node-2", 9, grace=5.0, release_in=-1) == \
        "no heartbeat from node-2 within the grace of 5s; its containers were released"


async def test_the_fence_goes_up_after_fence_after_without_contact_and_kills_everything_once() -> None:
    clock = Clock()
    kills: list[float] = []

    async def kill_all() -> int:
        kills.append(clock.now)
        return 2

    fence = Fence(fence_after=4.0, kill_all=kill_all, clock=clock)
    clock.now += 3.9
    assert not fence.due()
    fence.contact(sent_at=clock.now - 0.5)  # a heartbeat sent half a second ago succeeded
    clock.now += 3.4
    assert not fence.due()
    clock.now += 0.2
    assert fence.due()
    await fence.fence()
    await fence.fence()
    assert fence.fenced and kills == [clock.now] and fence.blocks("any-uid")


async def test_lifting_the_fence_remembers_what_was_released_meanwhile_so_it_never_starts_again() -> None:
    clock = Clock()

    async def kill_all() -> int:
        return 0

    swept: list[set[str]] = []
    resynced: list[bool] = []

    async def bound_now() -> set[str]:
        return {"kept"}

    async def sweep(wanted: set[str]) -> None:
        swept.append(wanted)

    fence = Fence(fence_after=1.0, kill_all=kill_all, clock=clock)
    clock.now += 2
    await fence.fence()
    await fence.lift(known=["kept", "released"], bound_now=bound_now, sweep=sweep, resync=lambda: resynced.append(True))
    assert not fence.fenced and swept == [{"kept"}] and resynced == [True]
    assert fence.blocks("released") and not fence.blocks("kept")


def _deployment(uid: str, replicas: int, max_unavail: int | str) -> Deployment:
    return Deployment(metadata=ObjectMeta(name=uid, namespace="default", uid=uid),
                      spec=DeploymentSpec(replicas=replicas, strategy=DeploymentStrategy(
                          rolling_update=RollingUpdate(max_unavailable=max_unavail))))


def _container(name: str, node: str, owner: str = "", *, ready: bool = True) -> Container:
    refs = [OwnerReference(kind="Deployment", name=owner, uid=owner, controller=True)] if owner else []
    c = Container(metadata=ObjectMeta(name=name, namespace="default", uid=name, owner_references=refs),
                  status=ContainerStatus(phase="Running", ready=ready))
    c.spec.node = node
    return c


def test_max_unavailable_resolves_percentages_down_but_never_below_one() -> None:
    assert max_unavailable(_deployment("d", 10, "25%")) == 2
    assert max_unavailable(_deployment("d", 3, "25%")) == 1
    assert max_unavailable(_deployment("d", 4, 0)) == 1
    assert max_unavailable(_deployment("d", 4, 2)) == 2


def test_drain_evicts_within_each_deployments_budget_and_unready_ones_freely() -> None:
    d = _deployment("web", 4, 1)
    here = [_container("w1", "n1", "web"), _container("w2", "n1", "web"), _container("w3", "n1", "web", ready=False)]
    everywhere = [*here, _container("w4", "n2", "web")]
    plan = plan_evictions(here, [d], everywhere, force=False)
    # 3 of 4 are available: 1 unavailable already uses the whole budget of 1; only the unready one goes
    assert [c.metadata.name for c in plan.evict] == ["w3"]
    assert [c.metadata.name for c in plan.waiting] == ["w1", "w2"]
    everywhere.append(_container("w5", "n2", "web"))  # a replacement became available elsewhere
    plan = plan_evictions(here[:2], [d], everywhere, force=False)
    assert [c.metadata.name for c in plan.evict] == ["w1"] and [c.metadata.name for c in plan.waiting] == ["w2"]


def test_drain_refuses_unmanaged_containers_unless_forced() -> None:
    lone = _container("lone", "n1")
    assert plan_evictions([lone], [], [lone], force=False).refused == [lone]
    assert plan_evictions([lone], [], [lone], force=True).evict == [lone]


def test_a_daemon_stays_bound_to_a_lost_node_and_an_ordinary_container_is_released() -> None:
    ds = DaemonSet(metadata=ObjectMeta(name="logs", namespace="default", uid="u"), spec=DaemonSetSpec(
        selector=LabelSelector(match_labels={"app": "logs"}),
        template=ContainerTemplate(spec=ContainerSpec(image="i"))))
    assert stays_on_lost_node(build_container(ds, "node-1", "h"))
    assert not stays_on_lost_node(Container(metadata=ObjectMeta(name="web"), spec=ContainerSpec(image="i")))
