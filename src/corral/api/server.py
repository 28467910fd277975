"""The API server: the aiohttp application, its middleware, and the lifetime of its watch caches.

``ApiServer`` owns one ``WatchCache`` per kind (the only etcd watches the API opens), the token
store and the metrics. ``app()`` builds the aiohttp application: a single middleware authenticates
(every path but ``/healthz`` and ``/readyz``), turns every ``CorralError`` into the contract's error
body, maps aiohttp's own 404/405/413 to the same shape, and records metrics per route template.
An unexpected exception is logged and answered 500 — a bug, never the answer to bad input.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from corral.aiokit.logfmt import REQUEST_ID
from corral.aiokit.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from corral.api import audit, codec, stats, ui
from corral.api.agents import AgentConnections
from corral.api.audit import AuditLog
from corral.api.auth import IDENTITY, Identity, Tokens, identity_from_certificate
from corral.api.join import JoinHandlers
from corral.api.logs import LogsProxy
from corral.api.members import MembersHandlers
from corral.api.metrics import Metrics
from corral.api.noderestriction import EventAdmission
from corral.api.openapi import document
from corral.api.priority import PriorityAdmission
from corral.api.resources import ResourceHandlers
from corral.api.streams import StreamProxy
from corral.api.tokens import TokenRoutes
from corral.api.watchcache import WatchCache
from corral.model.cluster import CLUSTER_CONFIG_KEY
from corral.model.errors import (
    AlreadyExists,
    BadRequest,
    CorralError,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    StoreUnavailable,
    TooLarge,
    Unavailable,
)
from corral.model.kinds import (
    CONTAINERS,
    CRONJOBS,
    DAEMONSETS,
    DEPLOYMENTS,
    EVENTS,
    JOBS,
    KINDS,
    NAMESPACES,
    NODES,
    PRIORITYCLASSES,
    SERVICES,
)
from corral.model.lifecycle import HEARTBEAT_PREFIX, now_rfc3339
from corral.model.resources import Container, Namespace, Node, ObjectMeta, PriorityClass
from corral.store import typed
from corral.store.allocation import ServiceAllocator
from corral.store.base import Store
from corral.store.batching import BatchingStore
from corral.store.leases import BucketLeases
from corral.store.sealing import Keyring, SealingStore
from corral.tls.contexts import peer_common_name
from corral.tls.pki import Authority

log = logging.getLogger(__name__)

PUBLIC = frozenset({"/healthz", "/readyz", "/cacerts"})
DEFAULT_MAX_BODY = 3 * 1024 * 1024
DEFAULT_EVENT_TTL = 3600.0
BEAT_STORE_TIMEOUT = 1.5  # seconds a beat waits for etcd before answering StoreUnavailable (agents fence by it)
BEAT_LINGER = 0.05  # seconds a heartbeat may wait to share its etcd txn with others (period: 2 s)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _NameOnly(msgspec.Struct):
    name: str = ""


class _Named(msgspec.Struct):
    metadata: _NameOnly = msgspec.field(default_factory=_NameOnly)


PRIORITY_KINDS = frozenset({CONTAINERS, DEPLOYMENTS, JOBS, CRONJOBS, DAEMONSETS})


class ApiServer:
    def __init__(self, store: Store, *, max_body: int = DEFAULT_MAX_BODY, event_ttl: float = DEFAULT_EVENT_TTL,
                 group_commit: bool = True, keyring: Keyring | None = None, audit_log: AuditLog | None = None,
                 authority: Authority | None = None, agent_ssl: ssl.SSLContext | None = None) -> None:
        """``authority``: the cluster CA (signs node certificates at join); ``agent_ssl``: the TLS
        context the API calls agents with (its client certificate, the CA)."""
        self.audit = audit_log  # every write and every refusal, as JSON lines (api/audit.py)
        self.members = MembersHandlers(store, authority)  # /control/members: the etcd cluster's members
        # Secrets are sealed between the API and etcd (store/sealing.py); without a key file, a key
        # that lives only in this process (fine for one throwaway API, wrong for several)
        self.sealing = SealingStore(store, keyring or Keyring.ephemeral())
        store = self.sealing
        # concurrent requests' creates and updates share etcd transactions (store/batching.py)
        self.store: Store = BatchingStore(store) if group_commit else store
        store = self.store
        self.max_body = max_body
        # Events created or updated through the API expire event_ttl seconds later (0: never)
        self.event_leases = BucketLeases(store, ttl=event_ttl) if event_ttl > 0 else None
        self.tokens = Tokens(store)
        self.service_allocator = ServiceAllocator(store)
        self.metrics = Metrics()
        self.caches = {info.kind: WatchCache(store, info) for info in KINDS}
        self._channels: set[web.WebSocketResponse] = set()  # open heartbeat channels (closed at shutdown)
        self.agents = AgentConnections(store, agent_ssl)  # every API → agent call goes through it
        self.logs = LogsProxy(store, self.agents)
        self.streams = StreamProxy(self.logs)  # exec/attach/port-forward reach agents the way logs do
        self.joins = JoinHandlers(tokens=self.tokens, store=store, authority=authority)
        self.events = EventAdmission(self._bound_to)  # NodeRestriction: which Events a node may write
        self.metrics.gauge("corral_api_watch_cache_revision", "The newest revision the container watch cache has seen.",
                           lambda: float(self.caches["Container"].revision))
        self.metrics.gauge("corral_api_heartbeat_channels", "Open heartbeat channels (one per connected node).",
                           lambda: float(len(self._channels)))
        if isinstance(self.store, BatchingStore):
            batching = self.store
            self.metrics.counter("corral_etcd_group_commit_batches", "etcd transactions written by group commit.",
                                 lambda: float(batching.batches))
            self.metrics.counter("corral_etcd_group_commit_writes", "Writes carried by those transactions "
                                 "(writes / batches = the mean batch size).", lambda: float(batching.writes))

    def _bound_to(self, namespace: str, name: str) -> str | None:
        """The node a container is bound to now (None: no such container)."""
        entry = self.caches["Container"].objects.get(CONTAINERS.key(namespace, name))
        return entry.obj.spec.node if entry is not None and isinstance(entry.obj, Container) else None

    async def run_caches(self) -> None:
        """Keep every kind's watch cache filled; runs until cancelled."""
        async with asyncio.TaskGroup() as tg:
            for kind, cache in self.caches.items():
                tg.create_task(cache.run(), name=f"watch-cache-{kind}")
            tg.create_task(self.tokens.index.run(), name="token-index")

    async def ensure_default_namespace(self) -> None:
        ns = Namespace(metadata=ObjectMeta(name="default", uid="default", creation_timestamp=now_rfc3339(), generation=1))
        with contextlib.suppress(AlreadyExists):
            await self.store.create(NAMESPACES.key("", "default"), typed.encode(ns))

    # --- the application --------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body, middlewares=[self._middleware])
        app[codec.MAX_BODY] = self.max_body
        app.on_shutdown.append(self._on_shutdown)
        app.on_cleanup.append(self._close_audit)
        r = app.router
        classes = self.caches["PriorityClass"].objects

        async def read_class(name: str) -> PriorityClass | None:
            kv = await self.store.get(PRIORITYCLASSES.key("", name))
            return typed.decode(kv, PriorityClass) if kv is not None else None

        priority = PriorityAdmission(lambda: [e.obj for e in classes.values() if isinstance(e.obj, PriorityClass)],
                                     read_class)
        for info in KINDS:
            h = ResourceHandlers(store=self.store, info=info, cache=self.caches[info.kind],
                                 namespaces=self.caches["Namespace"],
                                 leases=self.event_leases if info is EVENTS else None,
                                 allocator=self.service_allocator if info is SERVICES else None,
                                 admit=priority if info in PRIORITY_KINDS else None,
                                 containers=self.caches["Container"],
                                 restrict=self.events.admit if info is EVENTS else None)
            base = f"/namespaces/{{namespace}}/{info.plural}" if info.namespaced else f"/{info.plural}"
            r.add_get(base, h.list, allow_head=False)
            r.add_post(base, h.create)
            r.add_get(base + "/{name}", h.get, allow_head=False)
            r.add_put(base + "/{name}", h.update)
            r.add_patch(base + "/{name}", h.patch)
            r.add_delete(base + "/{name}", h.delete)
            if info.status_subresource:
                r.add_put(base + "/{name}/status", h.update_status)
                r.add_patch(base + "/{name}/status", h.patch_status)
            if info.namespaced:
                r.add_get(f"/{info.plural}", h.list, allow_head=False)
        r.add_get("/namespaces/{namespace}/containers/{name}/logs", self.logs.logs, allow_head=False)
        r.add_get("/cacerts", self.joins.cacerts, allow_head=False)
        r.add_get("/namespaces/{namespace}/containers/{name}/exec", self.streams.exec, allow_head=False)
        r.add_get("/namespaces/{namespace}/containers/{name}/attach", self.streams.attach, allow_head=False)
        r.add_get("/namespaces/{namespace}/containers/{name}/portforward", self.streams.portforward, allow_head=False)
        r.add_post("/join", self.joins.join)
        self.members.add_routes(r)
        r.add_put("/nodes/{name}/heartbeat", self._heartbeat)
        r.add_get("/nodes/{name}/heartbeats", self._heartbeat_channel, allow_head=False)
        r.add_get("/cluster", self._cluster, allow_head=False)
        stats.add_routes(r, self.agents)
        r.add_post("/encryption/rotate", self._rotate_key)
        TokenRoutes(self.tokens, ca_pem=self.joins.authority.cert_pem if self.joins.authority is not None else None).add(r)
        r.add_get("/healthz", self._healthz, allow_head=False)
        r.add_get("/readyz", self._readyz, allow_head=False)
        r.add_get("/metrics", self._metrics, allow_head=False)
        openapi = codec.encode(document())

        async def serve_openapi(_: web.Request) -> web.Response:
            return codec.raw_response(openapi)

        r.add_get("/openapi.json", serve_openapi, allow_head=False)
        ui.add_routes(r)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        request_id = secrets.token_hex(8)
        REQUEST_ID.set(request_id)  # every log line of this request carries it (aiokit/logfmt.py)
        kind = "watch" if request.query.get("watch", "") not in ("", "0", "false") else "request"
        self.metrics.begin(kind)
        try:
            if request.path not in PUBLIC and not ui.is_public(request.path):
                request[IDENTITY] = await self._authenticate(request)
            response = await handler(request)
        except CorralError as e:
            response = codec.error_response(e)
        except web.HTTPException as e:
            response = codec.error_response(_from_http(e, request))
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception:  # a bug: the log has the traceback, the client only the request id
            log.exception("%s %s failed (request id %s)", request.method, request.path, request_id)
            response = codec.error_response(CorralError(
                f"internal error (request id {request_id}); the API server's log has the details"))
        finally:
            self.metrics.end(kind)
        if not response.prepared:
            response.headers["X-Request-Id"] = request_id
        self.metrics.observe(request.method, route, response.status, time.perf_counter() - start)
        if self.audit is not None and audit.should_audit(request.method, request.path, response.status):
            self._audit(request, response, request_id)
        return response

    def _audit(self, request: web.Request, response: web.StreamResponse, request_id: str) -> None:
        assert self.audit is not None
        plural, namespace, name = audit.target_of(request.path)
        if not name and response.status == 201 and isinstance(response, web.Response) and response.body:
            with contextlib.suppress(msgspec.DecodeError, TypeError):  # a create: its name is in the answer
                name = msgspec.json.decode(response.body, type=_Named).metadata.name  # type: ignore[arg-type]
        identity = request.get(IDENTITY)
        self.audit.record({
            "time": now_rfc3339(), "requestId": request_id,
            "identity": identity.name if identity is not None else "anonymous",
            "verb": request.method, "kind": plural, "namespace": namespace, "name": name,
            "code": response.status, "sourceIP": request.remote or "", "path": request.path,
        })

    async def _authenticate(self, request: web.Request) -> Identity:
        """A bearer token when one is sent, else the client certificate the handshake verified."""
        header = request.headers.get("Authorization")
        if not header:
            cn = peer_common_name(request.transport)
            if cn:
                return identity_from_certificate(cn)
        return await self.tokens.authenticate(header)

    # --- small routes -----------------------------------------------------------------------

    async def _cluster(self, request: web.Request) -> web.Response:
        """The cluster's network settings (model/cluster.py), for agents and users."""
        kv = await self.store.get(CLUSTER_CONFIG_KEY)
        if kv is None:
            raise NotFound("the cluster settings are not recorded yet (no control instance has started)")
        return codec.raw_response(kv.value)

    async def _rotate_key(self, request: web.Request) -> web.Response:
        """Rotate the key that seals Secrets at rest and re-seal every one (admin only)."""
        identity = request[IDENTITY]
        if identity.role != "admin":
            raise Forbidden(f"{identity.name} may not rotate the encryption key")
        key_id, moved = await self.sealing.rotate()
        return codec.json_response({"keyId": key_id, "resealed": moved})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        waiting = [kind for kind, cache in self.caches.items() if not cache.ready.is_set()]
        if waiting:
            return web.Response(status=503, text=f"not ready: waiting for the {', '.join(waiting)} caches\n")
        try:
            await asyncio.wait_for(self.store.get("/corral/_health"), 2.0)
        except (CorralError, TimeoutError) as e:
            return web.Response(status=503, text=f"not ready: the store does not answer: {e}\n")
        return web.Response(text="ok\n")

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def _heartbeat(self, request: web.Request) -> web.Response:
        """A node's beat as one request (``PUT /nodes/{name}/heartbeat``); see ``_beat``."""
        name = request.match_info["name"]
        _may_beat(request[IDENTITY], name)
        return codec.raw_response(await self._beat(name))

    async def _heartbeat_channel(self, request: web.Request) -> web.StreamResponse:
        """A node's beats over one WebSocket (``GET /nodes/{name}/heartbeats``): the node sends a
        text frame per beat and gets ``_beat``'s answer (or the error shape) back. Authorized once,
        at the upgrade; a frame costs a fraction of an HTTP request, which matters with a thousand
        nodes beating every 2 s (Nomad keeps its heartbeats on long-lived RPC connections too)."""
        name = request.match_info["name"]
        _may_beat(request[IDENTITY], name)
        ws = web.WebSocketResponse(max_msg_size=1024, autoping=True)
        await ws.prepare(request)
        self._channels.add(ws)
        try:
            await self._serve_beats(ws, name)
        finally:
            self._channels.discard(ws)
        return ws

    async def _serve_beats(self, ws: web.WebSocketResponse, name: str) -> None:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            try:
                answer = await self._beat(name)
            except CorralError as e:
                answer = codec.encode(e.to_body())
            try:
                await ws.send_bytes(answer)
            except ConnectionError:  # the node went away mid-beat (its next beat reconnects)
                break

    async def _close_audit(self, _app: web.Application) -> None:
        if self.audit is not None:
            await asyncio.to_thread(self.audit.close)  # the last lines are written before the process goes

    async def _on_shutdown(self, _app: web.Application) -> None:
        """Before the server waits for its handlers: end every watch stream and heartbeat channel,
        so a stop takes a moment instead of the whole shutdown timeout, and clients move on at once."""
        for cache in self.caches.values():
            cache.close()
        await self.streams.close()  # exec/attach/port-forward sessions
        await asyncio.gather(*(ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
                               for ws in list(self._channels)), return_exceptions=True)  # all at once

    async def _beat(self, name: str) -> bytes:
        """One beat: one small etcd put, answered once it is in etcd (the agent fences itself on
        beats that fail, so a beat is never acknowledged before it is stored); beats within
        ``BEAT_LINGER`` of each other share a txn. Says whether the API sees the node Ready: an agent
        that hears ``ready: false`` (the node controller marked it lost meanwhile) writes its full
        status at once; otherwise only now and then. A store that fails, or takes longer than
        ``BEAT_STORE_TIMEOUT``, answers ``StoreUnavailable``: the agent then knows the API is there and
        that nothing can release its containers meanwhile (roles/fencing.py)."""
        now = now_rfc3339()
        try:  # a store that does not answer is said so at once, before the agent's beat times out
            await asyncio.wait_for(self.store.put(HEARTBEAT_PREFIX + name, now.encode(), linger=BEAT_LINGER),
                                   BEAT_STORE_TIMEOUT)
        except (Unavailable, TimeoutError) as e:
            raise StoreUnavailable(f"the API's store is unavailable: {str(e) or 'timed out'}") from None
        entry = self.caches["Node"].objects.get(NODES.key("", name))
        conditions = entry.obj.status.conditions if entry is not None and isinstance(entry.obj, Node) else []
        ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
        return codec.encode({"renewTime": now, "ready": ready})


def _may_beat(identity: Identity, name: str) -> None:
    if identity.role != "admin" and not (identity.role == "node" and identity.node == name):
        raise Forbidden(f"{identity.name} may not heartbeat for node {name!r}")


def _from_http(e: web.HTTPException, request: web.Request) -> CorralError:
    if e.status == 404:
        return NotFound(f"no such path: {request.path} (see /openapi.json for the API's paths)")
    if e.status == 405:
        return MethodNotAllowed(f"{request.method} is not allowed on {request.path}")
    if e.status == 413:
        return TooLarge(f"the request body is larger than the limit of {request.app[codec.MAX_BODY]} bytes")
    if e.status < 500:
        return BadRequest(e.text or e.reason)
    return CorralError(e.text or e.reason)
