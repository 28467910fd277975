"""The ``corral`` command: ``serve`` runs roles; the other commands talk to the API."""

from __future__ import annotations

import click

from corral import __version__
from corral.cli.serve import serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="corral")
def cli() -> None:
    """corral — a container orchestrator on etcd, containerd, runc and CNI."""


cli.add_command(serve)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
