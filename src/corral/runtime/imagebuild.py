"""A tiny OCI image built from Debian's busybox-static, for tests and the README demo (no network).

``build_busybox_image`` writes one gzip rootfs layer holding ``/bin/busybox`` and a symlink per
applet corral's tests use (sh, sleep, httpd, wget, nc, ...), ``/etc/passwd`` and ``/etc/group`` (root,
nobody), a world-writable ``/tmp`` and ``/var/www/index.html`` ("hello from corral"), plus an OCI
config (``PATH``, ``Cmd ["sh"]``) and manifest, as an OCI image layout: a directory (``oci-dir``)
or that directory as a tar (``oci-archive``, what ``skopeo copy oci-archive:PATH ...`` and
``import_archive`` read). Every tar entry has a fixed mtime, owner and order and gzip has no
timestamp, so the same busybox binary always gives the same digests.

Run ``python -m corral.runtime.imagebuild OUT.tar [--ref NAME] [--format oci-dir]`` to build one by hand.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any, Literal

BUSYBOX = Path("/bin/busybox")
INSTALL_HINT = "install it with `scripts/install-deps.sh` (Debian package busybox-static)"
DEFAULT_REF = "corral.test/busybox:1"
MTIME = 1_700_000_000  # fixed, so digests are stable
APPLETS = (
    "sh", "sleep", "httpd", "wget", "echo", "cat", "ls", "env", "true", "false", "kill", "mkdir",
    "touch", "id", "hostname", "ip", "dd", "head", "tail", "ps", "seq", "yes", "nc", "grep", "sed",
    "wc", "rm", "cp", "mv", "ln", "chmod", "date", "uname", "printf", "test", "stat", "df", "mount",
    "nslookup", "ping", "top", "free", "tar", "md5sum", "stty",
)  # fmt: skip
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnobody:x:65534:\n"
INDEX_HTML = "hello from corral\n"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

Format = Literal["oci-archive", "oci-dir"]


def _entry(name: str, *, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname = kind, mode, size, link
    info.mtime, info.uid, info.gid, info.uname, info.gname = MTIME, 0, 0, "", ""
    return info


def rootfs_tar(busybox: bytes) -> bytes:
    """The uncompressed rootfs layer. Pure (given busybox's bytes)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d, mode in (("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("proc", 0o555), ("root", 0o700),
                        ("sys", 0o555), ("tmp", 0o1777), ("var", 0o755), ("var/www", 0o755)):  # fmt: skip
            tar.addfile(_entry(d, kind=tarfile.DIRTYPE, mode=mode))
        tar.addfile(_entry("bin/busybox", mode=0o755, size=len(busybox)), io.BytesIO(busybox))
        for applet in sorted(APPLETS):
            tar.addfile(_entry(f"bin/{applet}", kind=tarfile.SYMTYPE, mode=0o777, link="busybox"))
        for name, text in (("etc/group", GROUP), ("etc/passwd", PASSWD), ("var/www/index.html", INDEX_HTML)):
            data = text.encode()
            tar.addfile(_entry(name, size=len(data)), io.BytesIO(data))
    return out.getvalue()


def _gzip(data: bytes) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return out.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def image_blobs(busybox: bytes, *, ref: str = DEFAULT_REF) -> tuple[dict[str, bytes], bytes]:
    """The blobs by digest and the ``index.json`` of the image. Pure."""
    layer = rootfs_tar(busybox)
    layer_gz = _gzip(layer)
    config = _json({
        "architecture": "amd64",
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {"Env": [PATH_ENV], "Cmd": ["sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "corral.runtime.imagebuild"}],
    })  # fmt: skip
    manifest = _json({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": MEDIA_LAYER_GZIP, "digest": _digest(layer_gz), "size": len(layer_gz)}],
    })  # fmt: skip
    index = _json({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{
            "mediaType": MEDIA_MANIFEST,
            "digest": _digest(manifest),
            "size": len(manifest),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": ref},
        }],
    })  # fmt: skip
    blobs = {_digest(b): b for b in (layer_gz, config, manifest)}
    return blobs, index


def _layout_files(busybox: bytes, ref: str) -> list[tuple[str, bytes]]:
    blobs, index = image_blobs(busybox, ref=ref)
    files = [("oci-layout", _json({"imageLayoutVersion": "1.0.0"})), ("index.json", index)]
    files += [(f"blobs/sha256/{d.removeprefix('sha256:')}", data) for d, data in sorted(blobs.items())]
    return files


def build_busybox_image(
    dest: Path, *, ref: str = DEFAULT_REF, fmt: Format = "oci-archive", busybox: Path = BUSYBOX
) -> Path:
    """Write the image to ``dest`` (a .tar for ``oci-archive``, a directory for ``oci-dir``); returns ``dest``.

    Blocking (reads ~2 MB, gzips it): call it with ``asyncio.to_thread`` from async code.
    """
    if not busybox.exists():
        raise FileNotFoundError(f"{busybox} is missing; {INSTALL_HINT}")
    files = _layout_files(busybox.read_bytes(), ref)
    if fmt == "oci-dir":
        if dest.exists():
            shutil.rmtree(dest)
        for name, data in files:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes(data)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("blobs", "blobs/sha256"):
            tar.addfile(_entry(d, kind=tarfile.DIRTYPE, mode=0o755))
        for name, data in files:
            tar.addfile(_entry(name, size=len(data)), io.BytesIO(data))
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m corral.runtime.imagebuild", description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--ref", default=DEFAULT_REF)
    parser.add_argument("--format", dest="fmt", choices=["oci-archive", "oci-dir"], default="oci-archive")
    args = parser.parse_args(argv)
    path = build_busybox_image(args.out, ref=args.ref, fmt=args.fmt)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
