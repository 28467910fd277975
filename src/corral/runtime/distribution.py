"""The OCI distribution API client: resolve a reference to manifests, stream blobs, verified.

``RegistryClient`` speaks ``/v2/<repository>/manifests/<tag|digest>`` and ``/blobs/<digest>`` over
aiohttp on a session the caller owns (one per pull, so its layers share connections):

- **Resolve.** ``resolve(ref)`` GETs the manifest with an ``Accept`` of the OCI and Docker v2
  manifest and index types. An index (or Docker manifest list) is narrowed to the host's platform
  (``linux/<arch>``, ``x86_64`` → ``amd64``, ``aarch64`` → ``arm64``) and that manifest fetched by
  digest; no match is ``UnsupportedPlatform`` listing the platforms the image has. Every manifest
  is hashed and checked against the digest it was asked by (and ``Docker-Content-Digest``).
- **Blobs.** ``blob_chunks`` yields the body in chunks (lazily: no request until iterated) while
  hashing it; ``fetch_blob`` feeds the same to an async sink. Redirects (to object storage) are
  followed and aiohttp drops ``Authorization`` when the origin changes. A size or digest that differs
  from the descriptor is ``DigestMismatch``, raised *before* the last chunk is handed over, so a
  content writer fed from it never gets to commit. (Hashing a 1 MiB chunk takes under a millisecond,
  so it stays on the loop.)
- **Scheme.** HTTPS, except plain HTTP for loopback hosts (127.0.0.0/8, localhost, ::1) and for
  registries listed as insecure (``host:port`` or ``host``).
- **Auth.** On 401 the ``WWW-Authenticate`` challenge is answered (see ``auth.py``): Basic with the
  registry's credentials, or Bearer via the token realm, tokens cached per scope; the request is then
  retried once. Known answers are sent up front next time.
- **Errors** are corral's: ``ImageNotFound`` (404; carries the registry's ``CODE: message`` words),
  ``RegistryUnauthorized`` (401/403 after auth), ``RegistryUnreachable`` (connect/TLS/timeouts/5xx/429),
  ``DigestMismatch``, ``UnsupportedPlatform``. No aiohttp exception escapes this module.
"""

from __future__ import annotations

import hashlib
import json
import platform as _platform
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from corral.model.errors import CorralError, FieldError, Invalid, NotFound, Unauthorized, Unavailable
from corral.runtime.auth import BasicCredentials, Credentials, TokenCache, parse_challenges, pull_scope
from corral.runtime.reference import Reference, is_loopback

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = frozenset({MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST})
MANIFEST_TYPES = frozenset({MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST})
ACCEPT = ", ".join([MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST, MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST])

MAX_MANIFEST_BYTES = 4 << 20
CHUNK_BYTES = 1 << 20
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "i386": "386",
         "i686": "386", "armv7l": "arm", "armv6l": "arm", "ppc64le": "ppc64le", "s390x": "s390x",
         "riscv64": "riscv64"}  # fmt: skip


class ImageNotFound(NotFound):
    """The registry has no such repository, tag or digest."""

    reason = "ImageNotFound"


class RegistryUnauthorized(Unauthorized):
    """The registry wants credentials that corral lacks, or rejected the ones it sent."""

    reason = "RegistryUnauthorized"


class RegistryUnreachable(Unavailable):
    """No usable answer from the registry: connection refused, TLS failure, timeout, 5xx, 429."""

    reason = "RegistryUnreachable"


class DigestMismatch(CorralError):
    """What the registry sent does not hash to (or is not the size of) what was asked for."""

    code = 502
    reason = "DigestMismatch"


