"""EtcdStore: the ``Store`` protocol over etcd v3's gRPC API.

It speaks to etcd with aetcd's generated stubs (``aetcd.rpc``) on one grpc.aio channel, created on
first use and shared by every call, because aetcd's high-level client hides what corral needs
(compare-and-swap with a read on failure, ranges with limit and revision, prev_kv on watches).
Every write is one round trip:

- ``create`` is ``txn(create_revision == 0) then put``; a lost compare is ``AlreadyExists``.
- ``update`` is ``txn(mod_revision == expected) then put else range(key)``; the range in the
  failure branch tells ``Conflict`` (the key changed) from ``NotFound`` (it is gone).
- ``delete`` is a plain delete-range, or with ``expected_revision`` a txn like ``update``.
- ``batch`` packs up to 128 independent puts (etcd's ``--max-txn-ops``), each with its own
  compare, into one txn whose failure branch reads every key back; when it fails, the reads show
  which compares lost, and the others are tried again in a smaller txn until one commits.

gRPC errors become corral errors here (see ``etcd_errors``). Watches live in ``etcd_watch``.

TLS: ``https://`` endpoints need ``EtcdTls`` (the CA that signed etcd's serving certificate and,
for an etcd with ``--client-cert-auth``, a client certificate and key); the channel is then a
gRPC secure channel with those credentials. ``http://`` endpoints stay plaintext.
"""

from __future__ import annotations

import asyncio
import builtins
import ipaddress
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import grpc  # type: ignore[import-untyped]
from aetcd import rpc

from corral.model.errors import AlreadyExists, Conflict, NotFound, Unavailable
from corral.store.base import ANY_REVISION, KeyValue, Page, Put
from corral.store.etcd_errors import GRPC_ERRORS, translate
from corral.store.etcd_watch import EtcdWatch
from corral.store.keyrange import prefix_end

MAX_TXN_OPS = 128
"""etcd's default ``--max-txn-ops``: the most compares (and the most puts) one txn may carry."""

MAX_TXN_BYTES = 1024 * 1024
"""Values per txn, kept under etcd's default ``--max-request-bytes`` (1.5 MiB)."""

_CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    # Reconnect quickly after an etcd restart instead of grpc's default backoff of up to 2 minutes.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
)

_EQUAL = rpc.Compare.CompareResult.EQUAL
_GREATER = rpc.Compare.CompareResult.GREATER
_CREATE = rpc.Compare.CompareTarget.CREATE
_MOD = rpc.Compare.CompareTarget.MOD

T = TypeVar("T")


