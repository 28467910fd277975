"""Encryption at rest: a Store wrapper that seals the values of sensitive keys (Secrets) with AES-GCM.

Where it sits, and why there: ``SealingStore`` wraps the etcd store *below* everything in the API
(``ApiServer`` builds ``BatchingStore(SealingStore(etcd))``). Every value written under a sealed
prefix (``/corral/secrets/``) is encrypted on its way into etcd; every value read back — ``get``,
``list``, and each ``watch`` event, which feeds the watch cache — is decrypted on its way out. So the
API's handlers, its watch cache and its watch streams all see plain objects, and etcd (and its
snapshots and backups) sees only ciphertext. Keys outside the sealed prefixes pass through untouched
and cost nothing.

The envelope stored in etcd::

    b"k1:" + <key id, 8 hex> + b":" + <12-byte nonce> + <AES-256-GCM ciphertext and tag>

with the etcd key as associated data, so a sealed value copied to another key does not open. The
key file (``--encryption-key-file``, made mode 0600 at first start in the data dir) holds one key a
line, ``<id> <base64 of 32 bytes>``; the first line is the key new writes use, the others are still
read. ``Keyring`` re-reads the file when it changes (one ``stat`` per write), so every API instance
sharing it follows a rotation.

Rotation (``rotate``: ``POST /encryption/rotate``, ``corral secrets rotate-key``): write a new key
first in the file (old ones kept, so every instance can still read everything), re-seal every
value under the sealed prefixes with the new key (compare-and-swap per key, retried on a race),
once more a second later (a write another instance sealed with the old key just as the file
changed), then drop every other key from the file. A value sealed with a key no longer in the file cannot be
read: a GET of it is a 503 naming the key id, never silent plaintext; lists and watches leave it out
(logged), so one unreadable Secret does not take the others down with it.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets as pysecrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from corral.model.errors import Conflict, CorralError, NotFound, Unavailable
from corral.store.base import KeyValue, Page, Put, Store, WatchEvent, WatchStream

log = logging.getLogger(__name__)

MAGIC = b"k1:"
NONCE_BYTES = 12
ROTATION_SETTLE_SECONDS = 1.0
SEALED_PREFIXES: tuple[str, ...] = ("/corral/secrets/",)


class KeyringError(CorralError):
    code = 503
    reason = "EncryptionKeyUnavailable"


@dataclass(frozen=True, slots=True)
class DataKey:
    id: str
    secret: bytes

    @classmethod
    def generate(cls) -> DataKey:
        return cls(pysecrets.token_hex(4), AESGCM.generate_key(bit_length=256))


def _parse(text: str, path: Path) -> list[DataKey]:
    keys: list[DataKey] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        kid, _, b64 = line.partition(" ")
        try:
            raw = base64.b64decode(b64.strip(), validate=True)
        except ValueError:
            raw = b""
        if len(kid) != 8 or len(raw) != 32:
            raise KeyringError(f"{path}:{n}: expected '<8-hex-digit id> <base64 of 32 bytes>'")
        keys.append(DataKey(kid, raw))
    if not keys:
        raise KeyringError(f"{path} holds no encryption key")
    return keys


def _write_keys(path: Path, keys: Sequence[DataKey]) -> None:
    """Replace the key file atomically (mode 0600)."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# corral encryption keys: the first encrypts, all decrypt. Keep this file secret.\n")
        for k in keys:
            f.write(f"{k.id} {base64.b64encode(k.secret).decode()}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Keyring:
    """The AES-GCM keys: the primary seals, every one opens. From a file (followed) or in memory."""

    def __init__(self, keys: Sequence[DataKey], *, path: Path | None = None) -> None:
        self.path = path
        self._keys = list(keys)
        self._mtime = path.stat().st_mtime_ns if path is not None else 0

    @classmethod
    def ephemeral(cls) -> Keyring:
        """A keyring that lives only in this process (tests; a single throwaway API)."""
        return cls([DataKey.generate()])

    @classmethod
    def from_file(cls, path: Path, *, create: bool = True) -> Keyring:
        """The keys in ``path``; with ``create``, a new key is written there (0600) if it is missing."""
        if not path.exists():
            if not create:
                raise KeyringError(f"no encryption key file at {path}")
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_keys(path, [DataKey.generate()])
            log.info("generated the encryption key for Secrets at rest: %s", path)
        if path.stat().st_mode & 0o077:
            raise KeyringError(f"{path} is readable by others than its owner; chmod 600 it")
        return cls(_parse(path.read_text(), path), path=path)

    def _refresh(self) -> None:
        if self.path is None:
            return
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if mtime != self._mtime:
            self._keys = _parse(self.path.read_text(), self.path)
            self._mtime = mtime

    @property
    def primary(self) -> DataKey:
        self._refresh()
        return self._keys[0]

    @property
    def ids(self) -> list[str]:
        self._refresh()
        return [k.id for k in self._keys]

    def _find(self, kid: str) -> DataKey | None:
        for k in self._keys:
            if k.id == kid:
                return k
        return None

    def seal(self, key: str, plaintext: bytes) -> bytes:
        k = self.primary
        nonce = os.urandom(NONCE_BYTES)
        return MAGIC + k.id.encode() + b":" + nonce + AESGCM(k.secret).encrypt(nonce, plaintext, key.encode())

    def key_id_of(self, value: bytes) -> str | None:
        return value[3:11].decode() if value.startswith(MAGIC) and len(value) > 12 else None

    def open(self, key: str, value: bytes) -> bytes:
        kid = self.key_id_of(value)
        if kid is None:
            raise KeyringError(f"{key} is not sealed (written without encryption?); rewrite it through the API")
        k = self._find(kid)
        if k is None:
            self._refresh()
            k = self._find(kid)
        if k is None:
            raise KeyringError(f"{key} is sealed with key {kid}, which is not in the key file")
        body = value[12:]
        try:
            return AESGCM(k.secret).decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], key.encode())
        except InvalidTag:
            raise KeyringError(f"{key}: the sealed value does not open with key {kid} (tampered or moved?)") from None

    # --- rotation steps -----------------------------------------------------------------------

    def add_primary(self) -> DataKey:
        """Step 1: a new key, first in the file; the old ones stay readable."""
        self._refresh()
        new = DataKey.generate()
        self._keys = [new, *self._keys]
        self._save()
        return new

    def keep_only_primary(self) -> None:
        """Step 3 (after every value is re-sealed): drop every other key."""
        self._refresh()
        self._keys = self._keys[:1]
        self._save()

    def _save(self) -> None:
        if self.path is not None:
            _write_keys(self.path, self._keys)
            self._mtime = self.path.stat().st_mtime_ns


