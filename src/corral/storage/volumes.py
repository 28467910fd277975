"""Local volumes: the host directories a container's volume mounts bind.

Three kinds, each a small dataclass the agent builds from the model's volume spec:

- ``EmptyDir`` — ``<data_dir>/volumes/emptydir/<container uid>/<volume name>``: born with the
  container, removed with it (``remove_container_volumes``).
- ``NamedVolume`` — ``<data_dir>/volumes/named/<namespace>/<volume name>``: outlives the containers
  that mount it; removed only when the volume itself is deleted (``remove_named_volume``).
- ``HostPath`` — a host path passed through as is (whether a user may ask for one is the API's
  policy, not this module's). ``type`` follows Kubernetes: ``""`` no check, ``Directory`` /
  ``File`` must exist as such, ``DirectoryOrCreate`` makes the directory when it is missing.

How it stays safe: creation is ``mkdir`` (atomic, and a no-op the second time). Removal first
renames the directory into ``<data_dir>/volumes/.trash/`` — one atomic step after which the volume
is gone for every reader — and then deletes the tree; a crash mid-delete leaves only trash, which
the next removal sweeps. Every directory is mode 0700: the parents (``volumes/``, ``emptydir/<uid>``,
``named/<namespace>``) are root's alone, and a volume's own directory belongs to the user and group the
container runs as (``owner``: its ``securityContext.runAsUser/runAsGroup``, root by default), so no
other local user, and no other container's user, can enter it. Every file-system call runs in a
worker thread.

Names become path components, so they are checked: DNS-1123 labels for volume names and namespaces,
and a container uid of letters, digits and dashes — never ``..`` or a ``/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from corral.model.errors import FieldError, Invalid, NotFound

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_UID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
HOST_PATH_TYPES = ("", "Directory", "DirectoryOrCreate", "File")


@dataclass(frozen=True, slots=True)
class EmptyDir:
    """A scratch directory that lives as long as the container."""


@dataclass(frozen=True, slots=True)
class NamedVolume:
    """A node-local named volume of the container's namespace, by the volume's name."""

    volume: str


@dataclass(frozen=True, slots=True)
class HostPath:
    """A path on the host, checked (or created) according to ``type``."""

    path: str
    type: str = ""


@dataclass(frozen=True, slots=True)
class VolumeSource:
    """One entry of a container's ``volumes``: the name its mounts refer to, and where it comes from."""

    name: str
    source: EmptyDir | NamedVolume | HostPath


class Volumes:
    """The volumes of one agent, under ``<data_dir>/volumes``."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "volumes"
        self.emptydir_root = self.root / "emptydir"
        self.named_root = self.root / "named"
        self.trash = self.root / ".trash"

    def emptydir_path(self, container_uid: str, name: str) -> Path:
        return self.emptydir_root / container_uid / name

    def named_path(self, namespace: str, name: str) -> Path:
        return self.named_root / namespace / name

    async def ensure_volumes(
        self, container_uid: str, namespace: str, volumes: Sequence[VolumeSource], *, owner: tuple[int, int] = (0, 0)
    ) -> dict[str, Path]:
        """Make every volume of a container ready to mount; return volume name → host path."""
        _check_volumes(container_uid, namespace, volumes)
        return await asyncio.to_thread(self._ensure, container_uid, namespace, tuple(volumes), owner)

    async def remove_container_volumes(self, container_uid: str) -> None:
        """Remove the container's emptyDir volumes (named and host paths are left alone). Idempotent."""
        _check(_UID, container_uid, "metadata.uid")
        await asyncio.to_thread(self._remove, self.emptydir_root / container_uid)

    async def remove_named_volume(self, namespace: str, name: str) -> None:
        """Remove a named volume and its data. Idempotent."""
        _check(_LABEL, namespace, "metadata.namespace")
        _check(_LABEL, name, "metadata.name")
        await asyncio.to_thread(self._remove, self.named_path(namespace, name))

    async def list_container_volume_dirs(self) -> list[str]:
        """Container uids that have emptyDir volumes on disk (for orphan cleanup), sorted."""
        return await asyncio.to_thread(_listdir, self.emptydir_root)

    async def list_named_volumes(self) -> list[tuple[str, str]]:
        """(namespace, name) of every named volume on disk, sorted."""

        def scan() -> list[tuple[str, str]]:
            return [(ns, n) for ns in _listdir(self.named_root) for n in _listdir(self.named_root / ns)]

        return await asyncio.to_thread(scan)

    # --- in the worker thread ----------------------------------------------------------------------

    def _ensure(self, uid: str, namespace: str, volumes: tuple[VolumeSource, ...],
                owner: tuple[int, int]) -> dict[str, Path]:
        paths: dict[str, Path] = {}
        for i, v in enumerate(volumes):
            src = v.source
            if isinstance(src, EmptyDir):
                paths[v.name] = _mkdir(self.root, self.emptydir_path(uid, v.name), owner)
            elif isinstance(src, NamedVolume):
                paths[v.name] = _mkdir(self.root, self.named_path(namespace, src.volume), owner)
            else:
                paths[v.name] = _host_path(src, field=f"spec.volumes[{i}].hostPath")
        return paths

    def _remove(self, path: Path) -> None:
        self.trash.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.rename(path, self.trash / f"{path.name}.{secrets.token_hex(4)}")
        for leftover in _listdir(self.trash):  # this removal's, and any a crash left behind
            shutil.rmtree(self.trash / leftover, ignore_errors=True)


