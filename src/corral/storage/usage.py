"""How much disk a volume directory uses: a ``du``-like walk, for size limits without project quotas.

The data directory's file system here (ext4 mounted without ``prjquota``, or overlay) has no project
quotas, so a volume's size cannot be capped by the kernel; the agent instead measures each limited
volume every few seconds and evicts what is over (``roles/agentvolumes.py``). ``disk_usage`` counts
allocated blocks (``st_blocks``, as ``du`` does: a sparse file costs what it really holds), every
inode once (hard links), never following a symbolic link or crossing into another file system (a
bind mount inside the volume is someone else's disk). It runs in a worker thread; the walk is
bounded by what the volume holds.
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path


def disk_usage_sync(path: Path) -> int:
    """Bytes allocated under ``path`` (0 when it does not exist)."""
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return 0
    seen: set[tuple[int, int]] = set()
    total = top.st_blocks * 512
    if not stat.S_ISDIR(top.st_mode):
        return total
    stack = [str(path)]
    while stack:
        current = stack.pop()
        try:
            entries = os.scandir(current)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue  # gone meanwhile
        with entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if st.st_dev != top.st_dev:
                    continue
                if st.st_nlink > 1:
                    inode = (st.st_dev, st.st_ino)
                    if inode in seen:
                        continue
                    seen.add(inode)
                total += st.st_blocks * 512
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
    return total


async def disk_usage(path: Path) -> int:
    return await asyncio.to_thread(disk_usage_sync, path)


def human_size(size: int) -> str:
    """``12Mi``, ``1.5Gi``, ``512`` — binary units, at most one decimal, as a Pending or Event message shows it."""
    for suffix, unit in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if size >= unit:
            text = f"{size / unit:.1f}".removesuffix(".0")
            return f"{text}{suffix}"
    return str(size)