@dataclass(frozen=True)
class EtcdTls:
    """Files for a TLS etcd (``--etcd-cafile``, ``--etcd-certfile``, ``--etcd-keyfile``)."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def args(self) -> list[str]:
        """The same as ``serve`` flags (for a child process)."""
        flags = (("--etcd-cafile", self.ca_file), ("--etcd-certfile", self.cert_file), ("--etcd-keyfile", self.key_file))
        return [a for flag, path in flags if path is not None for a in (flag, str(path))]

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: Path | None) -> bytes | None:
            return path.read_bytes() if path is not None else None

        return grpc.ssl_channel_credentials(root_certificates=read(self.ca_file), private_key=read(self.key_file),
                                            certificate_chain=read(self.cert_file))


def grpc_target(endpoints: Sequence[str], *, tls: bool = False) -> str:
    """A gRPC target for etcd endpoints (``http://127.0.0.1:2379``); several IPs fail over in order."""
    if not endpoints:
        raise ValueError("EtcdStore needs at least one endpoint")
    hosts: list[str] = []
    for endpoint in endpoints:
        parts = urlsplit(endpoint if "//" in endpoint else f"//{endpoint}")
        if parts.scheme == "https" and not tls:
            raise ValueError(f"the etcd endpoint {endpoint} is https: give --etcd-cafile (and --etcd-certfile, "
                             "--etcd-keyfile for client-certificate auth)")
        hosts.append(f"{parts.hostname}:{parts.port or 2379}")
    if len(hosts) == 1:
        return hosts[0]
    try:
        for h in hosts:
            ipaddress.IPv4Address(h.rsplit(":", 1)[0])
    except ValueError:
        raise ValueError("several etcd endpoints must be IPv4 addresses (or put one DNS name)") from None
    return "ipv4:" + ",".join(hosts)



def to_kv(kv: Any) -> KeyValue:
    return KeyValue(
        key=kv.key.decode(),
        value=kv.value,
        create_revision=kv.create_revision,
        mod_revision=kv.mod_revision,
        version=kv.version,
        lease=kv.lease,
    )


class EtcdStore:
    """The etcd backend of ``Store``. Cheap per call: one channel, prebuilt stubs, one round trip."""

    def __init__(self, endpoints: Sequence[str], *, timeout: float = 10.0, tls: EtcdTls | None = None) -> None:
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self.tls = tls
        self._target = grpc_target(self.endpoints, tls=tls is not None)
        self._channel: Any = None
        self._kv: Any = None
        self._lease: Any = None
        self._watch: Any = None
        self._closed = False

    # -- plumbing ---------------------------------------------------------------------------

    def _connect(self) -> None:
        if self._closed:
            raise RuntimeError("EtcdStore is closed")
        if self.tls is not None:  # the files are a few KiB: read on the loop, once per channel
            self._channel = rpc.secure_channel(self._target, self.tls.credentials(), options=_CHANNEL_OPTIONS)
        else:
            self._channel = rpc.insecure_channel(self._target, options=_CHANNEL_OPTIONS)
        self._kv = rpc.KVStub(self._channel)
        self._lease = rpc.LeaseStub(self._channel)
        self._watch = rpc.WatchStub(self._channel)

    @property
    def closed(self) -> bool:
        return self._closed

    def channel(self) -> Any:
        """The gRPC channel (for other etcd services, e.g. Maintenance in store/snapshots.py)."""
        if self._channel is None:
            self._connect()
        return self._channel

    def watch_stub(self) -> Any:
        """The Watch service stub (for ``EtcdWatch``)."""
        if self._watch is None:
            self._connect()
        return self._watch

    async def _call(self, call: Awaitable[T], what: str) -> T:
        try:
            return await call
        except GRPC_ERRORS as e:
            raise translate(e, what=what) from None

    def _kv_stub(self) -> Any:
        if self._kv is None:
            self._connect()
        return self._kv

    async def _txn(self, request: Any, what: str) -> Any:
        return await self._call(self._kv_stub().Txn(request, timeout=self.timeout), what)

    # -- reads ------------------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        resp = await self._call(self._kv_stub().Range(rpc.RangeRequest(key=key.encode()), timeout=self.timeout), f"get {key}")
        return to_kv(resp.kvs[0]) if resp.kvs else None

    async def list(self, prefix: str, *, limit: int = 0, start_after: str = "", revision: int = 0) -> Page:
        raw = prefix.encode()
        start = start_after.encode() + b"\0" if start_after else raw or b"\0"
        request = rpc.RangeRequest(key=start, range_end=prefix_end(raw), limit=limit, revision=revision)
        resp = await self._call(self._kv_stub().Range(request, timeout=self.timeout), f"list {prefix}")
        return Page(items=[to_kv(kv) for kv in resp.kvs], revision=revision or resp.header.revision, more=resp.more)

    async def revision(self) -> int:
        """The store's current revision (a one-key range, so cheap)."""
        resp = await self._call(
            self._kv_stub().Range(rpc.RangeRequest(key=b"\0", limit=1, count_only=True), timeout=self.timeout),
            "read the revision",
        )
        rev: int = resp.header.revision
        return rev

    # -- writes -----------------------------------------------------------------------------

    async def create(self, key: str, value: bytes, *, lease: int = 0) -> int:
        k = key.encode()
        request = rpc.TxnRequest(
            compare=[rpc.Compare(key=k, target=_CREATE, result=_EQUAL, create_revision=0)],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value, lease=lease))],
        )
        resp = await self._txn(request, f"create {key}")
        if not resp.succeeded:
            raise AlreadyExists(f"{key} already exists")
        rev: int = resp.header.revision
        return rev

    async def update(self, key: str, value: bytes, *, expected_revision: int, lease: int = 0) -> int:
        """CAS on ``expected_revision``; with 0, replace whatever is there (``NotFound`` if nothing)."""
        k = key.encode()
        if expected_revision:
            compare = rpc.Compare(key=k, target=_MOD, result=_EQUAL, mod_revision=expected_revision)
        else:
            compare = rpc.Compare(key=k, target=_CREATE, result=_GREATER, create_revision=0)
        request = rpc.TxnRequest(
            compare=[compare],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value, lease=lease))],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=k, keys_only=True))],
        )
        resp = await self._txn(request, f"update {key}")
        if not resp.succeeded:
            raise self._lost(key, resp, expected_revision)
        rev: int = resp.header.revision
        return rev

    async def put(self, key: str, value: bytes, *, lease: int = 0, linger: float = 0.0) -> int:
        del linger  # one call, one round trip: nothing to wait for
        request = rpc.PutRequest(key=key.encode(), value=value, lease=lease)
        resp = await self._call(self._kv_stub().Put(request, timeout=self.timeout), f"put {key}")
        rev: int = resp.header.revision
        return rev

    async def delete(self, key: str, *, expected_revision: int = 0) -> int:
        k = key.encode()
        if not expected_revision:
            resp = await self._call(
                self._kv_stub().DeleteRange(rpc.DeleteRangeRequest(key=k), timeout=self.timeout), f"delete {key}"
            )
            if not resp.deleted:
                raise NotFound(f"{key} not found")
        else:
            request = rpc.TxnRequest(
                compare=[rpc.Compare(key=k, target=_MOD, result=_EQUAL, mod_revision=expected_revision)],
                success=[rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=k))],
                failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=k, keys_only=True))],
            )
            resp = await self._txn(request, f"delete {key}")
            if not resp.succeeded:
                raise self._lost(key, resp, expected_revision)
        rev: int = resp.header.revision
        return rev

    @staticmethod
    def _lost(key: str, resp: Any, expected: int) -> Exception:
        kvs = resp.responses[0].response_range.kvs
        if not kvs:
            return NotFound(f"{key} not found")
        return Conflict(
            f"{key} was modified (revision {kvs[0].mod_revision}, expected {expected}); read it again and retry"
        )

    async def batch(self, puts: Sequence[Put]) -> builtins.list[int | None]:
        """Independent CAS puts in as few txns as etcd allows; per put its revision or None if it lost."""
        results: builtins.list[int | None] = [None] * len(puts)
        for chunk in _chunks(puts):
            await self._batch_chunk(puts, chunk, results)
        return results

    async def _batch_chunk(
        self, puts: Sequence[Put], chunk: builtins.list[int], results: builtins.list[int | None]
    ) -> None:
        pending = chunk
        while pending:
            compares, success, failure = [], [], []
            for i in pending:
                p = puts[i]
                k = p.key.encode()
                if p.expected_revision == ANY_REVISION:
                    pass  # a plain put: nothing to compare
                elif p.expected_revision:
                    compares.append(rpc.Compare(key=k, target=_MOD, result=_EQUAL, mod_revision=p.expected_revision))
                else:
                    compares.append(rpc.Compare(key=k, target=_CREATE, result=_EQUAL, create_revision=0))
                success.append(rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=p.value, lease=p.lease)))
                failure.append(rpc.RequestOp(request_range=rpc.RangeRequest(key=k, keys_only=True)))
            resp = await self._txn(
                rpc.TxnRequest(compare=compares, success=success, failure=failure), f"batch of {len(pending)} puts"
            )
            if resp.succeeded:
                for i in pending:
                    results[i] = resp.header.revision
                return
            still: builtins.list[int] = []
            for i, op in zip(pending, resp.responses, strict=True):
                kvs = op.response_range.kvs
                current = kvs[0].mod_revision if kvs else 0
                if current == puts[i].expected_revision or puts[i].expected_revision == ANY_REVISION:
                    still.append(i)  # this compare held; another one sank the txn
            if len(still) == len(pending):  # cannot happen unless etcd changed under us; avoid a spin
                await asyncio.sleep(0)
            pending = still

    # -- watches ----------------------------------------------------------------------------

    def watch(self, prefix: str, *, from_revision: int) -> EtcdWatch:
        """Every change under ``prefix`` from ``from_revision`` on; see ``EtcdWatch``."""
        return EtcdWatch(self, prefix, from_revision=from_revision)

    # -- leases -----------------------------------------------------------------------------

    def _lease_stub(self) -> Any:
        if self._lease is None:
            self._connect()
        return self._lease

    async def grant_lease(self, ttl: int) -> int:
        resp = await self._call(
            self._lease_stub().LeaseGrant(rpc.LeaseGrantRequest(TTL=ttl), timeout=self.timeout), "grant a lease"
        )
        lease: int = resp.ID
        return lease

    async def keep_alive(self, lease: int) -> int:
        """Refresh ``lease`` once; its TTL in seconds. ``NotFound`` if it expired or was revoked."""
        what = f"keep lease {lease:x} alive"
        call = self._lease_stub().LeaseKeepAlive(timeout=self.timeout)
        try:
            await self._call(call.write(rpc.LeaseKeepAliveRequest(ID=lease)), what)
            resp = await self._call(call.read(), what)
        finally:
            call.cancel()
        if resp is None or not hasattr(resp, "TTL"):  # grpc.aio.EOF
            raise Unavailable(f"etcd: {what}: the keep-alive stream ended")
        if resp.TTL <= 0:
            raise NotFound(f"lease {lease:x} expired or was revoked")
        ttl: int = resp.TTL
        return ttl

    async def lease_ttl(self, lease: int) -> int:
        """The seconds ``lease`` has left; ``NotFound`` if it is gone."""
        resp = await self._call(
            self._lease_stub().LeaseTimeToLive(rpc.LeaseTimeToLiveRequest(ID=lease), timeout=self.timeout),
            f"read lease {lease:x}",
        )
        if resp.TTL < 0:
            raise NotFound(f"lease {lease:x} expired or was revoked")
        ttl: int = resp.TTL
        return ttl

    async def revoke_lease(self, lease: int) -> None:
        await self._call(
            self._lease_stub().LeaseRevoke(rpc.LeaseRevokeRequest(ID=lease), timeout=self.timeout),
            f"revoke lease {lease:x}",
        )

    # -- maintenance ------------------------------------------------------------------------

    async def compact(self, revision: int, *, physical: bool = True) -> None:
        """Drop history before ``revision`` (tests of relisting; etcd also auto-compacts)."""
        await self._call(
            self._kv_stub().Compact(rpc.CompactionRequest(revision=revision, physical=physical), timeout=self.timeout),
            f"compact at {revision}",
        )

    async def close(self) -> None:
        self._closed = True
        channel, self._channel = self._channel, None
        self._kv = self._lease = self._watch = None
        if channel is not None:
            await channel.close()


def _chunks(puts: Sequence[Put]) -> list[list[int]]:
    """Indexes of ``puts`` split into txn-sized groups; a key twice in one txn is an etcd error."""
    chunks: list[list[int]] = []
    current: list[int] = []
    keys: set[str] = set()
    size = 0
    for i, p in enumerate(puts):
        weight = len(p.key) + len(p.value)
        if current and (len(current) >= MAX_TXN_OPS or p.key in keys or size + weight > MAX_TXN_BYTES):
            chunks.append(current)
            current, keys, size = [], set(), 0
        current.append(i)
        keys.add(p.key)
        size += weight
    if current:
        chunks.append(current)
    return chunks