class UnsupportedPlatform(Invalid):
    """The image has no manifest for this host's platform."""

    reason = "UnsupportedPlatform"


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def host_platform(machine: str | None = None) -> Platform:
    """This host's OCI platform, from ``uname -m`` (or ``machine``)."""
    m = machine if machine is not None else _platform.machine()
    arch = _ARCH.get(m, m)
    variant = {"armv7l": "v7", "armv6l": "v6"}.get(m)
    return Platform("linux", arch, variant)


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor: what a blob is, its digest and size."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: object, *, where: str) -> Descriptor:
        if not isinstance(obj, dict):
            raise Invalid(f"{where}: descriptor is not an object")
        digest, size, media = obj.get("digest"), obj.get("size"), obj.get("mediaType", "")
        if not isinstance(digest, str) or ":" not in digest or not isinstance(size, int) or size < 0:
            raise Invalid(f"{where}: descriptor needs a digest and a size, got {obj!r}")
        plat = obj.get("platform")
        return cls(
            media_type=str(media),
            digest=digest,
            size=size,
            platform=(
                Platform(str(plat.get("os", "")), str(plat.get("architecture", "")), plat.get("variant"))
                if isinstance(plat, dict)
                else None
            ),
            annotations=dict(obj.get("annotations") or {}),
        )


@dataclass(frozen=True, slots=True)
class Fetched:
    """A manifest or index as fetched: its descriptor (digest of exactly these bytes) and bytes."""

    descriptor: Descriptor
    data: bytes


@dataclass(frozen=True, slots=True)
class ResolvedImage:
    """What a reference names: the target (index or manifest) and this platform's manifest."""

    ref: Reference
    target: Fetched
    manifest: Fetched
    config: Descriptor
    layers: tuple[Descriptor, ...]

    @property
    def children(self) -> tuple[Fetched, ...]:
        """The manifests to store, parents last: (manifest,) or (manifest, index)."""
        if self.manifest is self.target:
            return (self.target,)
        return (self.manifest, self.target)


def select_platform(index: Mapping[str, Any], want: Platform) -> Descriptor:
    """Pick ``want``'s manifest from an index document; exact variant first, then any variant."""
    entries = [Descriptor.from_json(m, where=f"manifests[{i}]") for i, m in enumerate(index.get("manifests") or [])]
    candidates = [
        d
        for d in entries
        if d.platform is not None and d.platform.os == want.os and d.platform.architecture == want.architecture
    ]
    for d in candidates:
        if d.platform is not None and d.platform.variant == want.variant:
            return d
    for d in candidates:
        if want.architecture == "arm64" or want.variant is None or d.platform.variant is None:  # type: ignore[union-attr]
            return d
    have = sorted({str(d.platform) for d in entries if d.platform and d.platform.os != "unknown"})
    raise UnsupportedPlatform(
        f"image has no manifest for {want}; it has: {', '.join(have) or 'no platforms'}",
        details=[FieldError("image", f"no {want} manifest; available: {', '.join(have)}")],
    )


def parse_manifest(data: bytes, *, where: str) -> tuple[Descriptor, tuple[Descriptor, ...]]:
    """The config descriptor and the layer descriptors of an image manifest."""
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise Invalid(f"{where}: manifest is not JSON: {e}") from None
    if not isinstance(doc, dict) or "config" not in doc:
        raise Invalid(f"{where}: not an image manifest (no config)")
    config = Descriptor.from_json(doc["config"], where=f"{where}: config")
    layers = tuple(
        Descriptor.from_json(layer, where=f"{where}: layers[{i}]") for i, layer in enumerate(doc.get("layers") or [])
    )
    return config, layers


def _media_type(content_type: str | None, doc: Mapping[str, Any]) -> str:
    declared = (content_type or "").split(";", 1)[0].strip()
    if declared in INDEX_TYPES or declared in MANIFEST_TYPES:
        return declared
    in_doc = doc.get("mediaType")
    if isinstance(in_doc, str) and in_doc:
        return in_doc
    if "manifests" in doc:
        return MEDIA_OCI_INDEX
    if "layers" in doc and "config" in doc:
        return MEDIA_OCI_MANIFEST
    return declared


