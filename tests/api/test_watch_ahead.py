"""A watch from a revision the store has not reached (it was restored from an older snapshot) is 410: the client relists."""

from __future__ import annotations

import time

from tests.api.conftest import Api
from tests.api.test_contract import call
from tests.api.test_watch import new_namespace


async def test_a_revision_ahead_of_the_store_is_410_gone_after_a_short_wait(api: Api) -> None:
    ns = await new_namespace(api)
    path = f"/namespaces/{ns}/containers"
    _, listed = await call(api, "GET", path)
    ahead = int(listed["metadata"]["resourceVersion"]) + 1_000_000
    started = time.monotonic()
    async with api.http.get(api.url + path, params={"watch": "1", "resourceVersion": str(ahead)},
                            headers=api.headers()) as r:
        body = await r.json()
    assert r.status == 410 and body["error"]["reason"] == "Expired"
    assert "restored from a snapshot" in body["error"]["message"]
    assert time.monotonic() - started < 10