def _sealed(key: str) -> bool:
    return key.startswith(SEALED_PREFIXES)


class _OpeningStream:
    def __init__(self, inner: WatchStream, keyring: Keyring) -> None:
        self.inner = inner
        self.keyring = keyring

    def __aiter__(self) -> AsyncIterator[WatchEvent]:
        return self

    async def __anext__(self) -> WatchEvent:
        while True:
            ev = await self.inner.__anext__()
            if not _sealed(ev.key) or not ev.value:
                return ev
            try:
                value = self.keyring.open(ev.key, ev.value)
            except KeyringError as e:  # one unreadable value must not end the watch of every other
                log.error("skipping a change of %s: %s", ev.key, e.message)
                continue
            return WatchEvent(type=ev.type, key=ev.key, value=value, revision=ev.revision,
                              create_revision=ev.create_revision, version=ev.version, lease=ev.lease)

    async def aclose(self) -> None:
        await self.inner.aclose()


class SealingStore:
    """A Store whose values under ``SEALED_PREFIXES`` are AES-GCM ciphertext in ``inner`` and plain here."""

    def __init__(self, inner: Store, keyring: Keyring) -> None:
        self.inner = inner
        self.keyring = keyring

    def _seal(self, key: str, value: bytes) -> bytes:
        return self.keyring.seal(key, value) if _sealed(key) else value

    def _open(self, kv: KeyValue) -> KeyValue:
        if not _sealed(kv.key):
            return kv
        return KeyValue(kv.key, self.keyring.open(kv.key, kv.value), kv.create_revision, kv.mod_revision,
                        kv.version, kv.lease)

    async def get(self, key: str) -> KeyValue | None:
        kv = await self.inner.get(key)
        return None if kv is None else self._open(kv)

    async def list(self, prefix: str, *, limit: int = 0, start_after: str = "", revision: int = 0) -> Page:
        page = await self.inner.list(prefix, limit=limit, start_after=start_after, revision=revision)
        if not _sealed(prefix) and not any(_sealed(kv.key) for kv in page.items):
            return page
        items: list[KeyValue] = []
        for kv in page.items:
            try:
                items.append(self._open(kv))
            except KeyringError as e:  # listed without it (a GET of it says why): the rest stay readable
                log.error("leaving %s out of a list: %s", kv.key, e.message)
        return Page(items, page.revision, page.more)

    async def create(self, key: str, value: bytes, *, lease: int = 0) -> int:
        return await self.inner.create(key, self._seal(key, value), lease=lease)

    async def update(self, key: str, value: bytes, *, expected_revision: int, lease: int = 0) -> int:
        return await self.inner.update(key, self._seal(key, value), expected_revision=expected_revision, lease=lease)

    async def put(self, key: str, value: bytes, *, lease: int = 0, linger: float = 0.0) -> int:
        return await self.inner.put(key, self._seal(key, value), lease=lease, linger=linger)

    async def delete(self, key: str, *, expected_revision: int = 0) -> int:
        return await self.inner.delete(key, expected_revision=expected_revision)

    async def batch(self, puts: Sequence[Put]) -> Sequence[int | None]:
        return await self.inner.batch([Put(p.key, self._seal(p.key, p.value), p.expected_revision, p.lease)
                                       for p in puts])

    def watch(self, prefix: str, *, from_revision: int) -> WatchStream:
        return _OpeningStream(self.inner.watch(prefix, from_revision=from_revision), self.keyring)

    async def grant_lease(self, ttl: int) -> int:
        return await self.inner.grant_lease(ttl)

    async def keep_alive(self, lease: int) -> int:
        return await self.inner.keep_alive(lease)

    async def revoke_lease(self, lease: int) -> None:
        await self.inner.revoke_lease(lease)

    async def close(self) -> None:
        await self.inner.close()

    # --- rotation -----------------------------------------------------------------------------

    async def reseal_all(self) -> int:
        """Re-seal every sealed value not under the primary key; how many were rewritten."""
        primary = self.keyring.primary.id
        count = 0
        for prefix in SEALED_PREFIXES:
            start = ""
            while True:
                page = await self.inner.list(prefix, limit=500, start_after=start)
                for kv in page.items:
                    count += await self._reseal_one(kv, primary)
                if not page.more or not page.items:
                    break
                start = page.items[-1].key
        return count

    async def _reseal_one(self, kv: KeyValue | None, primary: str) -> int:
        for _ in range(10):
            if kv is None or self.keyring.key_id_of(kv.value) == primary:
                return 0
            try:
                await self.inner.update(kv.key, self.keyring.seal(kv.key, self.keyring.open(kv.key, kv.value)),
                                        expected_revision=kv.mod_revision, lease=kv.lease)
                return 1
            except (Conflict, NotFound):
                kv = await self.inner.get(kv.key)
        raise Unavailable(f"{kv.key if kv else '?'} kept changing during key rotation; run it again")

    async def rotate(self, *, settle: float = ROTATION_SETTLE_SECONDS) -> tuple[str, int]:
        """The whole rotation (see the module docstring); the new key's id and how many values moved.

        Another instance sharing the key file may be sealing a write with the old key at the moment
        the new one is written; a second pass after ``settle`` seconds re-seals such stragglers before
        the old key is dropped."""
        new = self.keyring.add_primary()
        moved = await self.reseal_all()
        await asyncio.sleep(settle)
        moved += await self.reseal_all()
        self.keyring.keep_only_primary()
        log.info("encryption key rotated to %s: %d values re-sealed", new.id, moved)
        return new.id, moved
