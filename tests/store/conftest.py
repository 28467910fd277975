"""Fixtures of the store tests: an EtcdStore on the session etcd, a private etcd, unique prefixes.

Tests that restart or compact etcd use ``private_etcd`` (its own process, ports and data dir)
so the session etcd that every other test shares is never disturbed.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from corral.store.embedded import INSTALL_HINT, EmbeddedEtcd
from corral.store.etcd import EtcdStore


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses."""
    return f"/corral-test/{uuid.uuid4().hex[:12]}/"


@pytest_asyncio.fixture(scope="session")
async def store(etcd: EmbeddedEtcd) -> AsyncIterator[EtcdStore]:
    s = EtcdStore([etcd.endpoint])
    try:
        yield s
    finally:
        await s.close()


@pytest_asyncio.fixture(scope="module")
async def private_etcd(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedEtcd]:
    if shutil.which("etcd") is None:
        pytest.fail(f"etcd is not installed: {INSTALL_HINT}")
    server = EmbeddedEtcd(data_dir=tmp_path_factory.mktemp("private-etcd") / "data")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest_asyncio.fixture
async def private_store(private_etcd: EmbeddedEtcd) -> AsyncIterator[EtcdStore]:
    if private_etcd.pid is None:  # a test that failed mid-restart left it down
        await private_etcd.start()
    s = EtcdStore([private_etcd.endpoint])
    try:
        yield s
    finally:
        await s.close()
