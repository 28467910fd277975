"""The async API client, used by the CLI, the agent and the simulator.

``ApiClient`` speaks the contract over aiohttp: typed get/list/create/update/delete on the model's
Structs, errors turned back into corral's error tree (a 409 from the server is a ``Conflict`` here,
with the server's message and field details), and ``watch`` as an async iterator of typed events.
It accepts several server URLs and moves to the next when one cannot be reached.

TLS: the client is given an ``ssl.SSLContext`` that trusts the cluster CA (and, for an agent,
presents its node certificate; then no token is needed). A server whose certificate the CA did not
sign is never moved past silently: the call fails at once with ``UntrustedServer``, naming the
server and where the CA came from (``trust_source``, e.g. the CLI's config file).

Following a kind (list, then watch; resume, relist on 410) is not done here but by the one
informer (store/informer.py) over ``api.listwatch.ApiSource``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aiohttp
import msgspec

from corral.model import errors
from corral.model.cluster import ClusterConfig
from corral.model.kinds import BY_KIND, KindInfo
from corral.model.resources import Object

log = logging.getLogger(__name__)

ObjT = TypeVar("ObjT", bound=Object)

_BY_CODE: dict[int, type[errors.CorralError]] = {
    400: errors.BadRequest, 401: errors.Unauthorized, 403: errors.Forbidden, 404: errors.NotFound,
    405: errors.MethodNotAllowed, 409: errors.Conflict, 410: errors.Gone, 413: errors.TooLarge,
    422: errors.Invalid, 503: errors.Unavailable, 504: errors.Timeout,
}


_BY_REASON: dict[str, type[errors.CorralError]] = {
    "AlreadyExists": errors.AlreadyExists, "StoreUnavailable": errors.StoreUnavailable,
}


def error_from_body(status: int, body: bytes) -> errors.CorralError:
    try:
        err = msgspec.json.decode(body)["error"]
        message = str(err.get("message", "")) or f"HTTP {status}"
        details = [errors.FieldError(str(d.get("field", "")), str(d.get("message", ""))) for d in err.get("details") or []]
        reason = str(err.get("reason", ""))
    except Exception:
        message, details, reason = body.decode(errors="replace").strip() or f"HTTP {status}", [], ""
    cls = _BY_REASON.get(reason) or _BY_CODE.get(status, errors.CorralError)
    return cls(message, details=details)


class UntrustedServer(errors.Unavailable):
    """The server's certificate is not signed by the CA this client trusts."""

    reason = "UntrustedServer"


def untrusted(server: str, trust_source: str, e: aiohttp.ClientConnectorCertificateError) -> UntrustedServer:
    return UntrustedServer(
        f"the server at {server} presented a certificate that is not signed by the cluster CA "
        f"{'from ' + trust_source if trust_source else 'this client trusts'} ({e.certificate_error}); "
        "is that the right server, and the right CA for it?")


class _ChannelClosed(Exception):
    """The heartbeat channel closed under a beat."""