def _hasher(digest: str) -> Any:
    algo = digest.split(":", 1)[0]
    if algo not in ("sha256", "sha512"):
        raise Invalid(f"unsupported digest algorithm {algo!r} in {digest}")
    return hashlib.new(algo)


def _check(ref: Reference, desc: Descriptor, h: Any) -> None:
    actual = f"{desc.digest.split(':', 1)[0]}:{h.hexdigest()}"
    if actual != desc.digest:
        raise DigestMismatch(f"{ref.name}: blob {desc.digest} hashes to {actual}")


def _registry_words(body: bytes) -> str:
    """``CODE: message`` of each error in a distribution error body, else the start of the body."""
    try:
        doc = json.loads(body)
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if isinstance(errors, list) and errors:
            return "; ".join(f"{e.get('code', '?')}: {e.get('message', '')}".strip() for e in errors)
    except ValueError:
        pass
    return body[:200].decode("utf-8", "replace").strip()


class RegistryClient:
    """One reference's registry conversation; cheap to make, on a session and token cache it borrows."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        credentials: Credentials | None = None,
        insecure_registries: Iterable[str] = (),
        tokens: TokenCache | None = None,
    ) -> None:
        self._session = session
        self._credentials = credentials or Credentials()
        self._insecure = frozenset(insecure_registries)
        self._tokens = tokens if tokens is not None else TokenCache()

    def base_url(self, ref: Reference) -> str:
        host = ref.api_host
        plain = is_loopback(ref.hostname) or host in self._insecure or ref.hostname in self._insecure
        return f"{'http' if plain else 'https'}://{host}/v2/{ref.repository}"

    # -- resolve -------------------------------------------------------------------------------------

    async def resolve(self, ref: Reference, *, platform: Platform | None = None) -> ResolvedImage:
        """Fetch what ``ref`` names and narrow an index to ``platform`` (default: this host's)."""
        target = await self.get_manifest(ref, ref.object)
        manifest = target
        if target.descriptor.media_type in INDEX_TYPES:
            child = select_platform(json.loads(target.data), platform or host_platform())
            manifest = await self.get_manifest(ref, child.digest)
            if manifest.descriptor.media_type in INDEX_TYPES:
                raise Invalid(f"{ref.name}: nested image indexes are not supported")
        if manifest.descriptor.media_type not in MANIFEST_TYPES:
            raise Invalid(
                f"{ref.name}: unsupported manifest type {manifest.descriptor.media_type!r} "
                "(corral pulls OCI and Docker schema 2 images)"
            )
        config, layers = parse_manifest(manifest.data, where=ref.name)
        return ResolvedImage(ref, target, manifest, config, layers)

    async def get_manifest(self, ref: Reference, obj: str) -> Fetched:
        """GET ``manifests/<obj>`` (a tag or digest); the digest of the bytes is checked when known."""
        async with self._open(ref, f"manifests/{obj}", accept=ACCEPT) as resp:
            if (resp.content_length or 0) > MAX_MANIFEST_BYTES:
                raise Invalid(f"{ref.name}: manifest larger than {MAX_MANIFEST_BYTES} bytes")
            data = await self._read_body(ref, resp, limit=MAX_MANIFEST_BYTES)
            content_type = resp.headers.get("Content-Type")
            header_digest = resp.headers.get("Docker-Content-Digest")
        expected = obj if ":" in obj else header_digest
        algo = expected.split(":", 1)[0] if expected and ":" in expected else "sha256"
        h = _hasher(f"{algo}:")
        h.update(data)
        digest = f"{algo}:{h.hexdigest()}"
        if expected is not None and digest != expected:
            raise DigestMismatch(f"{ref.name}: manifest {obj} hashes to {digest}, registry said {expected}")
        try:
            doc = json.loads(data)
        except ValueError as e:
            raise Invalid(f"{ref.name}: manifest {obj} is not JSON: {e}") from None
        if not isinstance(doc, dict):
            raise Invalid(f"{ref.name}: manifest {obj} is not a JSON object")
        return Fetched(Descriptor(_media_type(content_type, doc), digest, len(data)), data)

    # -- blobs ---------------------------------------------------------------------------------------

    async def blob_chunks(self, ref: Reference, desc: Descriptor) -> AsyncGenerator[bytes, None]:
        """Blob ``desc`` as chunks, hashed on the way; ``DigestMismatch`` (raised after the last chunk,
        before the iterator ends) if it is not that blob. Nothing is requested until iteration starts."""
        h = _hasher(desc.digest)
        got = 0
        async with self._open(ref, f"blobs/{desc.digest}", accept="*/*") as resp:
            try:
                async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
                    got += len(chunk)
                    if got > desc.size:
                        raise DigestMismatch(f"{ref.name}: blob {desc.digest} is longer than {desc.size} bytes")
                    h.update(chunk)
                    if got == desc.size:
                        _check(ref, desc, h)
                    yield chunk
            except (aiohttp.ClientError, TimeoutError) as e:
                raise self._unreachable(ref, e) from None
        if got != desc.size:
            raise DigestMismatch(f"{ref.name}: blob {desc.digest} ended after {got} of {desc.size} bytes")

    async def fetch_blob(self, ref: Reference, desc: Descriptor, sink: Callable[[bytes], Awaitable[None]]) -> None:
        """Stream blob ``desc`` into ``sink`` chunk by chunk; ``DigestMismatch`` if it is not that blob."""
        chunks = self.blob_chunks(ref, desc)
        try:
            async for chunk in chunks:
                await sink(chunk)
        finally:
            await chunks.aclose()

    # -- HTTP and auth -------------------------------------------------------------------------------

    def _unreachable(self, ref: Reference, e: BaseException) -> RegistryUnreachable:
        why = str(e) or type(e).__name__
        hint = ""
        if isinstance(e, aiohttp.ClientSSLError | aiohttp.ClientConnectorCertificateError) or "SSL" in why:
            hint = " (if it serves plain HTTP, list it as an insecure registry)"
        return RegistryUnreachable(f"cannot reach registry {ref.api_host}: {why}{hint}")

    async def _read_body(self, ref: Reference, resp: aiohttp.ClientResponse, *, limit: int) -> bytes:
        """The whole body (``StreamReader.read(n)`` stops at what has arrived, so read to EOF), at most
        ``limit`` bytes."""
        parts: list[bytes] = []
        got = 0
        try:
            while chunk := await resp.content.read(CHUNK_BYTES):
                got += len(chunk)
                if got > limit:
                    raise Invalid(f"{ref.name}: response larger than {limit} bytes")
                parts.append(chunk)
        except (TimeoutError, aiohttp.ClientError) as e:
            raise self._unreachable(ref, e) from None
        return b"".join(parts)

    def _known_auth(self, ref: Reference) -> str | None:
        creds = self._credentials.lookup(ref.registry)
        user = creds.username if creds else ""
        token = self._tokens.get(ref.api_host, pull_scope(ref.repository), user)
        if token is not None:
            return f"Bearer {token}"
        if creds is not None and self._tokens.uses_basic(ref.api_host):
            return creds.header()
        return None

    @asynccontextmanager
    async def _open(self, ref: Reference, path: str, *, accept: str) -> AsyncIterator[aiohttp.ClientResponse]:
        """GET ``<base>/<path>``, answering one auth challenge; yields a 2xx response."""
        url = f"{self.base_url(ref)}/{path}"
        authorization = self._known_auth(ref)
        for attempt in (1, 2):
            headers = {"Accept": accept}
            if authorization is not None:
                headers["Authorization"] = authorization
            try:
                resp = await self._session.get(url, headers=headers, allow_redirects=True, max_redirects=10)
            except (TimeoutError, aiohttp.ClientError) as e:
                raise self._unreachable(ref, e) from None
            try:
                if resp.status == 401 and attempt == 1:
                    challenge = resp.headers.get("WWW-Authenticate", "")
                    await resp.read()
                    authorization = await self._answer(ref, challenge, sent=authorization)
                    continue
                if resp.status >= 300:
                    body = await self._read_body(ref, resp, limit=64 << 10)
                    raise self._status_error(ref, path, resp.status, body, sent=authorization)
                yield resp
                return
            finally:
                resp.release()

    def _status_error(self, ref: Reference, path: str, status: int, body: bytes, *, sent: str | None) -> CorralError:
        words = _registry_words(body)
        if status == 404:
            what = "manifest" if path.startswith("manifests/") else "blob"
            return ImageNotFound(f"{ref.name}: {what} not found in registry {ref.api_host}: {words}")
        if status in (401, 403):
            creds = self._credentials.lookup(ref.registry)
            who = f"user {creds.username!r}" if creds else "no credentials"
            return RegistryUnauthorized(f"registry {ref.api_host} refused {ref.name} ({who}): {words}")
        if status == 429 or status >= 500:
            return RegistryUnreachable(f"registry {ref.api_host} answered HTTP {status}: {words}")
        return RegistryUnreachable(f"registry {ref.api_host} answered HTTP {status} for {path}: {words}")

    def _need_credentials(self, ref: Reference) -> BasicCredentials:
        creds = self._credentials.lookup(ref.registry)
        if creds is None:
            raise RegistryUnauthorized(
                f"registry {ref.api_host} requires credentials for {ref.name}; add an 'auths' entry for "
                f"{ref.registry!r} to the credentials file"
            )
        return creds

    async def _answer(self, ref: Reference, header: str, *, sent: str | None) -> str:
        """The ``Authorization`` value answering a 401's challenge."""
        challenges = {c.scheme: c for c in parse_challenges(header)}
        creds = self._credentials.lookup(ref.registry)
        user = creds.username if creds else ""
        if "bearer" in challenges:
            params = challenges["bearer"].params
            realm = params.get("realm")
            if not realm:
                raise RegistryUnauthorized(f"registry {ref.api_host} sent a Bearer challenge without a realm")
            scope = pull_scope(ref.repository)
            self._tokens.forget(ref.api_host, scope, user)
            query = {"scope": params.get("scope") or scope}
            if "service" in params:
                query["service"] = params["service"]
            token_headers = {"Authorization": creds.header()} if creds else {}
            try:
                async with self._session.get(realm, params=query, headers=token_headers) as resp:
                    body = await resp.read()
                    status = resp.status
            except (TimeoutError, aiohttp.ClientError) as e:
                raise self._unreachable(ref, e) from None
            if status != 200:
                raise self._status_error(ref, "token", 401 if status in (401, 403) else status, body, sent=sent)
            try:
                doc = json.loads(body)
                token = doc.get("token") or doc.get("access_token")
                expires_in = doc.get("expires_in")
            except (ValueError, AttributeError):
                token, expires_in = None, None
            if not isinstance(token, str) or not token:
                raise RegistryUnauthorized(f"token server {realm} for {ref.api_host} sent no token")
            self._tokens.put(
                ref.api_host, scope, user,
                token=token, expires_in=float(expires_in) if isinstance(expires_in, int | float) else None,
            )  # fmt: skip
            return f"Bearer {token}"
        if "basic" in challenges:
            creds = self._need_credentials(ref)
            if sent is not None and sent.startswith("Basic "):
                raise RegistryUnauthorized(
                    f"registry {ref.api_host} rejected the credentials of user {creds.username!r}"
                )
            self._tokens.remember_basic(ref.api_host)
            return creds.header()
        schemes = ", ".join(sorted(challenges)) or "none"
        raise RegistryUnauthorized(f"registry {ref.api_host} wants an unsupported auth scheme ({schemes})")


def default_session(*, connect_timeout_s: float = 10.0, read_timeout_s: float = 60.0) -> aiohttp.ClientSession:
    """A session suited to registry traffic: bounded connects and reads, no total deadline."""
    timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout_s, sock_read=read_timeout_s)
    return aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit_per_host=8))
