"""Images in containerd: records (a name pointing at an index or manifest) and what they resolve to.

An image record (``Images`` service) names a target descriptor; the target and everything below it
are blobs in the content store. ``get_image`` walks index → this platform's manifest → config and
returns an ``Image``: the name, target, manifest and config digests, the process config (Entrypoint,
Cmd, Env, WorkingDir, User as ``spec.ImageConfig``), the layers, their diff ids and the chain id of
the top layer (the snapshot a container's rootfs is prepared from).

GC labels, the way containerd sets them: an index blob carries ``containerd.io/gc.ref.content.m.<i>``
for its manifests, a manifest ``...content.config`` and ``...content.l.<i>`` for its config and
layers (``gc_labels``), so the record keeps the whole tree alive; ``unpack`` adds the snapshot label
on the config. Pure helpers (``chain_ids``, ``select_manifest``, ``gc_labels``) do no I/O.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import field_mask_pb2

from corral.model.errors import AlreadyExists, FieldError, Invalid, NotFound
from corral.runtime._pb.containerd.services.images.v1 import images_pb2
from corral.runtime._pb.containerd.types import descriptor_pb2
from corral.runtime.client import Client
from corral.runtime.content import read_blob
from corral.runtime.spec import ImageConfig

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = frozenset({MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST})
MANIFEST_TYPES = frozenset({MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST})

DEFAULT_OS = "linux"
DEFAULT_ARCH = "amd64"


@dataclass(frozen=True, slots=True)
class Layer:
    """One layer blob as the manifest lists it, with its uncompressed digest from the config."""

    digest: str
    media_type: str
    size: int
    diff_id: str


@dataclass(frozen=True, slots=True)
class Image:
    name: str
    target_digest: str
    target_media_type: str
    target_size: int
    manifest_digest: str
    config_digest: str
    config: ImageConfig
    layers: tuple[Layer, ...]
    chain_id: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def diff_ids(self) -> tuple[str, ...]:
        return tuple(layer.diff_id for layer in self.layers)


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """The chain id of each layer: ``chain[0] = diff[0]``, ``chain[i] = sha256(chain[i-1] + " " + diff[i])``."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out


