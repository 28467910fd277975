"""``corral why-not CONTAINER [NODE]``: per node, which filter rejects the container, and why.

It asks the API for the nodes and containers and runs the scheduler's own filters over them, in
this process, with the same code the scheduler uses — so the answer is the scheduler's, for the
cluster as the API shows it now (the leader may be a moment behind or ahead).
"""

from __future__ import annotations

import click

from corral.api.client import ApiClient
from corral.cli import styling
from corral.cli.connection import api_command, connection_options
from corral.model.kinds import CONTAINERS
from corral.model.resources import Container, Node, Volume
from corral.scheduler.affinity import prepare
from corral.scheduler.algorithm import Selector
from corral.scheduler.cache import SchedulerCache
from corral.scheduler.framework import ContainerRequest
from corral.scheduler.policy import build_policy
from corral.scheduler.volumes import volume_filter


@click.command(name="why-not")
@click.argument("name")
@click.argument("node", required=False)
@click.option("-n", "--namespace", default="default", show_default=True, help="The container's namespace.")
@click.option("--policy", type=click.Choice(["spread", "binpack"]), default="spread", show_default=True,
              help="The scheduling policy to judge with (the cluster's, normally).")
@connection_options
@api_command
async def why_not(client: ApiClient, *, name: str, node: str | None, namespace: str, policy: str) -> int:
    """Show, for every node (or NODE), whether container NAME fits there and, if not, why."""
    target = await client.get(Container, name, namespace=namespace)
    nodes, _ = await client.list(Node, namespace=None)
    containers, _ = await client.list(Container, namespace=None)
    info = CONTAINERS
    key = info.key(namespace, name)
    cache = SchedulerCache()
    for listed in nodes:
        cache.set_node(listed)
    for c in containers:
        other = info.key(c.metadata.namespace, c.metadata.name)
        if other != key:
            cache.set_container(other, c)
    request = prepare(ContainerRequest.of(key, target), cache)  # counts for affinity and spreading
    judge = build_policy(policy)
    bindings = volume_filter(judge)
    if bindings is not None and request.named_volumes:  # where the volumes it mounts are bound
        volumes, _ = await client.list(Volume, namespace=namespace)
        for v in volumes:
            bindings.set_volume(v)
    verdicts = Selector(judge).explain(request, cache.nodes())
    if node is not None:
        if node not in verdicts:
            click.echo(f"error: node {node!r} not found (nodes: {', '.join(sorted(verdicts)) or 'none'})", err=True)
            return 1
        verdicts = {node: verdicts[node]}
    where = f" (bound to {target.spec.node})" if target.spec.node else ""
    click.echo(f"container/{name}{where}: {target.status.phase}"
               + (f", {target.status.reason}: {target.status.message}" if target.status.reason else ""))
    if not verdicts:
        click.echo("no nodes")
        return 0
    rows = [[node_name, "fits" if reason is None else reason] for node_name, reason in sorted(verdicts.items())]
    color = styling.color_enabled()
    styling.echo(styling.render(["NODE", "VERDICT"], rows, color=color), color=color)
    return 0
