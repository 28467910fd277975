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


async def forward(client: ApiClient, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                  namespace: str, name: str, port: int) -> None:
    """Carry one accepted connection to the container's ``port`` and back."""
    try:
        ws = await open_stream(client, namespace=namespace, name=name, verb="portforward",
                               params=[("ports", str(port))])
    except CorralError as e:
        click.echo(f"error: {e}", err=True)
        writer.close()
        return

    async def up() -> None:
        while data := await reader.read(sp.MAX_FRAME):
            await ws.send_bytes(sp.frame(sp.DATA, data))
        await ws.send_bytes(sp.close_frame(sp.DATA))

    async def down() -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                continue
            channel, payload = sp.split(msg.data)
            if channel == sp.DATA:
                writer.write(payload)
                await writer.drain()
            elif channel == sp.ERROR:
                click.echo(f"error: {payload.decode(errors='replace')}", err=True)

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
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


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
    connections: set[asyncio.Task[None]] = set()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        try:
            await forward(client, reader, writer, namespace=namespace, name=name, port=remote)
        finally:
            connections.discard(task)

    server = await asyncio.start_server(accepted, address, local, limit=1 << 20)
    bound = server.sockets[0].getsockname()[1]
    click.echo(f"Forwarding from {address}:{bound} -> {remote}")
    sys.stdout.flush()
    async with server:
        try:
            await server.serve_forever()
        finally:
            for task in list(connections):
                task.cancel()
    return 0