def parse_json(data: bytes, *, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise Invalid(f"{what} is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise Invalid(f"{what} is not a JSON object")
    return doc


def media_type_of(doc: Mapping[str, Any]) -> str:
    """The media type a manifest/index document declares (or implies by its fields)."""
    declared = doc.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    return MEDIA_OCI_INDEX if "manifests" in doc else MEDIA_OCI_MANIFEST


def select_manifest(
    index: Mapping[str, Any], *, os: str = DEFAULT_OS, architecture: str = DEFAULT_ARCH
) -> Mapping[str, Any]:
    """The descriptor of ``os/architecture``'s manifest in an index document."""
    entries = [m for m in index.get("manifests") or [] if isinstance(m, dict)]
    for m in entries:
        plat = m.get("platform")
        if isinstance(plat, dict) and plat.get("os") == os and plat.get("architecture") == architecture:
            return m
    unplatformed = [m for m in entries if not m.get("platform") and m.get("mediaType", MEDIA_OCI_MANIFEST) in MANIFEST_TYPES]
    if len(unplatformed) == 1:  # an index without platforms (some OCI layouts): take its only manifest
        return unplatformed[0]
    have = sorted({f"{m['platform'].get('os')}/{m['platform'].get('architecture')}" for m in entries if isinstance(m.get("platform"), dict)})
    raise Invalid(
        f"image has no {os}/{architecture} manifest; it has: {', '.join(have) or 'none'}",
        details=[FieldError("image", f"no {os}/{architecture} manifest")],
    )


def gc_labels(doc: Mapping[str, Any]) -> dict[str, str]:
    """The ``containerd.io/gc.ref.content.*`` labels a manifest or index blob carries for its children."""
    labels: dict[str, str] = {}
    for i, m in enumerate(doc.get("manifests") or []):
        labels[f"containerd.io/gc.ref.content.m.{i}"] = str(m["digest"])
    if isinstance(doc.get("config"), dict):
        labels["containerd.io/gc.ref.content.config"] = str(doc["config"]["digest"])
    for i, layer in enumerate(doc.get("layers") or []):
        labels[f"containerd.io/gc.ref.content.l.{i}"] = str(layer["digest"])
    return labels


async def create_image(
    client: Client,
    name: str,
    *,
    digest: str,
    media_type: str,
    size: int,
    labels: Mapping[str, str] | None = None,
) -> None:
    """Create the record ``name`` → target, or point an existing one at the new target."""
    record = images_pb2.Image(
        name=name,
        labels=dict(labels or {}),
        target=descriptor_pb2.Descriptor(media_type=media_type, digest=digest, size=size),
    )
    try:
        await client.call(client.images.Create, images_pb2.CreateImageRequest(image=record))
    except AlreadyExists:
        mask = field_mask_pb2.FieldMask(paths=["target", *(f"labels.{k}" for k in labels or {})])
        await client.call(client.images.Update, images_pb2.UpdateImageRequest(image=record, update_mask=mask))


async def remove_image(client: Client, name: str, *, sync: bool = False) -> None:
    """Delete the record (absent is fine); with ``sync`` containerd's GC runs before this returns."""
    with contextlib.suppress(NotFound):
        await client.call(client.images.Delete, images_pb2.DeleteImageRequest(name=name, sync=sync), retry=True)


async def image_names(client: Client) -> list[str]:
    reply = await client.call(client.images.List, images_pb2.ListImagesRequest())
    return sorted(str(img.name) for img in reply.images)


async def get_image(
    client: Client, name: str, *, os: str = DEFAULT_OS, architecture: str = DEFAULT_ARCH
) -> Image:
    """The image ``name`` resolved for this platform from the content store. ``NotFound`` if absent."""
    reply = await client.call(client.images.Get, images_pb2.GetImageRequest(name=name))
    return await resolve(client, reply.image, os=os, architecture=architecture)


async def list_images(client: Client) -> list[Image]:
    reply = await client.call(client.images.List, images_pb2.ListImagesRequest())
    return [await resolve(client, record) for record in sorted(reply.images, key=lambda r: str(r.name))]


async def resolve(
    client: Client, record: images_pb2.Image, *, os: str = DEFAULT_OS, architecture: str = DEFAULT_ARCH
) -> Image:
    """Walk a record's target down to this platform's manifest and config."""
    target = record.target
    manifest_digest = str(target.digest)
    doc = parse_json(await read_blob(client, manifest_digest), what=f"image {record.name}: {manifest_digest}")
    if media_type_of(doc) in INDEX_TYPES or str(target.media_type) in INDEX_TYPES:
        desc = select_manifest(doc, os=os, architecture=architecture)
        manifest_digest = str(desc["digest"])
        doc = parse_json(await read_blob(client, manifest_digest), what=f"image {record.name}: {manifest_digest}")
    return image_from_manifest(
        name=str(record.name),
        target=(str(target.digest), str(target.media_type), int(target.size)),
        manifest_digest=manifest_digest,
        manifest=doc,
        config=parse_json(await read_blob(client, str(doc["config"]["digest"])), what=f"image {record.name}: config"),
        labels=dict(record.labels),
    )


def image_from_manifest(
    *,
    name: str,
    target: tuple[str, str, int],
    manifest_digest: str,
    manifest: Mapping[str, Any],
    config: Mapping[str, Any],
    labels: Mapping[str, str] | None = None,
) -> Image:
    """An ``Image`` from its manifest and config documents. Pure."""
    layers_json = manifest.get("layers") or []
    diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
    if len(diff_ids) != len(layers_json):
        raise Invalid(f"image {name}: {len(layers_json)} layers but {len(diff_ids)} diff_ids in its config")
    layers = tuple(
        Layer(digest=str(lj["digest"]), media_type=str(lj.get("mediaType", "")), size=int(lj["size"]), diff_id=str(d))
        for lj, d in zip(layers_json, diff_ids, strict=True)
    )
    chain = chain_ids(diff_ids)
    return Image(
        name=name,
        target_digest=target[0],
        target_media_type=target[1],
        target_size=target[2],
        manifest_digest=manifest_digest,
        config_digest=str(manifest["config"]["digest"]),
        config=ImageConfig.from_oci(config.get("config")),
        layers=layers,
        chain_id=chain[-1] if chain else "",
        labels=dict(labels or {}),
    )
