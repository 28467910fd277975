"""An API server on its own etcd (so other tests' objects never show up in its lists), over HTTPS
with a CA of its own, as ``run_control`` serves it (client certificates optional)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from corral.api.auth import Identity
from corral.api.server import ApiServer
from corral.store.embedded import EmbeddedEtcd, free_port
from corral.store.etcd import EtcdStore
from corral.tls import pki
from corral.tls.contexts import client_context, server_context


@dataclass
class Api:
    url: str
    token: str
    server: ApiServer
    store: EtcdStore
    etcd: EmbeddedEtcd
    http: aiohttp.ClientSession
    authority: pki.Authority
    tls_dir: Path

    @property
    def ssl(self) -> ssl.SSLContext:
        """Trusts this server's CA."""
        return client_context(self.authority.cert_pem)

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}


@pytest_asyncio.fixture(scope="session")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    base = tmp_path_factory.mktemp("api")
    etcd = EmbeddedEtcd(data_dir=base / "etcd")
    await etcd.start()
    store = EtcdStore([etcd.endpoint])
    authority = pki.Authority.generate()
    tls_dir = base / "tls"
    cert, key = authority.issue_pair(cn="corral:apiserver", server=True, dns=("localhost",), ips=("127.0.0.1",))
    pki.write_private(tls_dir / "server.crt", cert)
    pki.write_private(tls_dir / "server.key", key)
    server = ApiServer(store, max_body=64 * 1024, authority=authority)
    await server.ensure_default_namespace()
    token = await server.tokens.issue(Identity("admin"))
    caches = asyncio.create_task(server.run_caches())
    runner = web.AppRunner(server.app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    port = free_port()
    tls = server_context(tls_dir / "server.crt", tls_dir / "server.key", ca_pem=authority.cert_pem,
                         client_certs="optional")
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls).start()
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_context(authority.cert_pem)))
    try:
        for cache in server.caches.values():
            await cache.wait_ready()
        yield Api(f"https://127.0.0.1:{port}", token, server, store, etcd, http, authority, tls_dir)
    finally:
        await http.close()
        await runner.cleanup()
        caches.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await caches
        await store.close()
        await etcd.stop()