def _mkdir(root: Path, path: Path, owner: tuple[int, int]) -> Path:
    """``path`` (under ``root``) and its parents from ``root`` on, all 0700; ``path`` owned by ``owner``."""
    parts = path.relative_to(root).parts
    for depth in range(len(parts)):  # root, then each parent of path below it
        parent = root.joinpath(*parts[:depth])
        try:
            parent.mkdir(mode=0o700, parents=depth == 0)
            parent.chmod(0o700)  # whatever the umask
        except FileExistsError:
            pass
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        if not path.is_dir():
            raise Invalid(f"volume path {path} exists and is not a directory") from None
        return path
    os.chown(path, *owner)
    path.chmod(0o700)
    return path


def _host_path(src: HostPath, *, field: str) -> Path:
    path = Path(src.path)
    if src.type == "DirectoryOrCreate":
        path.mkdir(mode=0o755, parents=True, exist_ok=True)
    if src.type in ("Directory", "DirectoryOrCreate") and not path.is_dir():
        raise NotFound(f"hostPath {path} is not a directory", details=[FieldError(field, "not a directory")])
    if src.type == "File" and not path.is_file():
        raise NotFound(f"hostPath {path} is not a file", details=[FieldError(field, "not a file")])
    return path


def _listdir(path: Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def _check(pattern: re.Pattern[str], value: str, field: str) -> None:
    if not pattern.match(value):
        raise Invalid(f"{field}: {value!r} cannot name a volume directory", details=[FieldError(field, "bad name")])


def _check_volumes(uid: str, namespace: str, volumes: Sequence[VolumeSource]) -> None:
    _check(_UID, uid, "metadata.uid")
    _check(_LABEL, namespace, "metadata.namespace")
    errors: list[FieldError] = []
    seen: set[str] = set()
    for i, v in enumerate(volumes):
        where = f"spec.volumes[{i}]"
        if not _LABEL.match(v.name):
            errors.append(FieldError(f"{where}.name", "must be a DNS-1123 label"))
        if v.name in seen:
            errors.append(FieldError(f"{where}.name", f"duplicate volume name {v.name!r}"))
        seen.add(v.name)
        src = v.source
        if isinstance(src, NamedVolume) and not _LABEL.match(src.volume):
            errors.append(FieldError(f"{where}.volume", "must be a DNS-1123 label"))
        if isinstance(src, HostPath):
            if not os.path.isabs(src.path) or ".." in Path(src.path).parts:
                errors.append(FieldError(f"{where}.hostPath.path", "must be an absolute path without '..'"))
            if src.type not in HOST_PATH_TYPES:
                errors.append(FieldError(f"{where}.hostPath.type", f"one of {', '.join(HOST_PATH_TYPES[1:])}"))
    if errors:
        raise Invalid("invalid volumes", details=errors)
