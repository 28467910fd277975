"""A control plane on its own embedded etcd, as `corral serve` runs it: one CA on disk and in etcd,
an HTTPS-only API, and an etcd that answers only clients holding a certificate from that CA."""

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
from corral.model.errors import CorralError, Invalid
from corral.model.resources import Namespace, ObjectMeta
from corral.roles.clustertls import CA_KEY, CaRecord, TlsOptions
from corral.roles.control import ControlConfig, ControlPlane, run_control
from corral.store.embedded import free_port
from corral.store.etcd import EtcdStore
from corral.tls import pki
from corral.tls.contexts import client_context


@contextlib.asynccontextmanager
async def control_on_embedded_etcd(data_dir: Path, tls: TlsOptions | None = None) -> AsyncIterator[ControlPlane]:
    stop = asyncio.Event()
    ready: asyncio.Future[ControlPlane] = asyncio.get_running_loop().create_future()

    async def started(plane: ControlPlane) -> None:
        ready.set_result(plane)

    cfg = ControlConfig(data_dir=data_dir, port=free_port(), write_user_config=False, tls=tls or TlsOptions())
    task = asyncio.create_task(run_control(cfg, stop=stop, started=started))
    try:
        done, _ = await asyncio.wait({task, ready}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
        yield ready.result()
    finally:
        stop.set()
        with contextlib.suppress(Exception):
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
            with pytest.raises(aiohttp.ClientError):  # the API: HTTPS only
                async with http.get(plane.url.replace("https://", "http://") + "/healthz") as r:
                    await r.read()
            with pytest.raises(aiohttp.ClientError):  # etcd: plain HTTP
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



async def test_a_users_own_ca_signs_the_cluster_and_a_serving_certificate_from_elsewhere_is_refused(tmp_path: Path) -> None:
    own = pki.Authority.generate("my-org-ca")
    pki.write_private(tmp_path / "my-ca.crt", own.cert_pem)
    pki.write_private(tmp_path / "my-ca.key", own.key_pem)
    opts = TlsOptions(ca_cert=tmp_path / "my-ca.crt", ca_key=tmp_path / "my-ca.key")
    async with control_on_embedded_etcd(tmp_path / "a", opts) as plane:
        assert plane.ca_pem == own.cert_pem
        async with ApiClient(plane.url, plane.admin_token, ssl_context=client_context(own.cert_pem)) as api:
            await api.list(Namespace, namespace=None)
    stranger = pki.Authority.generate("elsewhere")
    cert, key = stranger.issue_pair(cn="api", server=True, ips=("127.0.0.1",))
    pki.write_private(tmp_path / "api.crt", cert)
    pki.write_private(tmp_path / "api.key", key)
    with pytest.raises(Invalid, match="not signed by the cluster CA"):
        async with control_on_embedded_etcd(tmp_path / "b", TlsOptions(cert=tmp_path / "api.crt", key=tmp_path / "api.key")):
            pass
