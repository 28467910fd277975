"""``corral delete KIND NAME...``: delete objects, gracefully where something must clean up first.

A container that was placed on a node is only marked (``deletionTimestamp``): its agent stops it
and then the object goes; the command says which of the two happened.
"""

from __future__ import annotations

import click
import msgspec

from corral.api.client import ApiClient
from corral.cli import output
from corral.cli.completion import complete_kind, complete_name
from corral.cli.connection import api_command, connection_options
from corral.model.errors import CorralError, NotFound

POLICIES = {"background": "Background", "foreground": "Foreground", "orphan": "Orphan"}


@click.command()
@click.argument("kind", shell_complete=complete_kind)
@click.argument("names", nargs=-1, required=True, shell_complete=complete_name)
@click.option("-n", "--namespace", default="default", show_default=True, help="The namespace of the objects.")
@click.option("--cascade", type=click.Choice(list(POLICIES)), default="background", show_default=True,
              help="What happens to objects this one owns; sent as propagationPolicy (the server does not act on it yet).")
@click.option("--grace-period", type=click.IntRange(min=0), default=None, metavar="SECONDS",
              help="Seconds a container gets to stop after SIGTERM before SIGKILL (default: its own setting).")
@click.option("--ignore-not-found", is_flag=True, help="Succeed when an object does not exist.")
@connection_options
@api_command
async def delete(client: ApiClient, *, kind: str, names: tuple[str, ...], namespace: str, cascade: str,
                 grace_period: int | None, ignore_not_found: bool) -> int:
    """Delete the objects of KIND called NAME."""
    info = output.kind_info(kind)
    query = {"propagationPolicy": POLICIES[cascade]}
    if grace_period is not None:
        query["gracePeriodSeconds"] = str(grace_period)
    base = f"/namespaces/{namespace}/{info.plural}" if info.namespaced else f"/{info.plural}"
    failed = 0
    for name in names:
        try:
            body = msgspec.json.decode(await client.request("DELETE", f"{base}/{name}", params=query))
        except NotFound as e:
            if not ignore_not_found:
                output.print_error(e)
                failed += 1
            continue
        except CorralError as e:
            output.print_error(e, what=output.ref(info, name))
            failed += 1
            continue
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp") and meta.get("finalizers"):
            waiting = ", ".join(meta["finalizers"])
            click.echo(f"{output.ref(info, name)} marked for deletion (waiting for {waiting})")
        else:
            click.echo(f"{output.ref(info, name)} deleted")
    return 1 if failed else 0
