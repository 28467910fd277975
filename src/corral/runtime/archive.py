"""Import image archives into containerd: OCI image layouts and ``docker save`` tarballs.

``import_archive(client, path)`` reads a tar (or an OCI layout directory) and, under one lease:

- **OCI layout** (``index.json`` + ``blobs/<algo>/<hex>``): each entry of ``index.json`` is an image;
  its name comes from the ``io.containerd.image.name`` annotation, else
  ``org.opencontainers.image.ref.name`` (a bare tag there is appended to ``name=`` if given). A
  nested index is narrowed to linux/amd64.
- **docker save** (``manifest.json`` with ``Config``, ``RepoTags``, ``Layers``): converted to OCI — the
  config blob is kept byte for byte (its digest is the image id), each layer tar is stored as an OCI
  layer (``+gzip`` when it is compressed) and a new OCI manifest is written; names are the RepoTags.

Blobs go in children first (layers, config, then manifest and index with their GC labels), each
verified against its digest; then the image records are created and the images unpacked. Names are
normalised like any reference (``busybox:1`` → ``docker.io/library/busybox:1``). A file that is not
such an archive, a missing blob or a digest mismatch is ``Invalid`` saying what and where. Tar
reading and hashing run in a worker thread, a chunk at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import tarfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from corral.model.errors import Conflict, Invalid
from corral.runtime.client import Client
from corral.runtime.content import CHUNK_BYTES, write_blob, write_blob_chunks
from corral.runtime.images import (
    INDEX_TYPES,
    MEDIA_OCI_CONFIG,
    MEDIA_OCI_MANIFEST,
    Image,
    create_image,
    gc_labels,
    get_image,
    parse_json,
    select_manifest,
)
from corral.runtime.leases import lease
from corral.runtime.reference import parse_reference
from corral.runtime.unpack import unpack

MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MAX_JSON_BYTES = 16 << 20
NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"


@dataclass
class _Source:
    """Random access to an archive's files: a tar file or a directory. Blocking methods."""

    path: Path
    tar: tarfile.TarFile | None = None
    members: dict[str, tarfile.TarInfo] | None = None

    @classmethod
    def open(cls, path: Path) -> _Source:
        if path.is_dir():
            return cls(path)
        try:
            tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by close()
            members = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}
        except (tarfile.TarError, OSError, EOFError) as e:
            raise Invalid(f"{path} is not an image archive (a tar file or an OCI layout directory): {e}") from None
        return cls(path, tar, members)

    def has(self, name: str) -> bool:
        if self.members is not None:
            return name in self.members
        return (self.path / name).is_file()

    def size(self, name: str) -> int:
        if self.members is not None:
            return self.members[name].size
        return (self.path / name).stat().st_size

    def open_file(self, name: str) -> IO[bytes]:
        if not self.has(name):
            raise Invalid(f"{self.path}: {name} is missing from the archive")
        if self.tar is not None and self.members is not None:
            f = self.tar.extractfile(self.members[name])
            assert f is not None
            return f
        return (self.path / name).open("rb")

    def read(self, name: str, *, limit: int = MAX_JSON_BYTES) -> bytes:
        if self.size(name) > limit:
            raise Invalid(f"{self.path}: {name} is larger than {limit} bytes")
        with self.open_file(name) as f:
            return f.read()

    def hash(self, name: str) -> tuple[str, int, bool]:
        """(sha256 digest, size, gzip?) of a member."""
        h, size, head = hashlib.sha256(), 0, b""
        with self.open_file(name) as f:
            while chunk := f.read(CHUNK_BYTES):
                head = head or chunk[:2]
                h.update(chunk)
                size += len(chunk)
        return "sha256:" + h.hexdigest(), size, head == b"\x1f\x8b"

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()


async def _chunks(src: _Source, name: str) -> AsyncIterator[bytes]:
    f = await asyncio.to_thread(src.open_file, name)
    try:
        while chunk := await asyncio.to_thread(f.read, CHUNK_BYTES):
            yield chunk
    finally:
        f.close()


