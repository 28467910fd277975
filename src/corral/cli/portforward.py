"""``corral port-forward NAME LOCAL:REMOTE``: a local port that reaches a port inside a container.

It listens on ``127.0.0.1:LOCAL``; each accepted connection opens its own WebSocket
(``…/portforward?ports=REMOTE``), so connections are independent and one that fails does not
disturb the others. Bytes go both ways on channel 0; the local side's end of input is sent as
close-stream, and the container side closing ends the connection. The port need not be published
on the host: the agent connects to it inside the container's network namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys

import aiohttp
import click

from corral.api import streamproto as sp
from corral.api.client import ApiClient
from corral.cli.connection import api_command, connection_options
from corral.cli.streaming import open_stream
from corral.model.errors import CorralError


def parse_ports(spec: str) -> tuple[int, int]:
    local, sep, remote = spec.partition(":")
    if not sep:
        local = remote = spec
    try:
        lp, rp = int(local), int(remote)
    except ValueError:
        raise click.BadParameter(f"{spec!r}: write LOCAL:REMOTE (or PORT for both)") from None
    if not (0 <= lp < 65536 and 0 < rp < 65536):
        raise click.BadParameter(f"{spec!r}: ports are 1-65535 (LOCAL 0 picks a free port)")
    return lp, rp


async def forward(client: ApiClient, conn: socket.socket, *, namespace: str, name: str, port: int) -> None:
    """Carry one accepted connection to the container's ``port`` and back (reads land straight in
    the next frame after its channel byte; frames' payloads are sent without a copy)."""
    loop = asyncio.get_running_loop()
    try:
        ws = await open_stream(client, namespace=namespace, name=name, verb="portforward",
                               params=[("ports", str(port))])
    except CorralError as e:
        click.echo(f"error: {e}", err=True)
        conn.close()
        return

    async def up() -> None:
        while True:
            buf = bytearray(sp.MAX_FRAME + 1)
            buf[0] = sp.DATA
            n = await loop.sock_recv_into(conn, memoryview(buf)[1:])
            if not n:
                break
            await ws.send_bytes(memoryview(buf)[: n + 1])  # type: ignore[arg-type]  # aiohttp takes any buffer
        await ws.send_bytes(sp.close_frame(sp.DATA))

    async def down() -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                continue
            channel, payload = sp.split(msg.data)
            if channel == sp.DATA:
                await loop.sock_sendall(conn, payload)
            elif channel == sp.ERROR:
                click.echo(f"error: {bytes(payload).decode(errors='replace')}", err=True)

    sender = asyncio.ensure_future(up())
    try:
        await down()
    except (ConnectionError, aiohttp.ClientError):
        pass
    finally:
        sender.cancel()
        with contextlib.suppress(BaseException):
            await sender
        with contextlib.suppress(Exception):
            await ws.close()
        conn.close()


def listen(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((address, port))
    except OSError as e:
        listener.close()
        raise click.ClickException(f"cannot listen on {address}:{port}: {e.strerror or e}") from None
    listener.listen(128)
    listener.setblocking(False)
    return listener


@click.command("port-forward")
@click.argument("name")
@click.argument("ports", metavar="LOCAL:REMOTE")
@click.option("-n", "--namespace", default="default", show_default=True, help="The container's namespace.")
@click.option("--address", default="127.0.0.1", show_default=True, help="The local address to listen on.")
@connection_options
@api_command
async def port_forward(client: ApiClient, *, name: str, ports: str, namespace: str, address: str) -> int:
    """Forward local port LOCAL to port REMOTE inside container NAME until interrupted.

    Each local connection gets its own stream through the API to the container's node.
    """
    local, remote = parse_ports(ports)
    loop = asyncio.get_running_loop()
    connections: set[asyncio.Task[None]] = set()
    listener = listen(address, local)
    click.echo(f"Forwarding from {address}:{listener.getsockname()[1]} -> {remote}")
    sys.stdout.flush()
    try:
        while True:
            conn, _ = await loop.sock_accept(listener)
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = asyncio.create_task(forward(client, conn, namespace=namespace, name=name, port=remote))
            connections.add(task)
            task.add_done_callback(connections.discard)
    finally:
        listener.close()
        for task in list(connections):
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