class HeartbeatChannel:
    """A node's beats over one WebSocket to ``GET /nodes/{name}/heartbeats``; ``beat`` sends one and
    returns the API's answer (``renewTime``, ``ready``). A channel that died since the last beat is
    opened again (on the next server when one is unreachable) within the same beat, so a dead API
    server costs no beat. A server without the channel (404 at the upgrade) gets
    ``PUT /nodes/{name}/heartbeat`` instead."""

    def __init__(self, client: ApiClient, node: str) -> None:
        self.client = client
        self.node = node
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._plain = False  # the server has no channel: one request per beat

    async def beat(self, *, timeout: float = 10.0) -> dict[str, Any]:
        try:
            async with asyncio.timeout(timeout):
                if not self._plain:
                    reused = self._ws is not None and not self._ws.closed
                    try:
                        data = await self._exchange()
                    except (_ChannelClosed, aiohttp.ClientError, ConnectionError):
                        await self.close()
                        if not reused:
                            raise
                        data = await self._exchange()  # the open channel had died: once more, fresh
                if self._plain:
                    data = await self.client.request("PUT", f"/nodes/{self.node}/heartbeat", timeout=timeout)
        except BaseException as e:  # a beat cut short may leave its answer in flight: start over next time
            await self.close()
            if isinstance(e, (_ChannelClosed, aiohttp.ClientError, TimeoutError, ConnectionError)):
                raise errors.Unavailable(f"heartbeat to {self.client.server} failed: {e or 'timed out'}") from None
            raise
        answer: dict[str, Any] = msgspec.json.decode(data)
        if "error" in answer:
            raise error_from_body(int(answer["error"].get("code", 500)), data)
        return answer

    async def _exchange(self) -> bytes:
        """One beat on the channel, opened if need be; b"" when the server has no channel."""
        ws = await self._connect()
        if ws is None:
            return b""
        await ws.send_str("beat")
        msg = await ws.receive()
        if msg.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
            raise _ChannelClosed(f"the heartbeat channel to {self.client.server} closed")
        data: bytes = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
        return data

    async def _connect(self) -> aiohttp.ClientWebSocketResponse | None:
        """The open channel, or None when the server has none (beats are then plain requests)."""
        if self._ws is not None and not self._ws.closed:
            return self._ws
        last: Exception | None = None
        for _ in range(len(self.client.servers)):
            url = f"{self.client.server}/nodes/{self.node}/heartbeats"
            try:
                self._ws = await self.client.session().ws_connect(url, autoping=True, max_msg_size=1024,
                                                                  ssl=self.client.ssl_option)
                return self._ws
            except aiohttp.ClientConnectorCertificateError as e:
                raise untrusted(self.client.server, self.client.trust_source, e) from None
            except aiohttp.WSServerHandshakeError as e:
                if e.status == 404:
                    self._plain = True
                    return None
                if e.status in (401, 403):
                    raise _BY_CODE[e.status](f"heartbeat channel refused: {e.message}") from None
                raise
            except (aiohttp.ClientConnectionError, OSError) as e:
                last = e
                self.client.next_server()
        raise errors.Unavailable(f"cannot reach the corral API at {', '.join(self.client.servers)}: {last}")

    async def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await ws.close()


@dataclass(frozen=True, slots=True)
class WatchEvent(Generic[ObjT]):
    type: str  # ADDED | MODIFIED | DELETED
    object: ObjT


class _RawEvent(msgspec.Struct):
    type: str
    object: msgspec.Raw


