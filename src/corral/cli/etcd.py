"""``corral etcd snapshot save|list|restore``: backups of the cluster's etcd (store/snapshots.py).

They run on a control host and find etcd the way ``serve`` left it: the endpoints in
``<data-dir>/etcd.endpoints`` (written by every control start), or ``--etcd``. ``restore`` works on
the data dir alone, with ``serve`` stopped; the next ``serve`` start runs on the restored data.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from corral.model.errors import CorralError

DATA_DIR = Path("/var/lib/corral")

if TYPE_CHECKING:
    from corral.store.etcd import EtcdTls


def _client_tls(data_dir: Path) -> EtcdTls | None:
    """The client certificate ``serve`` made for its embedded etcd (which takes TLS clients only)."""
    from corral.store.etcd import EtcdTls

    tls_dir = data_dir / "tls" / "etcd"
    if not (tls_dir / "client.crt").exists():
        return None
    return EtcdTls(ca_file=tls_dir / "ca.crt", cert_file=tls_dir / "client.crt", key_file=tls_dir / "client.key")


def _endpoints(data_dir: Path, given: tuple[str, ...]) -> list[str]:
    if given:
        return list(given)
    path = data_dir / "etcd.endpoints"
    try:
        endpoints: list[str] = json.loads(path.read_text())
    except (OSError, ValueError):
        raise click.UsageError(f"no etcd endpoints recorded in {path} (is corral serving with --data-dir "
                               f"{data_dir}?); say --etcd URL") from None
    return endpoints


@click.group()
def etcd() -> None:
    """The cluster's etcd: snapshots."""


@etcd.group()
def snapshot() -> None:
    """Save, list and restore snapshots of etcd (default directory: <data-dir>/snapshots)."""


_data_dir = click.option("--data-dir", type=click.Path(path_type=Path), default=DATA_DIR, show_default=True,
                         help="corral's data dir (where serve keeps etcd, and snapshots go).")


@snapshot.command("save")
@click.argument("file", required=False, type=click.Path(path_type=Path))
@_data_dir
@click.option("--etcd", "etcd_urls", multiple=True, metavar="URL", help="etcd endpoint (default: the one serve records).")
def save(file: Path | None, data_dir: Path, etcd_urls: tuple[str, ...]) -> None:
    """Save a snapshot of etcd to FILE (default: <data-dir>/snapshots/corral-snapshot-<time>.db)."""
    from corral.store import snapshots
    from corral.store.etcd import EtcdStore

    path = file or data_dir / "snapshots" / snapshots.snapshot_name()

    async def go() -> int:
        store = EtcdStore(_endpoints(data_dir, etcd_urls)[:1], tls=_client_tls(data_dir))
        try:
            return await snapshots.save(store, path)
        finally:
            await store.close()

    try:
        size = asyncio.run(go())
    except CorralError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"saved {path} ({size} bytes)")


@snapshot.command("list")
@_data_dir
@click.option("--dir", "directory", type=click.Path(path_type=Path), help="Where the snapshots are (default: <data-dir>/snapshots).")
def list_(data_dir: Path, directory: Path | None) -> None:
    """List the snapshots, oldest first, with their revision and key count."""
    from corral.store import snapshots

    found = snapshots.list_snapshots(directory or data_dir / "snapshots")
    click.echo(f"{'NAME':<40} {'SIZE':>12} {'REVISION':>10} {'KEYS':>8}  TAKEN (UTC)")
    for s in found:
        try:
            st = asyncio.run(snapshots.status(s.path))
            rev, keys = str(st.get("revision", "?")), str(st.get("totalKey", "?"))
        except CorralError:
            rev, keys = "corrupt?", "-"
        taken = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s.taken))
        click.echo(f"{s.path.name:<40} {s.size:>12} {rev:>10} {keys:>8}  {taken}")


@snapshot.command("restore")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@_data_dir
def restore(file: Path, data_dir: Path) -> None:
    """Make the embedded etcd's data a new single-member cluster from FILE (serve must be stopped).

    The old data dir is kept beside it (etcd.before-restore-<time>). Start serve again afterwards:
    every agent lists again and reconciles its node to the restored state."""
    from corral.aiokit.processes import find_leftovers
    from corral.store import snapshots

    data_dir = data_dir.resolve()
    etcd_dir = data_dir / "etcd"
    running = find_leftovers(pid_file=data_dir / "etcd.pid", program="etcd", marker=str(etcd_dir))
    if running:
        raise click.ClickException(f"etcd is running on {etcd_dir} (pid {running[0]}): stop corral first")
    try:
        aside = asyncio.run(snapshots.restore(file.resolve(), etcd_dir))
    except CorralError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"restored {file} into {etcd_dir} (the old data is in {aside}); start corral serve again")
