"""A stopping API server ends its watch streams and heartbeat channels itself, at once."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from corral.api.auth import Identity
from corral.api.server import ApiServer
from corral.store.embedded import EmbeddedEtcd, free_port
from corral.store.etcd import EtcdStore


async def test_a_stopping_server_ends_watches_and_heartbeat_channels_without_waiting_out_its_timeout(
    etcd: EmbeddedEtcd,
) -> None:
    store = EtcdStore([etcd.endpoint])
    server = ApiServer(store)
    caches = asyncio.create_task(server.run_caches())
    runner = web.AppRunner(server.app(), access_log=None, shutdown_timeout=30.0)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    token = await server.tokens.issue(Identity("admin"))
    url = f"http://127.0.0.1:{port}"
    try:
        for cache in server.caches.values():
            await cache.wait_ready()
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            watch = await http.get(url + "/containers", params={"watch": "1"})
            assert watch.status == 200
            channel = await http.ws_connect(url + "/nodes/n1/heartbeats")
            await channel.send_str("beat")
            assert (await channel.receive()).type == aiohttp.WSMsgType.BINARY
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await runner.cleanup()  # the shutdown timeout is 30 s: only ending the streams makes this quick
            assert loop.time() - t0 < 10
            assert await asyncio.wait_for(watch.content.read(), 5) is not None  # the stream reached its end
            closing = await asyncio.wait_for(channel.receive(), 5)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            watch.release()
    finally:
        caches.cancel()
        await asyncio.gather(caches, return_exceptions=True)
        await store.close()
