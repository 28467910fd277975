"""``corral logs NAME``: a container's output, through the API (which asks the node's agent)."""

from __future__ import annotations

import sys

import click

from corral.api.client import ApiClient
from corral.cli.connection import api_command, connection_options


@click.command()
@click.argument("name")
@click.option("-n", "--namespace", default="default", show_default=True, help="The container's namespace.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines as they come.")
@click.option("--tail", type=int, default=None, help="Only the last N lines.")
@click.option("--timestamps", is_flag=True, help="Prefix each line with the time it was written.")
@click.option("-p", "--previous", is_flag=True, help="The run before the latest restart.")
@connection_options
@api_command
async def logs(client: ApiClient, *, name: str, namespace: str, follow: bool, tail: int | None,
               timestamps: bool, previous: bool) -> int:
    """Print the log of container NAME (stdout and stderr, in order).

    When no container NAME exists, the log of the most recently deleted one is shown, for as long as
    its node keeps it (the worker's --keep-logs, 1 h by default).
    """
    params: dict[str, str] = {}
    if follow:
        params["follow"] = "1"
    if tail is not None:
        params["tail"] = str(max(tail, 0))
    if timestamps:
        params["timestamps"] = "1"
    if previous:
        params["previous"] = "1"
    out = sys.stdout.buffer
    async for chunk in client.stream(f"/namespaces/{namespace}/containers/{name}/logs", params=params):
        out.write(chunk)
        out.flush()
    return 0
