"""``corral create namespace NAME``: create an object from its name alone.

``corral create job NAME --from=cronjob/NAME`` runs a CronJob's job template now, as Job NAME
(owned by the CronJob, as ``kubectl create job --from`` makes it).
"""

from __future__ import annotations

import click

from corral.api.client import ApiClient
from corral.cli import output
from corral.cli.connection import api_command, connection_options
from corral.controllers.cronjobs import build_job
from corral.model.errors import CorralError, Unavailable
from corral.model.kinds import CRONJOBS, JOBS, NAMESPACES, lookup
from corral.model.resources import CronJob, Namespace, ObjectMeta


@click.group()
def create() -> None:
    """Create an object from a few flags (use `corral apply -f` for anything more)."""


@create.command(name="namespace")
@click.argument("name")
@connection_options
@api_command
async def create_namespace(client: ApiClient, *, name: str) -> int:
    """Create the namespace NAME."""
    what = output.ref(NAMESPACES, name)
    try:
        await client.create(Namespace(metadata=ObjectMeta(name=name)))
    except Unavailable:
        raise
    except CorralError as e:
        output.print_error(e, what=what)
        return 1
    click.echo(f"{what} created")
    return 0


@create.command(name="job")
@click.argument("name")
@click.option("--from", "source", required=True, metavar="cronjob/NAME",
              help="Run the job template of this CronJob now, as the Job NAME (owned by the CronJob).")
@click.option("-n", "--namespace", default="default", show_default=True, help="The namespace of both.")
@connection_options
@api_command
async def create_job(client: ApiClient, *, name: str, source: str, namespace: str) -> int:
    """Create the Job NAME from the job template of a CronJob, now: --from=cronjob/NAME."""
    kind, _, cronjob = source.partition("/")
    if lookup(kind) is not CRONJOBS or not cronjob:
        raise click.UsageError("--from takes cronjob/NAME")
    what = output.ref(JOBS, name)
    try:
        cj = await client.get(CronJob, cronjob, namespace=namespace)
        await client.create(build_job(cj, name=name, scheduled=None, manual=True))
    except Unavailable:
        raise
    except CorralError as e:
        output.print_error(e, what=what)
        return 1
    click.echo(f"{what} created")
    return 0
