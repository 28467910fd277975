"""Join and node tokens: a worker acts only as its node."""

from __future__ import annotations

import asyncio
import base64
import logging
import os

import pytest

from corral.api.auth import Identity
from corral.api.client import ApiClient, HeartbeatChannel
from corral.model import errors
from corral.model.lifecycle import HEARTBEAT_PREFIX
from corral.store.embedded import free_port
from tests.api.conftest import Api
from tests.api.test_contract import call, container, unique


async def node_token(api: Api, node: str) -> str:
    join = await api.server.tokens.issue(Identity("join"))
    status, body = await call(api, "GET", "/namespaces/default/containers", token=join)
    assert status == 403
    status, body = await call(api, "POST", "/join", {"node": node}, token=join)
    assert status == 201 and body["node"] == node
    token: str = body["token"]
    return token


async def test_a_bad_join_request_names_the_field(api: Api) -> None:
    join = await api.server.tokens.issue(Identity("join"))
    status, body = await call(api, "POST", "/join", {"node": "Not Valid"}, token=join)
    assert status == 422 and body["error"]["details"][0]["field"] == "node"


async def test_a_node_lists_every_container_but_reads_and_reports_only_those_bound_to_it(api: Api) -> None:
    n1, n2 = unique("n"), unique("n")
    token = await node_token(api, n1)
    mine, theirs = unique(), unique()
    await call(api, "POST", "/namespaces/default/containers", container(mine, node=n1))
    await call(api, "POST", "/namespaces/default/containers", container(theirs, node=n2))
    base = "/namespaces/default/containers"

    status, body = await call(api, "GET", "/containers", params={"fieldSelector": f"spec.node={n1}"}, token=token)
    assert status == 200 and [i["metadata"]["name"] for i in body["items"]] == [mine]
    # network policy needs every peer's labels and address, so a node lists (and watches) them all
    status, body = await call(api, "GET", "/containers", token=token)
    assert status == 200 and {mine, theirs} <= {i["metadata"]["name"] for i in body["items"]}
    status, obj = await call(api, "GET", f"{base}/{mine}", token=token)
    assert status == 200
    status, body = await call(api, "GET", f"{base}/{theirs}", token=token)
    assert status == 403 and n1 in body["error"]["message"]

    obj["status"] = {"phase": "Running"}
    status, _ = await call(api, "PUT", f"{base}/{mine}/status", obj, token=token)
    assert status == 200
    status, other = await call(api, "GET", f"{base}/{theirs}")
    other["status"] = {"phase": "Failed"}
    status, _ = await call(api, "PUT", f"{base}/{theirs}/status", other, token=token)
    assert status == 403
    status, _ = await call(api, "POST", base, container(unique()), token=token)
    assert status == 403
    status, _ = await call(api, "DELETE", f"{base}/{mine}", token=token)
    assert status == 403


async def test_a_node_writes_its_own_node_object_and_no_other(api: Api) -> None:
    n1 = unique("n")
    token = await node_token(api, n1)
    status, _ = await call(api, "POST", "/nodes", {"metadata": {"name": n1}}, token=token)
    assert status == 201
    status, _ = await call(api, "POST", "/nodes", {"metadata": {"name": unique("n")}}, token=token)
    assert status == 403


async def test_a_node_beats_for_itself_by_request_or_channel_and_each_beat_is_stored(api: Api) -> None:
    n1, n2 = unique("n"), unique("n")
    token = await node_token(api, n1)
    status, body = await call(api, "PUT", f"/nodes/{n1}/heartbeat", token=token)
    assert status == 200 and body["ready"] is False  # no Node object yet: not Ready
    stored = await api.store.get(HEARTBEAT_PREFIX + n1)
    assert stored is not None and stored.value.decode() == body["renewTime"]
    status, body = await call(api, "PUT", f"/nodes/{n2}/heartbeat", token=token)
    assert status == 403

    async with ApiClient(api.url, token, ssl_context=api.ssl) as client:
        channel = HeartbeatChannel(client, n1)
        first = await channel.beat()
        second = await channel.beat()
        assert second["renewTime"] >= first["renewTime"] and not channel._plain  # the channel, not requests
        stored = await api.store.get(HEARTBEAT_PREFIX + n1)
        assert stored is not None and stored.value.decode() == second["renewTime"]
        with pytest.raises(errors.Forbidden):
            await HeartbeatChannel(client, n2).beat()
        await channel.close()
        again = await channel.beat()  # a closed channel is opened again
        assert again["renewTime"] >= second["renewTime"]
        await channel.close()


async def test_a_node_that_hangs_up_mid_beat_is_not_a_server_error(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    node = unique("n")
    token = await node_token(api, node)
    host, port = api.url.removeprefix("https://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port), ssl=api.ssl)
    try:
        writer.write(
            f"GET /nodes/{node}/heartbeats HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        mask = os.urandom(4)
        writer.write(bytes([0x81, 0x80 | 4]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(b"beat")))
        await writer.drain()
    finally:
        writer.close()  # gone before the beat (which lingers up to 50 ms to share a txn) is answered
    with caplog.at_level(logging.ERROR):
        await asyncio.sleep(0.3)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    stored = await api.store.get(HEARTBEAT_PREFIX + node)
    assert stored is not None  # the beat itself was stored


async def test_a_beat_reaches_the_next_server_when_the_first_is_unreachable(api: Api) -> None:
    node = unique("n")
    token = await node_token(api, node)
    dead = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    async with ApiClient([dead, api.url], token, ssl_context=api.ssl) as client:
        answer = await HeartbeatChannel(client, node).beat(timeout=5)
    assert answer["renewTime"] and client.server == api.url


async def test_a_channel_that_died_since_the_last_beat_is_opened_again_within_the_beat(api: Api) -> None:
    node = unique("n")
    token = await node_token(api, node)
    async with ApiClient(api.url, token, ssl_context=api.ssl) as client:
        channel = HeartbeatChannel(client, node)
        await channel.beat()
        dead = channel._ws
        assert dead is not None and dead._conn is not None and dead._conn.transport is not None
        dead._conn.transport.abort()  # the connection is gone; the channel object does not know yet
        await asyncio.sleep(0)
        answer = await channel.beat(timeout=5)
        assert answer["renewTime"] and channel._ws is not dead
        await channel.close()
