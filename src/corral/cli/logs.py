"""``corral logs NAME``: a container's output, through the API (which asks the node's agent).

``corral logs job/NAME`` reads the Job's most recent container (the newest one created with its
``corral.io/job-name`` label), as ``kubectl logs job/NAME`` picks one of the job's pods.
"""

from __future__ import annotations

import sys

import click

from corral.api.client import ApiClient
from corral.cli.completion import complete_container
from corral.cli.connection import api_command, connection_options
from corral.model.errors import NotFound
from corral.model.kinds import CONTAINERS, JOBS, lookup
from corral.model.resources import Container

JOB_NAME_LABEL = "corral.io/job-name"  # as controllers/jobs.py labels a Job's containers


async def job_container(client: ApiClient, job: str, namespace: str) -> str:
    """The name of the most recently created container of Job ``job``."""
    items, _ = await client.list(Container, namespace=namespace, label_selector=f"{JOB_NAME_LABEL}={job}")
    if not items:
        raise NotFound(f'job "{job}" has no containers in namespace "{namespace}" (yet)')
    return max(items, key=lambda c: (c.metadata.creation_timestamp, c.metadata.name)).metadata.name


@click.command()
@click.argument("name", shell_complete=complete_container)
@click.option("-n", "--namespace", default="default", show_default=True, help="The container's namespace.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines as they come.")
@click.option("--tail", type=int, default=None, help="Only the last N lines.")
@click.option("--timestamps", is_flag=True, help="Prefix each line with the time it was written.")
@click.option("-p", "--previous", is_flag=True, help="The run before the latest restart.")
@connection_options
@api_command
async def logs(client: ApiClient, *, name: str, namespace: str, follow: bool, tail: int | None,
               timestamps: bool, previous: bool) -> int:
    """Print the log of container NAME (stdout and stderr, in order); job/NAME: the Job's newest container.

    When no container NAME exists, the log of the most recently deleted one is shown, for as long as
    its node keeps it (the worker's --keep-logs, 1 h by default).
    """
    kind, _, rest = name.partition("/")
    target = lookup(kind) if rest else None  # any name of the kind: job, jobs, container, ctr, …
    if target is JOBS:
        name = await job_container(client, rest, namespace)
    elif target is CONTAINERS:
        name = rest
    elif rest:
        raise click.UsageError(f"logs reads NAME, container/NAME or job/NAME, not {kind}/")
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
