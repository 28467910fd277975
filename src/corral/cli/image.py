"""``corral image``: images on this node's containerd (pull one with progress bars; for air-gapped
machines, import a tarball).

These commands talk to containerd on this machine, not to the API: an image imported here is
available to the containers the scheduler puts on this node.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from corral.cli import output
from corral.model.errors import CorralError
from corral.runtime.archive import import_archive
from corral.runtime.client import Client
from corral.runtime.images import list_images, remove_image

DEFAULT_SOCKET = "/run/containerd/containerd.sock"


def _socket(socket: str | None, data_dir: Path) -> str:
    if socket:
        return socket
    embedded = data_dir / "containerd" / "c.sock"
    return str(embedded) if embedded.exists() else DEFAULT_SOCKET


def _run(coro: object) -> None:
    try:
        asyncio.run(coro)  # type: ignore[arg-type]
    except CorralError as e:
        output.print_error(e)
        raise SystemExit(1) from None


_socket_option = click.option("--containerd-socket", default=None,
                              help=f"containerd's socket (default: the embedded one under --data-dir if it runs, else {DEFAULT_SOCKET}).")
_data_dir_option = click.option("--data-dir", type=click.Path(path_type=Path), default=Path("/var/lib/corral"),
                                show_default=True, help="The data dir `corral serve` uses (to find its embedded containerd).")


@click.group()
def image() -> None:
    """Images on this node's containerd."""


@image.command(name="pull")
@click.argument("ref")
@click.option("--insecure-registry", "insecure", multiple=True, metavar="HOST:PORT",
              help="A registry to reach over plain HTTP (loopback registries always are).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars (they are drawn only on a terminal anyway).")
@_socket_option
@_data_dir_option
def pull_(ref: str, insecure: tuple[str, ...], quiet: bool, containerd_socket: str | None, data_dir: Path) -> None:
    """Pull image REF into this node's containerd over the OCI distribution API, a bar per layer."""
    from corral.cli.pullprogress import PullDisplay
    from corral.runtime.pull import pull

    async def main() -> None:
        async with Client(_socket(containerd_socket, data_dir)) as client:
            with PullDisplay(enabled=False if quiet else None) as display:
                img = await pull(client, ref, insecure_registries=insecure, progress=display)
            click.echo(f"pulled {img.name} ({img.target_digest})")

    _run(main())


@image.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="The name to give the image when the archive names none.")
@_socket_option
@_data_dir_option
def import_(file: Path, name: str | None, containerd_socket: str | None, data_dir: Path) -> None:
    """Load an OCI-layout or docker-save tarball FILE into this node's containerd."""

    async def main() -> None:
        async with Client(_socket(containerd_socket, data_dir)) as client:
            for img in await import_archive(client, file, name=name):
                click.echo(f"imported {img.name} ({img.target_digest})")

    _run(main())


@image.command(name="list")
@_socket_option
@_data_dir_option
def list_(containerd_socket: str | None, data_dir: Path) -> None:
    """List the images this node's containerd has."""

    async def main() -> None:
        async with Client(_socket(containerd_socket, data_dir)) as client:
            images = await list_images(client)
        click.echo(f"{'NAME':<60} DIGEST")
        for img in sorted(images, key=lambda i: i.name):
            click.echo(f"{img.name:<60} {img.target_digest[:19]}")

    _run(main())


@image.command(name="remove")
@click.argument("name")
@_socket_option
@_data_dir_option
def remove(name: str, containerd_socket: str | None, data_dir: Path) -> None:
    """Remove the image NAME from this node's containerd."""

    async def main() -> None:
        async with Client(_socket(containerd_socket, data_dir)) as client:
            await remove_image(client, name)
        click.echo(f"removed {name}")

    _run(main())
