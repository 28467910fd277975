"""The ``corral`` command: ``serve`` runs roles; the other commands talk to the API."""

from __future__ import annotations

import click

from corral import __version__
from corral.cli.apply import apply
from corral.cli.create import create
from corral.cli.delete import delete
from corral.cli.describe import describe
from corral.cli.get import get
from corral.cli.image import image
from corral.cli.logs import logs
from corral.cli.nodes import cordon, drain, uncordon
from corral.cli.rollout import rollout
from corral.cli.run import run
from corral.cli.scale import scale
from corral.cli.serve import serve
from corral.cli.sim import sim
from corral.cli.whynot import why_not


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="corral")
def cli() -> None:
    """corral — a container orchestrator on etcd, containerd, runc and CNI."""


cli.add_command(serve)
cli.add_command(why_not)
for node_command in (cordon, uncordon, drain):
    cli.add_command(node_command)
cli.add_command(sim)
for command in (apply, get, describe, delete, run, create, logs, image):
    cli.add_command(command)
cli.add_command(rollout)
cli.add_command(scale)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
