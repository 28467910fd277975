"""Exec with streamed stdio against the real containerd + runc: output, stdin, exit codes, a pty."""

from __future__ import annotations

import asyncio

from corral.runtime.client import Client
from corral.runtime.execstream import ExecStream, start_exec
from corral.runtime.images import Image
from tests.runtime.test_exec import running


async def drain(stream: ExecStream) -> tuple[bytes, bytes]:
    async def all_of(fifo: object) -> bytes:
        if fifo is None:
            return b""
        out = b""
        while chunk := await fifo.read():  # type: ignore[attr-defined]
            out += chunk
        return out

    out, err = await asyncio.gather(all_of(stream.stdout), all_of(stream.stderr))
    return out, err


async def test_a_streamed_exec_returns_its_output_and_exit_code(ctr_client: Client, busybox_image: Image) -> None:
    async with running(ctr_client, busybox_image) as task:
        stream = await start_exec(ctr_client, task.container_id, ["sh", "-c", "echo out; echo err >&2; exit 3"],
                                  tty=False, stdin=False)
        try:
            out, err = await asyncio.wait_for(drain(stream), 10)
            assert (out, err) == (b"out\n", b"err\n")
            assert await asyncio.wait_for(stream.wait(), 10) == 3
        finally:
            await stream.close()
        assert len(await task.pids()) == 1
        assert not stream.fifo_dir.exists()


async def test_stdin_reaches_the_process_and_closing_it_ends_the_input(ctr_client: Client, busybox_image: Image) -> None:
    async with running(ctr_client, busybox_image) as task:
        stream = await start_exec(ctr_client, task.container_id, ["wc", "-c"], tty=False, stdin=True)
        try:
            await stream.write_stdin(b"x" * 100_000)
            await stream.close_stdin()
            out, _ = await asyncio.wait_for(drain(stream), 10)
            assert out.strip() == b"100000"
            assert await asyncio.wait_for(stream.wait(), 10) == 0
        finally:
            await stream.close()


async def test_a_tty_exec_has_a_terminal_of_the_given_size_that_resizes(ctr_client: Client,
                                                                        busybox_image: Image) -> None:
    async with running(ctr_client, busybox_image) as task:
        stream = await start_exec(ctr_client, task.container_id, ["sh", "-c", "stty size; read x; stty size"],
                                  tty=True, stdin=True, size=(100, 40))
        try:
            assert stream.stdout is not None
            seen = b""
            while b"40 100" not in seen:
                seen += await asyncio.wait_for(stream.stdout.read(), 10)
            await stream.resize(120, 50)
            await stream.write_stdin(b"\n")
            while b"50 120" not in seen:
                chunk = await asyncio.wait_for(stream.stdout.read(), 10)
                assert chunk, seen
                seen += chunk
            assert await asyncio.wait_for(stream.wait(), 10) == 0
        finally:
            await stream.close()


async def test_closing_a_running_exec_kills_its_process(ctr_client: Client, busybox_image: Image) -> None:
    async with running(ctr_client, busybox_image) as task:
        stream = await start_exec(ctr_client, task.container_id, ["sleep", "300"], tty=False, stdin=True)
        assert len(await task.pids()) == 2
        await asyncio.wait_for(stream.close(), 15)
        assert len(await task.pids()) == 1
