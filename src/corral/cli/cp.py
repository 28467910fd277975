"""``corral cp``: files and directories in and out of a container, as a tar stream over exec.

- ``cp NAME:/path LOCAL``: runs ``tar cf - -C <dir> <base>`` in the container; the stream is written
  to a temporary file here and unpacked with ``tarfile``'s ``data`` filter (no absolute paths, no
  ``..``, no device files) into a temporary directory next to LOCAL, then moved to LOCAL — or into
  LOCAL when it is an existing directory.
- ``cp LOCAL NAME:/path``: packs LOCAL here and runs ``tar xf - -C <dir>`` in the container with the
  archive on stdin; the entry is named after ``/path`` (or, when ``/path`` is an existing directory
  in the container, after LOCAL, inside it).

The container needs a ``tar`` (busybox has one). A failing remote tar is reported with its stderr.
"""

from __future__ import annotations

import asyncio
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import click

from corral.api.client import ApiClient
from corral.cli.connection import api_command, connection_options
from corral.cli.streaming import open_stream, run_session
from corral.model.errors import BadRequest, CorralError

CHUNK = 256 * 1024


class CopyFailed(CorralError):
    reason = "CopyFailed"


def split_remote(arg: str) -> tuple[str, str] | None:
    """(container, path) for ``NAME:/path``; None for a local path."""
    name, sep, path = arg.partition(":")
    if not sep or not name or "/" in name or not path:
        return None
    return name, path


async def _run(client: ApiClient, *, namespace: str, name: str, command: list[str],
               stdin: AsyncIterator[bytes] | None, sink: tempfile._TemporaryFileWrapper[bytes] | None) -> None:
    params = [("command", a) for a in command] + [("stdin", "1" if stdin else "0"), ("stdout", "1"), ("stderr", "1")]
    ws = await open_stream(client, namespace=namespace, name=name, verb="exec", params=params)
    errors = bytearray()
    report = await run_session(ws, stdin=stdin, stdout=(sink.write if sink else lambda _: None),  # type: ignore[arg-type]
                               stderr=errors.extend)
    if report.exit_code != 0:
        detail = errors.decode(errors="replace").strip() or report.message
        raise CopyFailed(f"{' '.join(command[:2])} in {name} failed: {detail}")


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            yield chunk


async def copy_from(client: ApiClient, *, namespace: str, name: str, remote: str, local: Path) -> None:
    remote = posixpath.normpath(remote)
    directory, base = posixpath.split(remote)
    if not base:
        raise BadRequest(f"cannot copy {remote!r}: name a file or directory in the container")
    target = local / base if await asyncio.to_thread(local.is_dir) else local
    with tempfile.NamedTemporaryFile(prefix=".corral-cp-", dir=target.parent) as archive:
        await _run(client, namespace=namespace, name=name, command=["tar", "cf", "-", "-C", directory or "/", base],
                   stdin=None, sink=archive)
        archive.flush()
        staging = Path(tempfile.mkdtemp(prefix=".corral-cp-", dir=target.parent))
        try:
            def unpack() -> None:
                with tarfile.open(archive.name, "r:") as tar:
                    tar.extractall(staging, filter="data")
                unpacked = staging / base
                if not unpacked.exists() and not unpacked.is_symlink():
                    raise CopyFailed(f"the archive from {name} has no {base!r}")
                if target.is_dir() and not target.is_symlink() and unpacked.is_dir():
                    shutil.rmtree(target)
                unpacked.replace(target)

            await asyncio.to_thread(unpack)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


async def copy_to(client: ApiClient, *, namespace: str, name: str, local: Path, remote: str) -> None:
    if not await asyncio.to_thread(local.exists):
        raise BadRequest(f"{local} does not exist")
    remote = posixpath.normpath(remote)
    into_dir = await _remote_is_dir(client, namespace=namespace, name=name, path=remote)
    directory, arcname = (remote, local.name) if into_dir else posixpath.split(remote)
    with tempfile.NamedTemporaryFile(prefix=".corral-cp-") as archive:
        def pack() -> None:
            with tarfile.open(fileobj=archive, mode="w:") as tar:
                tar.add(local, arcname=arcname)
            archive.flush()

        await asyncio.to_thread(pack)
        await _run(client, namespace=namespace, name=name, command=["tar", "xf", "-", "-C", directory or "/"],
                   stdin=_file_chunks(Path(archive.name)), sink=None)


async def _remote_is_dir(client: ApiClient, *, namespace: str, name: str, path: str) -> bool:
    ws = await open_stream(client, namespace=namespace, name=name, verb="exec",
                           params=[("command", "test"), ("command", "-d"), ("command", path), ("stdin", "0")])
    report = await run_session(ws, stdin=None, stdout=lambda _: None, stderr=lambda _: None)
    if report.exit_code is None:
        raise CopyFailed(f"cannot look at {path} in {name}: {report.message}")
    return report.exit_code == 0


@click.command()
@click.argument("source", metavar="SRC")
@click.argument("dest", metavar="DEST")
@click.option("-n", "--namespace", default="default", show_default=True, help="The container's namespace.")
@connection_options
@api_command
async def cp(client: ApiClient, *, source: str, dest: str, namespace: str) -> int:
    """Copy a file or directory between a container and here: `corral cp NAME:/path ./local`
    or `corral cp ./local NAME:/path` (a tar stream over exec; the container needs `tar`)."""
    src_remote, dest_remote = split_remote(source), split_remote(dest)
    if (src_remote is None) == (dest_remote is None):
        raise BadRequest("one of SRC and DEST must be NAME:/path (a container) and the other a local path")
    if src_remote is not None:
        await copy_from(client, namespace=namespace, name=src_remote[0], remote=src_remote[1], local=Path(dest))
    else:
        assert dest_remote is not None
        await copy_to(client, namespace=namespace, name=dest_remote[0], local=Path(source), remote=dest_remote[1])
    return 0
