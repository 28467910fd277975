"""``corral cordon|uncordon|drain NODE``: take a node out of scheduling, and empty it gracefully.

``cordon`` sets the Node's ``spec.unschedulable`` (the scheduler's NodeSchedulable filter then
leaves it out; what runs there keeps running); ``uncordon`` clears it. Both are compare-and-swap
updates, retried when someone else (the agent's heartbeat) wrote first.

``drain`` cordons, then evicts the node's containers with a graceful delete (SIGTERM, the grace
period, SIGKILL on the node) until none are left, in rounds. Like a disruption budget, it never
takes a Deployment below ``replicas - maxUnavailable`` available replicas: each round it counts the
deployment's available (ready, not terminating) containers across the cluster and evicts at most
the difference of its ready containers here; containers that are not ready cost nothing and go at
once; then it waits for the replacements to be available before the next. Containers no
Deployment owns would not come back, so like ``kubectl drain`` it refuses them unless ``--force``.
It gives up after ``--timeout`` with the list of what is left. ``plan_evictions`` is the pure
decision; the command is the loop around it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import click

from corral.api.client import ApiClient
from corral.cli.connection import api_command, connection_options
from corral.model.errors import CorralError, NotFound
from corral.model.resources import Container, Deployment, Node, OwnerReference

ROUND_SECONDS = 1.0


class DrainRefused(CorralError):
    """The node has containers that nothing would replace, and --force was not given."""

    reason = "DrainRefused"


class DrainTimeout(CorralError):
    reason = "DrainTimeout"


# --- cordon / uncordon ----------------------------------------------------------------------


async def set_unschedulable(client: ApiClient, name: str, value: bool) -> bool:
    """Set ``spec.unschedulable``; False when it already had that value."""
    node = await client.get(Node, name)
    if node.spec.unschedulable == value:
        return False
    await client.patch(Node, name, {"spec": {"unschedulable": value}})  # the server merges it on the newest version
    return True


@click.command()
@click.argument("node")
@connection_options
@api_command
async def cordon(client: ApiClient, *, node: str) -> int:
    """Mark NODE unschedulable: nothing new is placed there; what runs keeps running."""
    changed = await set_unschedulable(client, node, True)
    click.echo(f"node/{node} {'cordoned' if changed else 'already cordoned'}")
    return 0


@click.command()
@click.argument("node")
@connection_options
@api_command
async def uncordon(client: ApiClient, *, node: str) -> int:
    """Mark NODE schedulable again."""
    changed = await set_unschedulable(client, node, False)
    click.echo(f"node/{node} {'uncordoned' if changed else 'already schedulable'}")
    return 0


# --- drain: the decision --------------------------------------------------------------------


def max_unavailable(d: Deployment) -> int:
    """The deployment's maxUnavailable as a count (a percentage of replicas rounds down); at least 1."""
    value = d.spec.strategy.rolling_update.max_unavailable
    if isinstance(value, str):
        text = value.strip()
        count = math.floor(d.spec.replicas * float(text[:-1]) / 100) if text.endswith("%") else int(text or 0)
    else:
        count = value
    return max(count, 1)  # a drain must be able to move something


def controller_of(c: Container) -> OwnerReference | None:
    return next((r for r in c.metadata.owner_references if r.controller and r.kind == Deployment.KIND), None)


def available(c: Container) -> bool:
    return not c.metadata.deletion_timestamp and c.status.phase == "Running" and c.status.ready


@dataclass
class Plan:
    evict: list[Container] = field(default_factory=list)
    waiting: list[Container] = field(default_factory=list)  # held back by a deployment's budget
    refused: list[Container] = field(default_factory=list)  # unmanaged, and no --force
    terminating: list[Container] = field(default_factory=list)


def plan_evictions(on_node: Sequence[Container], deployments: Iterable[Deployment], everywhere: Iterable[Container],
                   *, force: bool) -> Plan:
    """Which of the node's containers to evict now (pure: the tests call it with plain data)."""
    by_uid = {d.metadata.uid: d for d in deployments}
    up: dict[str, int] = {}
    for c in everywhere:
        ref = controller_of(c)
        if ref is not None and available(c):
            up[ref.uid] = up.get(ref.uid, 0) + 1
    budget = {uid: max_unavailable(d) - max(d.spec.replicas - up.get(uid, 0), 0) for uid, d in by_uid.items()}
    plan = Plan()
    for c in on_node:
        if c.metadata.deletion_timestamp:
            plan.terminating.append(c)
            continue
        ref = controller_of(c)
        owner = by_uid.get(ref.uid) if ref is not None else None
        if owner is None:
            (plan.evict if force or ref is not None else plan.refused).append(c)  # an orphan goes anyway
        elif not available(c) or c.status.phase in ("Succeeded", "Failed"):
            plan.evict.append(c)  # not serving: evicting it costs the deployment nothing
        elif budget[owner.metadata.uid] > 0:
            budget[owner.metadata.uid] -= 1
            plan.evict.append(c)
        else:
            plan.waiting.append(c)
    return plan


def _ref(c: Container) -> str:
    return f"{c.metadata.namespace}/{c.metadata.name}"


# --- drain: the loop ------------------------------------------------------------------------


async def drain_node(client: ApiClient, node: str, *, force: bool, grace: int | None, timeout: float,
                     echo: bool = True) -> None:
    """Cordon ``node`` and evict everything on it within the budgets; raises DrainTimeout/DrainRefused."""
    say = click.echo if echo else (lambda _m: None)
    if await set_unschedulable(client, node, True):
        say(f"node/{node} cordoned")
    deadline = time.monotonic() + timeout
    evicted: set[str] = set()
    while True:
        on_node, _ = await client.list(Container, namespace=None, field_selector=f"spec.node={node}")
        if not on_node:
            return
        deployments, _ = await client.list(Deployment, namespace=None)
        everywhere, _ = await client.list(Container, namespace=None)
        plan = plan_evictions(on_node, deployments, everywhere, force=force)
        if plan.refused:
            names = ", ".join(_ref(c) for c in plan.refused)
            raise DrainRefused(f"node/{node} is cordoned but not drained: no Deployment owns {names}, so nothing "
                               "would replace them; pass --force to delete them anyway")
        for c in plan.evict:
            try:
                await client.delete(Container, c.metadata.name, namespace=c.metadata.namespace, grace_period=grace)
            except NotFound:
                continue
            if c.metadata.uid not in evicted:
                evicted.add(c.metadata.uid)
                say(f"evicting container/{_ref(c)}")
        if time.monotonic() > deadline:
            left = ", ".join(_ref(c) for c in on_node)
            raise DrainTimeout(f"node/{node} not drained within {timeout:g}s; still there: {left}")
        await asyncio.sleep(ROUND_SECONDS)


@click.command()
@click.argument("node")
@click.option("--force", is_flag=True, help="Also delete containers that no Deployment owns (they do not come back).")
@click.option("--grace-period", type=click.IntRange(min=0), default=None, metavar="SECONDS",
              help="Seconds each container gets after SIGTERM (default: its own terminationGracePeriodSeconds).")
@click.option("--timeout", type=click.FloatRange(min=0), default=300.0, show_default=True, metavar="SECONDS",
              help="Give up after this long, listing what is left.")
@connection_options
@api_command
async def drain(client: ApiClient, *, node: str, force: bool, grace_period: int | None, timeout: float) -> int:
    """Cordon NODE and evict its containers, keeping each Deployment within its maxUnavailable."""
    await drain_node(client, node, force=force, grace=grace_period, timeout=timeout)
    click.echo(f"node/{node} drained")
    return 0
