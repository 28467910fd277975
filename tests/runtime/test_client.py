"""The containerd client against a real containerd: translated errors, leases, content, reconnect."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.model.errors import Invalid, NotFound, Unavailable
from corral.runtime._pb.containerd.services.containers.v1 import containers_pb2
from corral.runtime._pb.containerd.services.leases.v1 import leases_pb2
from corral.runtime.client import Client
from corral.runtime.content import delete_blob, info, read_blob, write_blob
from corral.runtime.embedded import EmbeddedContainerd
from corral.runtime.leases import lease, list_leases

pytestmark = pytest.mark.containerd


async def test_getting_a_missing_container_raises_not_found(ctr_client: Client) -> None:
    with pytest.raises(NotFound, match="not found"):
        await ctr_client.call(ctr_client.containers.Get, containers_pb2.GetContainerRequest(id="no-such-container"))


async def test_a_blob_written_under_a_lease_reads_back_and_the_lease_is_gone_after(ctr_client: Client) -> None:
    data = b"corral content " * 10_000
    async with lease(ctr_client) as lid:
        assert lid in await list_leases(ctr_client)
        digest = await write_blob(ctr_client, data, labels={"corral/test": "1"})
        assert await write_blob(ctr_client, data) == digest  # present already: skipped
        held = await ctr_client.call(ctr_client.leases.ListResources, leases_pb2.ListResourcesRequest(id=lid))
        assert (digest, "content") in {(r.id, r.type) for r in held.resources}  # the header reached containerd
        assert await read_blob(ctr_client, digest) == data
        blob = await info(ctr_client, digest)
        assert blob is not None and blob.size == len(data) and blob.labels["corral/test"] == "1"
        await delete_blob(ctr_client, digest)
    assert lid not in await list_leases(ctr_client)
    assert await info(ctr_client, digest) is None


async def test_a_blob_that_does_not_match_its_digest_is_refused(ctr_client: Client) -> None:
    with pytest.raises(Invalid, match="does not match"):
        await write_blob(ctr_client, b"abc", digest="sha256:" + "0" * 64)


async def test_a_client_keeps_working_across_a_containerd_restart(
    containerd: EmbeddedContainerd, ctr_client: Client
) -> None:
    before = await ctr_client.version()
    await containerd.kill()
    try:
        with pytest.raises(Unavailable):
            await ctr_client.version()
    finally:
        await containerd.start()
    assert await ctr_client.version() == before


async def test_a_socket_where_nothing_listens_is_unavailable(tmp_path: Path) -> None:
    client = Client(str(tmp_path / "none.sock"))
    with pytest.raises(Unavailable, match="cannot reach containerd"):
        await client.connect()
    await client.close()
