"""Importing image archives into a real containerd: OCI layout, docker save, idempotence, bad input."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from corral.model.errors import Invalid, NotFound
from corral.runtime.archive import import_archive
from corral.runtime.client import Client
from corral.runtime.content import info
from corral.runtime.imagebuild import build_busybox_image
from corral.runtime.images import Image, get_image, image_names, list_images, remove_image
from corral.runtime.unpack import snapshot_exists, snapshot_gc_label

pytestmark = pytest.mark.containerd


async def test_an_oci_archive_imports_as_an_unpacked_image_with_its_config(
    ctr_client: Client, busybox_archive: Path, tmp_path: Path
) -> None:
    # a busybox of its own (one marker byte more), so no other test's image shares its blobs
    marked = tmp_path / "busybox"
    await asyncio.to_thread(marked.write_bytes, Path("/bin/busybox").read_bytes() + b"import-me")
    archive = await asyncio.to_thread(
        build_busybox_image, tmp_path / "b.tar", ref="corral.test/import-me:1", busybox=marked
    )
    (image,) = await import_archive(ctr_client, archive)

    assert image.name == "corral.test/import-me:1"
    assert image.name in await image_names(ctr_client)
    assert image.config.cmd == ("sh",)
    assert any(e.startswith("PATH=") for e in image.config.env)
    assert len(image.layers) == 1 and image.chain_id == image.layers[0].diff_id
    assert await snapshot_exists(ctr_client, image.chain_id)
    config = await info(ctr_client, image.config_digest)
    assert config is not None and config.labels[snapshot_gc_label()] == image.chain_id
    listed = {i.name: i for i in await list_images(ctr_client)}
    assert listed[image.name].manifest_digest == image.manifest_digest

    await remove_image(ctr_client, image.name, sync=True)
    with pytest.raises(NotFound):
        await get_image(ctr_client, image.name)
    assert await info(ctr_client, image.manifest_digest) is None  # GC took the blobs with the record


async def test_importing_the_same_archive_twice_is_idempotent(
    ctr_client: Client, busybox_archive: Path, busybox_image: Image
) -> None:
    (first,) = await import_archive(ctr_client, busybox_archive)
    (second,) = await import_archive(ctr_client, busybox_archive)
    assert first == second == busybox_image
    assert (await image_names(ctr_client)).count(first.name) == 1


def _docker_save_from_oci(oci_archive: Path, dest: Path, *, tag: str) -> Path:
    """A ``docker save`` tarball (manifest.json, <id>.json, <layer>/layer.tar) with the same content."""
    with tarfile.open(oci_archive) as src:

        def read(name: str) -> bytes:
            f = src.extractfile(name)
            assert f is not None
            return f.read()

        index = json.loads(read("index.json"))
        manifest = json.loads(read("blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]))
        config = read("blobs/sha256/" + manifest["config"]["digest"].split(":")[1])
        layers = [gzip.decompress(read("blobs/sha256/" + layer["digest"].split(":")[1])) for layer in manifest["layers"]]
    files = {f"{manifest['config']['digest'].split(':')[1]}.json": config}
    for i, layer in enumerate(layers):
        files[f"layer{i}/layer.tar"] = layer
    files["manifest.json"] = json.dumps(
        [{"Config": next(iter(files)), "RepoTags": [tag], "Layers": [f"layer{i}/layer.tar" for i in range(len(layers))]}]
    ).encode()
    with tarfile.open(dest, "w") as out:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            out.addfile(ti, io.BytesIO(data))
    return dest


async def test_a_docker_save_archive_imports_converted_to_oci(
    ctr_client: Client, busybox_archive: Path, tmp_path: Path
) -> None:
    archive = await asyncio.to_thread(_docker_save_from_oci, busybox_archive, tmp_path / "save.tar", tag="saved:2")
    (image,) = await import_archive(ctr_client, archive)
    assert image.name == "docker.io/library/saved:2"
    assert image.config.cmd == ("sh",)
    assert image.layers[0].media_type == "application/vnd.oci.image.layer.v1.tar"
    assert await snapshot_exists(ctr_client, image.chain_id)


async def test_a_file_that_is_not_an_image_archive_is_invalid(ctr_client: Client, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tar file" * 100)
    with pytest.raises(Invalid, match="not an image archive"):
        await import_archive(ctr_client, junk)

    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w") as t:
        ti = tarfile.TarInfo("hello.txt")
        t.addfile(ti, io.BytesIO(b""))
    with pytest.raises(Invalid, match=r"neither index\.json"):
        await import_archive(ctr_client, empty)


async def test_an_archive_with_a_corrupted_blob_is_invalid_and_leaves_no_image(
    ctr_client: Client, tmp_path: Path
) -> None:
    fake = tmp_path / "busybox"  # a layer of its own: the store never holds a good copy of it
    fake.write_bytes(os.urandom(4096))
    layout = await asyncio.to_thread(
        build_busybox_image, tmp_path / "layout", ref="corral.test/corrupt:1", fmt="oci-dir", busybox=fake
    )
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"].split(":")[1]).read_text())
    layer = layout / "blobs/sha256" / manifest["layers"][0]["digest"].split(":")[1]
    data = bytearray(layer.read_bytes())
    data[100] ^= 0xFF
    layer.write_bytes(bytes(data))
    with pytest.raises(Invalid, match="does not match"):
        await import_archive(ctr_client, layout)
    assert "corral.test/corrupt:1" not in await image_names(ctr_client)
