"""``corral image pull``: a bar per layer on a terminal, only the result line anywhere else."""

from __future__ import annotations

import asyncio
import os
import pty
import sys

from corral.runtime.client import Client
from corral.runtime.embedded import EmbeddedContainerd
from corral.runtime.images import remove_image
from tests.fixtures.registry import Registry


async def run_on_a_terminal(args: list[str]) -> tuple[int, str]:
    """``args`` with its stdout on a pseudo-terminal (what a user at a shell has); its exit code and
    output. (A subprocess, not ``pty.fork``: forking this threaded test process is not safe.)"""
    master, slave = pty.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(sys.executable, *args, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=slave, stderr=slave)
    finally:
        os.close(slave)

    def read_all() -> bytes:
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)

    try:
        shown = await asyncio.to_thread(read_all)
        code = await proc.wait()
    finally:
        os.close(master)
    return code, shown.decode(errors="replace")


async def test_pull_draws_progress_on_a_terminal_and_only_says_the_result_otherwise(
        containerd: EmbeddedContainerd, registry: Registry) -> None:
    args = ["-m", "corral.cli.main", "image", "pull", registry.ref, "--containerd-socket", containerd.socket]
    try:
        code, shown = await run_on_a_terminal(args)
        assert code == 0, shown
        assert "━" in shown and "pulled " + registry.ref in shown, shown  # rich's bars, then the result
        proc = await asyncio.create_subprocess_exec(sys.executable, *args, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == 0, err
        assert out.decode().splitlines() == [line for line in out.decode().splitlines() if line.startswith("pulled ")]
        assert out.decode().startswith(f"pulled {registry.ref} (sha256:")
    finally:
        async with Client(containerd.socket) as client:
            await remove_image(client, registry.ref)
