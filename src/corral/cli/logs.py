"""``corral logs NAME``: a container's output, through the API (which asks the node's agent)."""

from __future__ import annotations

import sys

import click

from corral.api.client import ApiClient
from corral.cli.completion import complete_container
from corral.cli.connection import api_command, connection_options


@click.command()
@click.argument("name", shell_complete=complete_container)
@click.option("-n", "--namespace", default="default", show_default=True, help="The container's namespace.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines as they come.")
@click.option("--tail", type=int, default=None, help="Only the last N lines.")
@click.option("--timestamps", is_flag=True, help="Prefix each line with the time it was written.")
@connection_options
@api_command
async def logs(client: ApiClient, *, name: str, namespace: str, follow: bool, tail: int | None,
               timestamps: bool) -> int:
    """Print the log of container NAME (stdout and stderr, in order)."""
    params: dict[str, str] = {}
    if follow:
        params["follow"] = "1"
    if tail is not None:
        params["tail"] = str(max(tail, 0))
    if timestamps:
        params["timestamps"] = "1"
    out = sys.stdout.buffer
    async for chunk in client.stream(f"/namespaces/{namespace}/containers/{name}/logs", params=params):
        out.write(chunk)
        out.flush()
    return 0
