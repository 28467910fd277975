"""An API server on its own etcd (so other tests' objects never show up in its lists)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from corral.api.auth import Identity
from corral.api.server import ApiServer
from corral.store.embedded import EmbeddedEtcd, free_port
from corral.store.etcd import EtcdStore


@dataclass
class Api:
    url: str
    token: str
    server: ApiServer
    store: EtcdStore
    etcd: EmbeddedEtcd
    http: aiohttp.ClientSession

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}


@pytest_asyncio.fixture(scope="session")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    base = tmp_path_factory.mktemp("api")
    etcd = EmbeddedEtcd(data_dir=base / "etcd")
    await etcd.start()
    store = EtcdStore([etcd.endpoint])
    server = ApiServer(store, max_body=64 * 1024)
    await server.ensure_default_namespace()
    token = await server.tokens.issue(Identity("admin"))
    caches = asyncio.create_task(server.run_caches())
    runner = web.AppRunner(server.app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    http = aiohttp.ClientSession()
    try:
        for cache in server.caches.values():
            await cache.wait_ready()
        yield Api(f"http://127.0.0.1:{port}", token, server, store, etcd, http)
    finally:
        await http.close()
        await runner.cleanup()
        caches.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await caches
        await store.close()
        await etcd.stop()
