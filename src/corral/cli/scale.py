"""``corral scale DEPLOYMENT --replicas N``: set a deployment's ``spec.replicas``.

The name may be ``web`` or ``deployment/web``. ``--current-replicas`` makes the change
conditional, as kubectl's precondition does: nothing is written unless the deployment wants that
many now. The write is one JSON patch (a ``test`` of the current count when asked, then a
``replace``): no read-modify-write, no conflict to retry; the controller does the rest.
"""

from __future__ import annotations

import click

from corral.api.client import ApiClient
from corral.cli.connection import api_command, connection_options
from corral.cli.rollout import deployment_name
from corral.model.errors import Conflict
from corral.model.resources import Deployment


@click.command()
@click.argument("name")
@click.option("--replicas", type=click.IntRange(min=0), required=True, help="How many containers to run.")
@click.option("--current-replicas", type=click.IntRange(min=0), default=None,
              help="Only scale if the deployment wants this many now.")
@click.option("-n", "--namespace", default="default", show_default=True, help="The deployment's namespace.")
@connection_options
@api_command
async def scale(client: ApiClient, *, name: str, replicas: int, current_replicas: int | None, namespace: str) -> int:
    """Set the number of replicas of a deployment."""
    name = deployment_name(name)

    ops: list[dict[str, object]] = []
    if current_replicas is not None:
        ops.append({"op": "test", "path": "/spec/replicas", "value": current_replicas})
    ops.append({"op": "replace", "path": "/spec/replicas", "value": replicas})
    try:
        await client.patch(Deployment, name, ops, namespace=namespace, json_patch=True)
    except Conflict:
        if current_replicas is None:
            raise
        now = await client.get(Deployment, name, namespace=namespace)
        raise Conflict(f'deployment "{name}" wants {now.spec.replicas} replicas, not {current_replicas}; '
                       "nothing changed") from None
    click.echo(f"deployment.corral/{name} scaled to {replicas}")
    return 0