def _blob_path(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"blobs/{algo}/{hexpart}"


def _normalise(name: str, *, where: str) -> str:
    try:
        return parse_reference(name).name
    except Invalid:
        raise Invalid(f"{where}: {name!r} is not a valid image name") from None


async def import_archive(client: Client, path: Path, *, name: str | None = None, unpack_layers: bool = True) -> list[Image]:
    """Import every image in the archive at ``path``; returns them (unpacked unless told not to)."""
    src = await asyncio.to_thread(_Source.open, path)
    try:
        async with lease(client):
            if await asyncio.to_thread(src.has, "index.json"):
                records = await _import_oci(client, src, base_name=name)
            elif await asyncio.to_thread(src.has, "manifest.json"):
                records = await _import_docker(client, src, base_name=name)
            else:
                raise Invalid(f"{path} is not an image archive: it has neither index.json (OCI) nor manifest.json (docker save)")
            if not records:
                raise Invalid(f"{path}: no named image inside; pass a name for it")
            images = []
            for ref, (digest, media_type, size) in records.items():
                await create_image(client, ref, digest=digest, media_type=media_type, size=size)
                image = await get_image(client, ref)
                if unpack_layers:
                    await unpack(client, image)
                images.append(image)
            return images
    finally:
        await asyncio.to_thread(src.close)


async def _store(client: Client, src: _Source, digest: str, size: int, *, what: str) -> None:
    """Copy a blob of the layout into the content store, verified by containerd at commit."""
    blob = _blob_path(digest)
    if not await asyncio.to_thread(src.has, blob):
        raise Invalid(f"{src.path}: {what} {digest} is missing ({blob})")
    try:
        await write_blob_chunks(client, _chunks(src, blob), digest=digest, size=size)
    except (Conflict, Invalid) as e:
        raise Invalid(f"{src.path}: {what} {digest} does not match its digest or size: {e.message}") from None


async def _store_json(client: Client, src: _Source, desc: dict[str, Any], *, what: str) -> tuple[dict[str, Any], bytes]:
    digest = str(desc.get("digest", ""))
    data = await asyncio.to_thread(src.read, _blob_path(digest))
    doc = parse_json(data, what=f"{src.path}: {what} {digest}")
    return doc, data


async def _import_manifest(client: Client, src: _Source, desc: dict[str, Any]) -> None:
    doc, data = await _store_json(client, src, desc, what="manifest")
    config = doc.get("config")
    if not isinstance(config, dict):
        raise Invalid(f"{src.path}: manifest {desc.get('digest')} has no config")
    for i, layer in enumerate(doc.get("layers") or []):
        await _store(client, src, str(layer["digest"]), int(layer["size"]), what=f"layer {i}")
    await _store(client, src, str(config["digest"]), int(config["size"]), what="config")
    await _write_verified(client, src, data, desc, labels=gc_labels(doc))


async def _write_verified(client: Client, src: _Source, data: bytes, desc: dict[str, Any], *, labels: dict[str, str]) -> None:
    try:
        await write_blob(client, data, digest=str(desc["digest"]), labels=labels)
    except Invalid as e:
        raise Invalid(f"{src.path}: {e.message}") from None


async def _import_oci(client: Client, src: _Source, *, base_name: str | None) -> dict[str, tuple[str, str, int]]:
    index = parse_json(await asyncio.to_thread(src.read, "index.json"), what=f"{src.path}: index.json")
    records: dict[str, tuple[str, str, int]] = {}
    for i, desc in enumerate(index.get("manifests") or []):
        if not isinstance(desc, dict) or "digest" not in desc or "size" not in desc:
            raise Invalid(f"{src.path}: index.json manifests[{i}] is not a descriptor")
        annotations = desc.get("annotations") or {}
        ref = annotations.get(NAME_ANNOTATION) or annotations.get(REF_ANNOTATION)
        if ref and "/" not in ref and ":" not in ref and base_name:
            ref = f"{base_name}:{ref}"  # a bare tag
        ref = ref or base_name
        if not ref:
            continue
        media_type = str(desc.get("mediaType") or MEDIA_OCI_MANIFEST)
        if media_type in INDEX_TYPES:
            nested, data = await _store_json(client, src, desc, what="index")
            await _import_manifest(client, src, dict(select_manifest(nested)))
            await _write_verified(client, src, data, desc, labels=gc_labels(nested))
        else:
            await _import_manifest(client, src, desc)
        records[_normalise(ref, where=str(src.path))] = (str(desc["digest"]), media_type, int(desc["size"]))
    return records


async def _import_docker(client: Client, src: _Source, *, base_name: str | None) -> dict[str, tuple[str, str, int]]:
    entries = json.loads(await asyncio.to_thread(src.read, "manifest.json") or b"null")
    if not isinstance(entries, list):
        raise Invalid(f"{src.path}: manifest.json is not a list of images")
    records: dict[str, tuple[str, str, int]] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise Invalid(f"{src.path}: manifest.json[{i}] has no Config")
        config_data = await asyncio.to_thread(src.read, entry["Config"])
        config = parse_json(config_data, what=f"{src.path}: {entry['Config']}")
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        layer_files = list(entry.get("Layers") or [])
        if len(diff_ids) != len(layer_files):
            raise Invalid(f"{src.path}: image {i} lists {len(layer_files)} layers but its config {len(diff_ids)} diff_ids")
        layers = []
        for layer_file, diff_id in zip(layer_files, diff_ids, strict=True):
            digest, size, gz = await asyncio.to_thread(src.hash, layer_file)
            if not gz and digest != diff_id:
                raise Invalid(f"{src.path}: layer {layer_file} hashes to {digest}, but the config says {diff_id}")
            await write_blob_chunks(client, _chunks(src, layer_file), digest=digest, size=size)
            layers.append({"mediaType": MEDIA_LAYER_GZIP if gz else MEDIA_LAYER, "digest": digest, "size": size})
        config_digest = await write_blob(client, config_data)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": {"mediaType": MEDIA_OCI_CONFIG, "digest": config_digest, "size": len(config_data)},
            "layers": layers,
        }
        manifest_data = json.dumps(manifest, separators=(",", ":")).encode()
        manifest_digest = await write_blob(client, manifest_data, labels=gc_labels(manifest))
        names = [str(t) for t in entry.get("RepoTags") or []] or ([base_name] if base_name else [])
        for ref in names:
            records[_normalise(ref, where=str(src.path))] = (manifest_digest, MEDIA_OCI_MANIFEST, len(manifest_data))
    return records