class ApiClient:
    def __init__(self, servers: str | Sequence[str], token: str = "", *, timeout: float = 30.0,
                 connector: aiohttp.BaseConnector | None = None, ssl_context: ssl.SSLContext | None = None,
                 trust_source: str = "") -> None:
        """``connector``: a connection pool shared with other clients (kept open by ``close``);
        ``ssl_context``: whom to trust (the cluster CA) and which client certificate to present
        (default: the system's CAs); ``trust_source``: where that CA came from, for error messages;
        ``token``: the bearer token ("" when the client certificate is the credential)."""
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        if not self.servers:
            raise ValueError("at least one server URL is needed")
        self.token = token
        self.timeout = timeout
        self._current = 0
        self._session: aiohttp.ClientSession | None = None
        self._connector = connector
        self._decoders: dict[type, msgspec.json.Decoder[Any]] = {}
        self.ssl_context = ssl_context
        self.trust_source = trust_source

    @property
    def ssl_option(self) -> ssl.SSLContext | bool:
        """What to pass as ``ssl=`` per request (a shared connector has no context of its own)."""
        return self.ssl_context if self.ssl_context is not None else True

    @property
    def server(self) -> str:
        return self.servers[self._current].rstrip("/")

    def next_server(self) -> None:
        """Move to the next server URL (this one could not be reached)."""
        self._current = (self._current + 1) % len(self.servers)

    def session(self) -> aiohttp.ClientSession:
        """The HTTP session (opened on first use), with the token set; for channels beyond requests."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self.token}"} if self.token else None,
                connector=self._connector or aiohttp.TCPConnector(limit=64, ssl=self.ssl_option),
                connector_owner=self._connector is None,
                json_serialize=lambda o: msgspec.json.encode(o).decode(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _decode(self, body: bytes, tp: type[ObjT]) -> ObjT:
        decoder = self._decoders.get(tp)
        if decoder is None:
            decoder = self._decoders[tp] = msgspec.json.Decoder(tp)
        result: ObjT = decoder.decode(body)
        return result

    async def request(self, method: str, path: str, *, body: Any = None,
                      params: dict[str, str] | None = None, timeout: float | None = None,
                      content_type: str = "application/json") -> bytes:
        """One call; the raw response body. Moves to the next server when this one is unreachable."""
        data = msgspec.json.encode(body) if body is not None else None
        last: Exception | None = None
        for _ in range(len(self.servers)):
            url = self.server + path
            try:
                async with self.session().request(
                    method, url, data=data, params=params,
                    headers={"Content-Type": content_type} if data is not None else None,
                    timeout=aiohttp.ClientTimeout(total=timeout or self.timeout), ssl=self.ssl_option,
                ) as resp:
                    payload = await resp.read()
                    if resp.status >= 400:
                        raise error_from_body(resp.status, payload)
                    return payload
            except aiohttp.ClientConnectorCertificateError as e:
                raise untrusted(self.server, self.trust_source, e) from None
            except (aiohttp.ClientConnectionError, TimeoutError) as e:
                last = e
                self.next_server()
        hint = " (corral's API speaks HTTPS only: use https://)" if any(u.startswith("http://") for u in self.servers) else ""
        raise errors.Unavailable(f"cannot reach the corral API at {', '.join(self.servers)}: {last}{hint}")

    async def stream(self, path: str, *, params: dict[str, str] | None = None) -> AsyncIterator[bytes]:
        """A GET whose body is read as it arrives (logs with follow)."""
        try:
            async with self.session().get(self.server + path, params=params, ssl=self.ssl_option,
                                          timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)) as resp:
                if resp.status >= 400:
                    raise error_from_body(resp.status, await resp.read())
                async for chunk in resp.content.iter_any():
                    yield chunk
        except aiohttp.ClientConnectorCertificateError as e:
            raise untrusted(self.server, self.trust_source, e) from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as e:
            raise errors.Unavailable(f"the stream from {self.server}{path} was cut: {e}") from e

    # --- typed calls --------------------------------------------------------------------------

    async def cluster_config(self) -> ClusterConfig:
        """The cluster's network settings (``GET /cluster``): CIDRs, DNS domain, backend."""
        return msgspec.json.decode(await self.request("GET", "/cluster"), type=ClusterConfig)

    @staticmethod
    def _base(info: KindInfo, namespace: str) -> str:
        return f"/namespaces/{namespace}/{info.plural}" if info.namespaced else f"/{info.plural}"

    def _item(self, info: KindInfo, namespace: str, name: str) -> str:
        return f"{self._base(info, namespace)}/{name}"

    async def create(self, obj: ObjT, *, namespace: str = "") -> ObjT:
        info = BY_KIND[obj.kind]
        ns = namespace or obj.metadata.namespace or "default"
        return self._decode(await self.request("POST", self._base(info, ns), body=obj), type(obj))

    async def patch(self, tp: type[ObjT], name: str, patch: Any, *, namespace: str = "default",
                    json_patch: bool = False, status: bool = False) -> ObjT:
        """PATCH the object (or its ``/status``): a merge patch (a dict laid over the object), or with
        ``json_patch`` a list of RFC 6902 operations. The server retries a lost race itself."""
        info = BY_KIND[tp.KIND]
        path = self._item(info, namespace, name) + ("/status" if status else "")
        kind = "application/json-patch+json" if json_patch else "application/merge-patch+json"
        return self._decode(await self.request("PATCH", path, body=patch, content_type=kind), tp)

    async def get(self, tp: type[ObjT], name: str, *, namespace: str = "default") -> ObjT:
        info = BY_KIND[tp.KIND]
        return self._decode(await self.request("GET", self._item(info, namespace, name)), tp)

    async def update(self, obj: ObjT) -> ObjT:
        info = BY_KIND[obj.kind]
        path = self._item(info, obj.metadata.namespace or "default", obj.metadata.name)
        return self._decode(await self.request("PUT", path, body=obj), type(obj))

    async def update_status(self, obj: ObjT) -> ObjT:
        info = BY_KIND[obj.kind]
        path = self._item(info, obj.metadata.namespace or "default", obj.metadata.name) + "/status"
        return self._decode(await self.request("PUT", path, body=obj), type(obj))

    async def delete(self, tp: type[ObjT], name: str, *, namespace: str = "default",
                     grace_period: int | None = None) -> ObjT:
        info = BY_KIND[tp.KIND]
        params = {"gracePeriodSeconds": str(grace_period)} if grace_period is not None else None
        return self._decode(await self.request("DELETE", self._item(info, namespace, name), params=params), tp)

    async def list(self, tp: type[ObjT], *, namespace: str | None = "default", label_selector: str = "",
                   field_selector: str = "", page_size: int = 5000, any_version: bool = False) -> tuple[list[ObjT], str]:
        """Every matching object (following ``continue`` pages) and the list's resourceVersion.

        ``any_version``: the API may answer from its watch cache (``resourceVersion=0``: not older
        than what it has seen, in one response) instead of reading etcd — what an informer wants
        before it watches from the list's version, and far cheaper for the API at scale.
        """
        info = BY_KIND[tp.KIND]
        path = self._base(info, namespace or "") if namespace or not info.namespaced else f"/{info.plural}"
        list_type = _list_type(tp)
        items: list[ObjT] = []
        params = {"labelSelector": label_selector, "fieldSelector": field_selector, "limit": str(page_size)}
        if any_version:
            params = {"labelSelector": label_selector, "fieldSelector": field_selector, "resourceVersion": "0"}
        while True:
            page = self._decode(await self.request("GET", path, params=params), list_type)
            items.extend(page.items)
            if not page.metadata.get("continue"):
                return items, page.metadata.get("resourceVersion", "")
            params["continue"] = page.metadata["continue"]

    async def watch(self, tp: type[ObjT], *, namespace: str | None = "default", resource_version: str = "",
                    label_selector: str = "", field_selector: str = "",
                    on_bookmark: Callable[[str], None] | None = None) -> AsyncGenerator[WatchEvent[ObjT], None]:
        """One watch stream of typed events. Raises Gone when resource_version is too old."""
        info = BY_KIND[tp.KIND]
        path = self._base(info, namespace or "") if namespace or not info.namespaced else f"/{info.plural}"
        params = {"watch": "1", "resourceVersion": resource_version, "labelSelector": label_selector,
                  "fieldSelector": field_selector}
        try:
            async with self.session().get(self.server + path, params=params, ssl=self.ssl_option,
                                          timeout=aiohttp.ClientTimeout(total=None, sock_read=30)) as resp:
                if resp.status >= 400:
                    raise error_from_body(resp.status, await resp.read())
                event_decoder = msgspec.json.Decoder(_RawEvent)
                async for line in resp.content:
                    if not line.strip():
                        continue
                    raw = event_decoder.decode(line)
                    if raw.type == "BOOKMARK":
                        if on_bookmark is not None:
                            rv = msgspec.json.decode(raw.object).get("metadata", {}).get("resourceVersion", "")
                            on_bookmark(rv)
                        continue
                    if raw.type == "ERROR":
                        raise error_from_body(msgspec.json.decode(raw.object)["error"]["code"], bytes(raw.object))
                    yield WatchEvent(raw.type, self._decode(bytes(raw.object), tp))
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as e:
            self.next_server()
            raise errors.Unavailable(f"the watch of {info.plural} was cut: {e}") from e


class _ListOf(msgspec.Struct, Generic[ObjT]):
    items: list[ObjT]
    metadata: dict[str, str] = {}
    kind: str = ""
    apiVersion: str = ""


def _list_type(tp: type[ObjT]) -> Any:
    return _ListOf[tp]  # type: ignore[valid-type]
