"""Secret volumes on the node: a tmpfs per container, files written in place when the Secret changes.

``<data_dir>/secrets/<container uid>`` is a tmpfs (mode 0700, ``nosuid,nodev,noexec``, 4 MiB) mounted
the first time a container needs a secret volume, so a Secret's bytes never touch the node's disk;
each volume is a directory in it (0755, so a container running as any user can enter it; the files
are 0400 by default and owned by the container's user and group). The container binds the volume's
directory read-only, so a file replaced here (written beside, then renamed over — atomic for
readers) shows in the container at once; a key removed from the Secret is removed here. Teardown
unmounts the tmpfs and removes the directory; ``list_uids`` finds leftovers for the agent's sweep.

Paths come from keys and ``items[].path`` that the API validated (no ``..``, no absolute paths);
they are checked again here, since this code writes as root.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from corral.model.errors import CorralError, FieldError, Invalid

_UID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
TMPFS_OPTIONS = "size=4m,mode=0700,nosuid,nodev,noexec"


@dataclass(frozen=True, slots=True)
class SecretFile:
    data: bytes
    mode: int = 0o400


def _safe_relative(path: str) -> bool:
    parts = path.split("/")
    return bool(path) and not path.startswith("/") and all(p not in ("", ".", "..") for p in parts)


class SecretFiles:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "secrets"

    def volume_path(self, uid: str, volume: str) -> Path:
        return self.root / uid / volume

    async def write(self, uid: str, volume: str, files: Mapping[str, SecretFile], *,
                    owner: tuple[int, int] = (0, 0)) -> tuple[Path, bool]:
        """Make the volume's directory hold exactly ``files``; (its path, whether anything changed)."""
        if not _UID.match(uid) or not _NAME.match(volume):
            raise Invalid(f"bad secret volume {uid}/{volume}", details=[FieldError("spec.volumes", "bad name")])
        for rel in files:
            if not _safe_relative(rel):
                raise Invalid(f"secret file path {rel!r} escapes its volume",
                              details=[FieldError("spec.volumes.secret.items", "bad path")])
        await self._ensure_tmpfs(uid)
        return await asyncio.to_thread(self._write, self.volume_path(uid, volume), dict(files), owner)

    async def _ensure_tmpfs(self, uid: str) -> None:
        base = self.root / uid
        if await asyncio.to_thread(os.path.ismount, base):
            return
        await asyncio.to_thread(base.mkdir, mode=0o700, parents=True, exist_ok=True)
        await asyncio.to_thread(os.chmod, self.root, 0o700)
        proc = await asyncio.create_subprocess_exec("mount", "-t", "tmpfs", "-o", TMPFS_OPTIONS, "tmpfs", str(base),
                                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise CorralError(f"mounting a tmpfs for secret volumes at {base}: {err.decode().strip()}")

    @staticmethod
    def _write(vdir: Path, files: dict[str, SecretFile], owner: tuple[int, int]) -> tuple[Path, bool]:
        changed = False
        if not vdir.is_dir():
            vdir.mkdir(mode=0o755)
            changed = True
        wanted: set[Path] = set()
        for rel, f in files.items():
            path = vdir / rel
            wanted.add(path)
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            try:
                st = path.stat()
                if path.read_bytes() == f.data and st.st_mode & 0o777 == f.mode and (st.st_uid, st.st_gid) == owner:
                    continue
            except FileNotFoundError:
                pass
            tmp = path.with_name(f".{path.name}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(f.data)
            os.chown(tmp, *owner)
            os.chmod(tmp, f.mode)
            os.replace(tmp, path)
            changed = True
        for dirpath, _dirs, names in os.walk(vdir):
            for n in names:
                p = Path(dirpath) / n
                if p not in wanted:
                    p.unlink()
                    changed = True
        return vdir, changed

    async def remove(self, uid: str) -> None:
        """Unmount and remove a container's secret volumes. Idempotent."""
        if not _UID.match(uid):
            return
        base = self.root / uid
        if await asyncio.to_thread(os.path.ismount, base):
            proc = await asyncio.create_subprocess_exec("umount", str(base), stdout=subprocess.DEVNULL,
                                                        stderr=subprocess.DEVNULL)
            await proc.wait()
            if proc.returncode != 0:  # still in use by a mount namespace that goes with its task: detach
                proc = await asyncio.create_subprocess_exec("umount", "-l", str(base))
                await proc.wait()
        with contextlib.suppress(FileNotFoundError, OSError):
            await asyncio.to_thread(_rmtree_local, base)

    async def remove_all(self) -> None:
        """Unmount and remove every container's secret volumes (a node being cleaned up)."""
        for uid in await self.list_uids():
            await self.remove(uid)

    async def list_uids(self) -> list[str]:
        def scan() -> list[str]:
            try:
                return sorted(p.name for p in self.root.iterdir() if p.is_dir())
            except FileNotFoundError:
                return []

        return await asyncio.to_thread(scan)


def _rmtree_local(path: Path) -> None:
    """Remove ``path`` — but never across a mount (a tmpfs left mounted is a bug to see, not to delete into)."""
    if os.path.ismount(path):
        raise OSError(f"{path} is still mounted")
    shutil.rmtree(path)
