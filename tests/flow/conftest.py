"""The flow tests' cluster: one worker, shared by the module's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.fixtures.cluster import Cluster, start_cluster
from tests.fixtures.registry import Registry


@pytest_asyncio.fixture(scope="session")
async def cluster(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> AsyncIterator[Cluster]:
    async with start_cluster(tmp_path_factory.mktemp("cluster"), registry, workers=1) as c:
        yield c
