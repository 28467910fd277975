"""``corral control members [remove NAME]``: the control plane's etcd members (api/members.py).

Every control instance with an embedded etcd is one member (roles/etcdcluster.py). ``members``
lists them with their peer and client URLs, which one leads the raft, and whether each answers;
``members remove NAME`` takes one out of the cluster through etcd's MemberRemove (for an instance
that is gone for good; a running one leaves by itself when stopped with ``serve --leave``).
"""

from __future__ import annotations

import click
import msgspec

from corral.api.client import ApiClient
from corral.cli import styling, tables
from corral.cli.connection import api_command, connection_options


@click.group()
def control() -> None:
    """The control plane: its etcd members."""


@control.group(invoke_without_command=True)
@click.pass_context
def members(ctx: click.Context) -> None:
    """List the etcd members with their health (admin only); `members remove NAME` removes one."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_members)


@members.command("list")
@connection_options
@api_command
async def list_members(client: ApiClient) -> int:
    """List the etcd members: name, peer URL, client URL, leader, healthy."""
    items = msgspec.json.decode(await client.request("GET", "/control/members"))["members"]
    rows = [[m["name"] or "(starting)", ",".join(m["peerURLs"]), ",".join(m["clientURLs"]) or tables.NONE,
             "yes" if m["leader"] else "no", "yes" if m["healthy"] else f"no ({m['error'][:60]})", m["id"]]
            for m in sorted(items, key=lambda m: m["name"])]
    color = styling.color_enabled()
    styling.echo(styling.render(["NAME", "PEER URL", "CLIENT URL", "LEADER", "HEALTHY", "ID"], rows, color=color),
                 color=color)
    return 0 if all(m["healthy"] for m in items) else 1


@members.command("remove")
@click.argument("name")
@connection_options
@api_command
async def remove(client: ApiClient, *, name: str) -> int:
    """Remove the etcd member NAME from the cluster (etcd's MemberRemove)."""
    answer = msgspec.json.decode(await client.request("DELETE", f"/control/members/{name}"))
    click.echo(f"etcd member {answer['removed']} ({answer['id']}) removed")
    return 0
