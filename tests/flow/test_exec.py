"""exec, attach, port-forward and cp end to end: the real CLI, through the API, to the agent, into runc."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import pty
import secrets
import signal
import struct
import sys
import termios
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from corral.api.client import ApiClient
from corral.cli.streaming import open_stream, run_session
from corral.model import errors
from corral.model.resources import Container, ContainerSpec, ObjectMeta
from corral.runtime.client import Client
from corral.runtime.tasks import Task
from corral.store.embedded import free_port
from corral.tls.contexts import client_context
from tests.fixtures.cluster import Cluster, eventually, start_cluster
from tests.fixtures.registry import Registry

TIMEOUT = 60.0


@pytest_asyncio.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> AsyncIterator[Cluster]:
    async with start_cluster(tmp_path_factory.mktemp("exec"), registry, workers=1) as c:
        yield c


@pytest_asyncio.fixture(scope="module")
async def box(cluster: Cluster) -> Container:
    """A running container: httpd on 8080, published nowhere on the host."""
    await cluster.api.create(Container(
        metadata=ObjectMeta(name="box"),
        spec=ContainerSpec(image=cluster.image, command=["httpd", "-f", "-p", "8080", "-h", "/var/www"]),
    ))
    return await cluster.wait_for("box", lambda c: c.status.phase == "Running" and bool(c.status.ip), timeout=60)


def cli_env(cluster: Cluster) -> dict[str, str]:
    return {**os.environ, "CORRAL_SERVER": cluster.plane.url, "CORRAL_TOKEN": cluster.plane.admin_token,
            "CORRAL_CA": str(cluster.plane.ca_file)}


async def corral(cluster: Cluster, *args: str, stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "corral.cli.main", *args, env=cli_env(cluster),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out, err


async def test_exec_returns_the_commands_output(cluster: Cluster, box: Container) -> None:
    code, out, err = await corral(cluster, "exec", "box", "--", "cat", "/etc/hostname")
    assert (code, out) == (0, b"box\n"), err


async def test_the_remote_exit_code_becomes_the_clis(cluster: Cluster, box: Container) -> None:
    code, _, err = await corral(cluster, "exec", "box", "--", "sh", "-c", "echo oops >&2; exit 3")
    assert code == 3
    assert err == b"oops\n"


async def test_exec_with_stdin_feeds_the_command(cluster: Cluster, box: Container) -> None:
    code, out, err = await corral(cluster, "exec", "-i", "box", "--", "wc", "-c", stdin=b"y" * 300_000)
    assert (code, out.strip()) == (0, b"300000"), err


async def test_a_reader_that_stops_early_ends_the_command(cluster: Cluster, box: Container) -> None:
    proc = await asyncio.create_subprocess_shell(
        f"{sys.executable} -m corral.cli.main exec box -- yes | head -n 3; echo \"status ${{PIPESTATUS[0]}}\"",
        executable="/bin/bash", env=cli_env(cluster), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert out == b"y\ny\ny\nstatus 141\n", err
    async with Client(cluster.worker.containerd.socket) as client:
        task = Task(client, box.status.container_id)

        async def only_httpd() -> None:
            assert len(await task.pids()) == 1

        await eventually(only_httpd, timeout=TIMEOUT, what="`yes` is killed")


async def test_a_command_that_cannot_start_says_so(cluster: Cluster, box: Container) -> None:
    code, _, err = await corral(cluster, "exec", "box", "--", "/no/such/binary")
    assert code == 126
    assert b"/no/such/binary" in err


async def test_exec_in_a_missing_container_is_a_clear_error(cluster: Cluster, box: Container) -> None:
    code, _, err = await corral(cluster, "exec", "nobody", "--", "true")
    assert code == 1
    assert b'container "nobody" in namespace "default" not found' in err


async def test_a_node_may_not_exec(cluster: Cluster, box: Container) -> None:
    tls = cluster.worker.agent_dir / "tls"  # the node's own client certificate is its identity
    node = client_context(cluster.plane.ca_pem, cert_file=tls / "node.crt", key_file=tls / "node.key")
    async with ApiClient(cluster.plane.url, ssl_context=node) as client:
        with pytest.raises(errors.Forbidden, match="may not exec container default/box"):
            await open_stream(client, namespace="default", name="box", verb="exec", params=[("command", "true")])


async def test_an_edit_token_may_exec_in_its_namespaces_and_a_view_token_never(cluster: Cluster, box: Container) -> None:
    async def token(role: str, *namespaces: str) -> str:
        body = await cluster.api.request("POST", "/tokens", body={"role": role, "namespaces": list(namespaces),
                                                                  "description": f"exec test {role}"})
        return str(json.loads(body)["token"])

    async def exec_true(secret: str) -> int | None:
        async with ApiClient(cluster.plane.url, secret, ssl_context=client_context(cluster.plane.ca_pem)) as client:
            ws = await open_stream(client, namespace="default", name="box", verb="exec",
                                   params=[("command", "true")])
            return (await run_session(ws, stdin=None, stdout=lambda _: None, stderr=lambda _: None)).exit_code

    assert await exec_true(await token("edit", "default")) == 0
    with pytest.raises(errors.Forbidden, match='may not exec containers in namespace "default"'):
        await exec_true(await token("edit", "elsewhere"))
    with pytest.raises(errors.Forbidden, match="a view token only reads"):
        await exec_true(await token("view", "default"))


async def test_an_interactive_tty_exec_runs_with_the_clients_window_size(cluster: Cluster, box: Container) -> None:
    cluster_env = cli_env(cluster)
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 37, 121, 0, 0))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "corral.cli.main", "exec", "-it", "box", "--",
        "sh", "-c", "stty size; read line; stty size; read line; exit 5",
        env=cluster_env, stdin=secondary, stdout=secondary, stderr=secondary, start_new_session=True,
    )
    os.close(secondary)
    seen = bytearray()
    loop = asyncio.get_running_loop()

    async def until(marker: bytes) -> None:
        while marker not in seen:
            try:
                chunk = await asyncio.wait_for(loop.run_in_executor(None, os.read, primary, 4096), 20)
            except TimeoutError:
                raise AssertionError(f"no {marker!r} in {bytes(seen)!r}") from None
            assert chunk, bytes(seen)
            seen.extend(chunk)

    try:
        await until(b"37 121")
        fcntl.ioctl(primary, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 140, 0, 0))
        os.kill(proc.pid, signal.SIGWINCH)
        await asyncio.sleep(1.0)
        os.write(primary, b"next\r")
        await until(b"50 140")
        os.write(primary, b"done\r")
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 5
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        with contextlib.suppress(OSError):
            while os.read(primary, 65536):
                pass
        os.close(primary)


async def test_closing_the_client_ends_the_remote_process(cluster: Cluster, box: Container) -> None:
    async with Client(cluster.worker.containerd.socket) as client:
        task = Task(client, box.status.container_id)
        before = len(await task.pids())
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "corral.cli.main", "exec", "box", "--", "sleep", "600", env=cli_env(cluster),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            async def started() -> None:
                assert len(await task.pids()) == before + 1

            await eventually(started, timeout=TIMEOUT, what="the exec'd sleep runs")
        finally:
            proc.kill()
            await proc.wait()

        async def ended() -> None:
            assert len(await task.pids()) == before

        await eventually(ended, timeout=TIMEOUT, what="the sleep is killed when its client goes")


async def test_cp_round_trips_a_5mb_file_and_a_directory(cluster: Cluster, box: Container, tmp_path: Path) -> None:
    payload = secrets.token_bytes(5 * 1024 * 1024)
    (tmp_path / "big.bin").write_bytes(payload)
    code, _, err = await corral(cluster, "cp", str(tmp_path / "big.bin"), "box:/tmp/big.bin")
    assert code == 0, err
    code, out, _ = await corral(cluster, "exec", "box", "--", "md5sum", "/tmp/big.bin")
    assert out.split()[0].decode() == hashlib.md5(payload).hexdigest()  # a checksum, not security
    code, _, err = await corral(cluster, "cp", "box:/tmp/big.bin", str(tmp_path / "back.bin"))
    assert code == 0, err
    assert (tmp_path / "back.bin").read_bytes() == payload

    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("alpha\n")
    (tree / "sub" / "b.txt").write_text("beta\n")
    code, _, err = await corral(cluster, "cp", str(tree), "box:/tmp/")
    assert code == 0, err
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _, err = await corral(cluster, "cp", "box:/tmp/tree", str(out_dir))
    assert code == 0, err
    assert (out_dir / "tree" / "sub" / "b.txt").read_text() == "beta\n"
    assert (out_dir / "tree" / "a.txt").read_text() == "alpha\n"


async def test_port_forward_reaches_a_port_not_published_on_the_host(cluster: Cluster, box: Container) -> None:
    local = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "corral.cli.main", "port-forward", "box", f"{local}:8080", env=cli_env(cluster),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)
        assert b"Forwarding from 127.0.0.1" in line
        for _ in range(3):  # each connection its own stream
            reader, writer = await asyncio.open_connection("127.0.0.1", local)
            writer.write(b"GET / HTTP/1.0\r\nHost: box\r\n\r\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), TIMEOUT)
            writer.close()
            assert answer.startswith(b"HTTP/1.") and b"hello from corral" in answer
        # a port nothing listens on is refused with a sentence, and the forwarder keeps running
        bad_port = free_port()
        bad = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "corral.cli.main", "port-forward", "box", f"{bad_port}:8081",
            env=cli_env(cluster), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            assert bad.stdout is not None and bad.stderr is not None
            await asyncio.wait_for(bad.stdout.readline(), TIMEOUT)
            r2, w2 = await asyncio.open_connection("127.0.0.1", bad_port)
            assert await asyncio.wait_for(r2.read(), TIMEOUT) == b""
            w2.close()
            assert b"cannot connect to port 8081" in await asyncio.wait_for(bad.stderr.readline(), TIMEOUT)
        finally:
            bad.kill()
            await bad.wait()
    finally:
        proc.kill()
        await proc.wait()


async def test_attach_follows_the_main_process_until_it_exits(cluster: Cluster) -> None:
    await cluster.api.create(Container(
        metadata=ObjectMeta(name="talker"),
        spec=ContainerSpec(image=cluster.image, restart_policy="Never",
                           command=["sh", "-c", "sleep 3; echo hello-attach; echo err-attach >&2; exit 4"]),
    ))
    await cluster.wait_for("talker", lambda c: c.status.phase == "Running", timeout=60)
    code, out, err = await corral(cluster, "attach", "talker")
    assert code == 4, err
    assert out == b"hello-attach\n"
    assert err == b"err-attach\n"
