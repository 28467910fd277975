"""aiokit.heap.small_tls_buffers: a worker's TLS connections keep 16 KiB read buffers and lose no byte."""

from __future__ import annotations

import os
from asyncio import sslproto
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from corral.aiokit.heap import TLS_READ_BUFFER, small_tls_buffers
from corral.tls import pki
from corral.tls.contexts import client_context, server_context


@pytest.fixture
def restored_tls_buffer_size() -> Iterator[None]:
    before = sslproto.SSLProtocol.max_size
    try:
        yield
    finally:
        sslproto.SSLProtocol.max_size = before


async def test_https_with_small_tls_buffers_carries_a_large_body_whole_and_each_connection_holds_16_kib(
        tmp_path: Path, restored_tls_buffer_size: None) -> None:
    small_tls_buffers()
    ca = pki.Authority.generate("heap-test")
    cert, key = ca.issue_pair(cn="server", server=True, dns=("localhost",), ips=("127.0.0.1",))
    (tmp_path / "s.crt").write_bytes(cert)
    (tmp_path / "s.key").write_bytes(key)
    body = os.urandom(3 * 1024 * 1024 + 17)
    received = bytearray()

    async def echo(request: web.Request) -> web.Response:
        received.extend(await request.read())
        return web.Response(body=body)

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_post("/", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context(tmp_path / "s.crt", tmp_path / "s.key"))
    await site.start()
    try:
        port = runner.addresses[0][1]
        async with (aiohttp.ClientSession() as session,
                    session.post(f"https://127.0.0.1:{port}/", data=body, ssl=client_context(ca.cert_pem)) as r):
            assert r.connection is not None and r.connection.transport is not None
            protocol = getattr(r.connection.transport, "_ssl_protocol", None)  # asyncio's TLS layer under it
            answer = await r.read()
        assert answer == body and bytes(received) == body
        assert isinstance(protocol, sslproto.SSLProtocol)
        assert len(vars(protocol)["_ssl_buffer"]) == TLS_READ_BUFFER < 256 * 1024
    finally:
        await runner.cleanup()
