"""A control plane on its own embedded etcd, as `corral serve` runs it: one CA on disk and in etcd,
an HTTPS API, and an etcd that answers only clients holding a certificate from that CA."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import pytest

from corral.api.client import ApiClient
from corral.model.errors import CorralError
from corral.model.resources import Namespace, ObjectMeta
from corral.roles.clustertls import CA_KEY, CaRecord
from corral.roles.control import ControlConfig, ControlPlane, run_control
from corral.store.embedded import free_port
from corral.store.etcd import EtcdStore
from corral.tls.contexts import client_context


@contextlib.asynccontextmanager
async def control_on_embedded_etcd(data_dir: Path) -> AsyncIterator[ControlPlane]:
    stop = asyncio.Event()
    ready: asyncio.Future[ControlPlane] = asyncio.get_running_loop().create_future()

    async def started(plane: ControlPlane) -> None:
        ready.set_result(plane)

    task = asyncio.create_task(run_control(ControlConfig(data_dir=data_dir, port=free_port(), write_user_config=False),
                                           stop=stop, started=started))
    try:
        done, _ = await asyncio.wait({task, ready}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
        yield ready.result()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_the_embedded_etcd_takes_only_clients_with_a_cluster_certificate(tmp_path: Path) -> None:
    async with control_on_embedded_etcd(tmp_path) as plane:
        async with ApiClient(plane.url, plane.admin_token, ssl_context=client_context(plane.ca_pem)) as api:
            await api.create(Namespace(metadata=ObjectMeta(name="over-tls")))
        assert plane.url.startswith("https://")
        assert stat.S_IMODE(os.stat(tmp_path / "tls" / "ca.key").st_mode) == 0o600
        kv = await plane.store.get(CA_KEY)
        assert kv is not None and msgspec.json.decode(kv.value, type=CaRecord).cert.encode() == plane.ca_pem

        endpoint = plane.store.endpoints[0]
        assert endpoint.startswith("https://127.0.0.1:")
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.ClientError):  # plain HTTP
                async with http.get(endpoint.replace("https://", "http://") + "/health") as r:
                    await r.read()
            with pytest.raises(aiohttp.ClientError):  # TLS, but no client certificate
                async with http.get(endpoint + "/health", ssl=client_context(plane.ca_pem)) as r:
                    await r.read()
        anonymous = EtcdStore([endpoint.replace("https://", "http://")], timeout=2)
        try:
            with pytest.raises(CorralError):
                await anonymous.get(CA_KEY)
        finally:
            await anonymous.close()

    async with control_on_embedded_etcd(tmp_path) as again:  # a restart keeps the CA
        assert again.ca_pem == plane.ca_pem

