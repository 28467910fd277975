"""``corral create namespace NAME``: create an object from its name alone."""

from __future__ import annotations

import click

from corral.api.client import ApiClient
from corral.cli import output
from corral.cli.connection import api_command, connection_options
from corral.model.errors import CorralError, Unavailable
from corral.model.resources import Namespace, ObjectMeta


@click.group()
def create() -> None:
    """Create an object from a few flags (use `corral apply -f` for anything more)."""


@create.command(name="namespace")
@click.argument("name")
@connection_options
@api_command
async def create_namespace(client: ApiClient, *, name: str) -> int:
    """Create the namespace NAME."""
    what = output.ref(output.kind_info("Namespace"), name)
    try:
        await client.create(Namespace(metadata=ObjectMeta(name=name)))
    except Unavailable:
        raise
    except CorralError as e:
        output.print_error(e, what=what)
        return 1
    click.echo(f"{what} created")
    return 0
