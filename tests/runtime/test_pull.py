"""Pulling images from a real registry into a real containerd: recorded, unpacked, shared, and the
registry's failures surfacing as corral's errors. ``ctr_client`` removes the images each test made
and fails the test if a lease (half-done pull) is left behind."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from corral.runtime._pb.containerd.services.content.v1 import content_pb2
from corral.runtime.auth import BasicCredentials, Credentials
from corral.runtime.client import Client
from corral.runtime.content import info
from corral.runtime.distribution import DigestMismatch, ImageNotFound, RegistryUnauthorized, RegistryUnreachable
from corral.runtime.imagebuild import BUSYBOX, build_busybox_image
from corral.runtime.images import image_names
from corral.runtime.leases import create_lease, delete_lease
from corral.runtime.pull import Puller, PullProgress, pull, puller_for
from corral.runtime.unpack import is_unpacked
from corral.store.embedded import free_port
from tests.fixtures.registry import Registry, push_oci_archive, run_registry

pytestmark = pytest.mark.containerd


async def test_pulling_an_image_records_it_unpacks_it_and_reports_progress(
    ctr_client: Client, registry: Registry
) -> None:
    events: list[PullProgress] = []
    image = await pull(ctr_client, registry.ref, progress=events.append)
    assert image.name == registry.ref
    assert registry.ref in await image_names(ctr_client)
    assert await is_unpacked(ctr_client, image)
    assert image.config.cmd or image.config.entrypoint
    for digest in (image.config_digest, *(layer.digest for layer in image.layers)):
        assert await info(ctr_client, digest) is not None
        last = [e for e in events if e.digest == digest][-1]
        assert last.done == last.total


async def test_pulling_an_image_that_is_already_there_is_a_no_op(ctr_client: Client, registry: Registry) -> None:
    first = await pull(ctr_client, registry.ref)
    stats = puller_for(ctr_client).stats
    fetched = stats.blobs_fetched
    again = await pull(ctr_client, registry.ref)
    assert again == first
    assert stats.noops == 1 and stats.blobs_fetched == fetched
    assert await pull(ctr_client, registry.ref, if_missing=True) == first
    assert stats.pulls == 2, "if_missing found it locally without asking the registry"


async def test_concurrent_pulls_of_one_reference_share_one_fetch(ctr_client: Client, registry: Registry) -> None:
    await delete_lease(ctr_client, await create_lease(ctr_client), sync=True)  # a GC pass: earlier tests' blobs go
    seen: list[list[PullProgress]] = [[], [], []]
    images = await asyncio.gather(*(pull(ctr_client, registry.ref, progress=s.append) for s in seen))
    stats = puller_for(ctr_client).stats
    assert images[0] == images[1] == images[2]
    assert stats.pulls == 1 and stats.joined == 2
    assert stats.blobs_fetched == 1 + len(images[0].layers)  # config and each layer, once
    assert all(s for s in seen), "every caller sees the shared pull's progress"


async def test_an_unknown_tag_is_image_not_found_in_the_registrys_words(ctr_client: Client, registry: Registry) -> None:
    ref = f"{registry.host}/busybox:no-such-tag"
    with pytest.raises(ImageNotFound, match="MANIFEST_UNKNOWN: manifest unknown"):
        await pull(ctr_client, ref)
    assert ref not in await image_names(ctr_client)


async def test_wrong_credentials_are_refused_and_right_ones_pull(ctr_client: Client, auth_registry: Registry) -> None:
    assert auth_registry.username and auth_registry.password
    wrong = Credentials({auth_registry.host: BasicCredentials(auth_registry.username, "not-the-password")})
    with pytest.raises(RegistryUnauthorized, match=auth_registry.username):
        await pull(ctr_client, auth_registry.ref, credentials=wrong)
    right = Credentials({auth_registry.host: BasicCredentials(auth_registry.username, auth_registry.password)})
    image = await pull(ctr_client, auth_registry.ref, credentials=right)
    assert await is_unpacked(ctr_client, image)


async def test_a_registry_with_nothing_listening_is_unreachable(ctr_client: Client) -> None:
    with pytest.raises(RegistryUnreachable, match=r"cannot reach registry 127\.0\.0\.1:"):
        await pull(ctr_client, f"127.0.0.1:{free_port()}/busybox:1")


def unique_busybox_archive(base: Path) -> Path:
    """The busybox image with a layer no other test has (a byte appended to the binary), so the pull
    really downloads it even when the session's containerd holds the usual busybox layer."""
    binary = base / "busybox"
    binary.write_bytes(BUSYBOX.read_bytes() + secrets.token_bytes(8))
    return build_busybox_image(base / "unique.tar", busybox=binary)


def corrupt_largest_blob(storage: Path) -> str:
    """Flip a byte in the middle of the registry's largest blob (the layer); returns its digest."""
    layer = max(storage.rglob("blobs/sha256/*/*/data"), key=lambda p: p.stat().st_size)
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes: only hashing can tell
    layer.write_bytes(bytes(data))
    return "sha256:" + layer.parent.name


async def test_a_corrupted_layer_fails_the_pull_and_leaves_nothing_behind(ctr_client: Client, tmp_path: Path) -> None:
    archive = await asyncio.to_thread(unique_busybox_archive, tmp_path)
    async with run_registry(tmp_path) as reg:
        await push_oci_archive(reg, archive, ref=reg.ref)
        digest = await asyncio.to_thread(corrupt_largest_blob, reg.root / "data")
        with pytest.raises(DigestMismatch, match=digest):
            await pull(ctr_client, reg.ref)
    assert reg.ref not in await image_names(ctr_client)
    assert await info(ctr_client, digest) is None
    statuses = await ctr_client.call(ctr_client.content.ListStatuses, content_pb2.ListStatusesRequest())
    assert [s.ref for s in statuses.statuses] == [], "no half-written ingest is left"


async def test_pulling_a_multi_platform_index_records_the_index_and_unpacks_this_platforms_image(
    ctr_client: Client, registry: Registry
) -> None:
    image = await pull(ctr_client, registry.index_ref)
    assert image.target_media_type == "application/vnd.oci.image.index.v1+json"
    assert image.manifest_digest != image.target_digest
    assert await is_unpacked(ctr_client, image)


async def test_a_cancelled_caller_does_not_cancel_the_pull_others_wait_for(
    ctr_client: Client, registry: Registry
) -> None:
    first = asyncio.create_task(pull(ctr_client, registry.ref))
    second = asyncio.create_task(pull(ctr_client, registry.ref))
    await asyncio.sleep(0)
    first.cancel()
    image = await second
    assert first.cancelled() and await is_unpacked(ctr_client, image)
    assert puller_for(ctr_client).stats.pulls == 1


async def test_closing_the_puller_cancels_a_running_pull_and_leaves_no_lease_or_writer(
    ctr_client: Client, registry: Registry
) -> None:
    puller = Puller(ctr_client)
    started = asyncio.Event()
    task = asyncio.create_task(puller.pull(registry.ref, progress=lambda _: started.set()))
    await started.wait()  # a blob download has begun, under the lease
    await puller.aclose()
    with pytest.raises(asyncio.CancelledError):
        await task
    statuses = await ctr_client.call(ctr_client.content.ListStatuses, content_pb2.ListStatusesRequest())
    assert [s.ref for s in statuses.statuses] == []
