"""The resource routes: create, get, list, watch, update, update status, delete — for every kind.

One ``ResourceHandlers`` per kind serves its collection and item paths. Writes go through the
registry (``store/registry.py``) and follow the kind's strategy (``model/strategies.py``); the
handlers add what only HTTP has: decoding, authorization, admission, dry runs, a Service's
addresses. Each write is a single etcd transaction guarded by revisions: create only if absent,
update only if unchanged since it was read (409 when the client's resourceVersion is stale; without
one, a lost race is decided again on the newest version, the first read from the watch cache).
``spec`` and ``status`` have separate writers: a PUT of the object keeps the stored status, a PUT
of ``/status`` keeps everything else. ``generation`` counts spec changes. Deletion is graceful while
finalizers remain: ``deletionTimestamp`` is set and the object goes when the last finalizer is
removed. Lists are read from etcd (consistent, paged with ``limit`` and
``continue``); watches are served from the kind's watch cache.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from corral.api import codec, selectors
from corral.api.admission import admit
from corral.api.auth import IDENTITY, Identity
from corral.api.authz import (
    authorize_delete,
    authorize_list,
    authorize_node_object,
    authorize_read,
    authorize_status,
    authorize_update,
    authorize_write,
)
from corral.api.patching import JSON_PATCH, MERGE_PATCH, PATCH_TYPES, apply_patch, full_document
from corral.api.roles import redact_secret
from corral.api.secretaccess import node_may_read_secret
from corral.api.volumeprotection import check_volume_update, refuse_if_mounted
from corral.api.watchcache import CacheEvent, WatchCache, splice_rv
from corral.model import validation
from corral.model.errors import (
    BadRequest,
    Conflict,
    FieldError,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    UnsupportedMediaType,
)
from corral.model.kinds import (
    CONTAINERS,
    CRONJOBS,
    DAEMONSETS,
    DEPLOYMENTS,
    JOBS,
    NAMESPACES,
    SECRETS,
    VOLUMES,
    KindInfo,
)
from corral.model.resources import API_VERSION, Namespace, Object
from corral.model.strategies import describe, strategy_for
from corral.store import typed
from corral.store.allocation import ServiceAllocator
from corral.store.base import Compacted, Store
from corral.store.leases import BucketLeases
from corral.store.registry import Registry, conflict_message

BOOKMARK_SECONDS = 5.0
COALESCE_SECONDS = 0.01  # a streaming watch waits this long after a write, to send events in batches
COALESCE_BELOW = 64
AHEAD_WAIT_SECONDS = 3.0  # a watch from a revision this cache has not reached waits this long, then 410
NAMESPACE_SYNC_SECONDS = 2.0  # a namespace DELETE waits at most this long for the cache to show it
MAX_LIMIT = 10_000
ADMITTED = frozenset({CONTAINERS, DEPLOYMENTS, JOBS, CRONJOBS, DAEMONSETS, NAMESPACES})


_UNSEEN = b"?"


def _render(ev: CacheEvent, predicate: selectors.Predicate | None) -> bytes | None:
    """The NDJSON line a watcher with ``predicate`` gets for ``ev`` (None: nothing for it)."""
    was = ev.old is not None and (predicate is None or predicate(ev.old.obj))
    now = ev.new is not None and (predicate is None or predicate(ev.new.obj))
    if now and ev.new is not None:
        kind = b"MODIFIED" if was else b"ADDED"
        return b'{"type":"%s","object":%s}\n' % (kind, ev.new.json)
    if was and ev.old is not None:
        gone = ev.old.json if ev.new is None else ev.new.json
        return b'{"type":"DELETED","object":%s}\n' % gone
    return None


def _dry_run(request: web.Request) -> bool:
    """``?dryRun=All``: validate, authorize and check as for real, write nothing (Kubernetes' word)."""
    value = request.query.get("dryRun")
    if value is None:
        return False
    if value != "All":
        raise BadRequest(f"dryRun must be All (the only dry run there is), not {value!r}")
    return True


def _parse_int(value: str, name: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, not {value!r}") from None
    if n < 0:
        raise BadRequest(f"{name} must not be negative")
    return n


def _single_node(field_selector: str) -> str | None:
    """The node of a ``spec.node=<name>`` selector (nothing else in it), else None."""
    text = field_selector.replace(" ", "")
    if not text.startswith("spec.node=") or "," in text or text.startswith("spec.node=="):
        return None
    return text[len("spec.node="):]


def _encode_continue(key: str, revision: int) -> str:
    return base64.urlsafe_b64encode(codec.encode({"k": key, "r": revision})).decode()


def _decode_continue(token: str) -> tuple[str, int]:
    try:
        data = msgspec.json.decode(base64.urlsafe_b64decode(token.encode()))
        return str(data["k"]), int(data["r"])
    except Exception:
        raise BadRequest("continue: the token is not one this server gave out; start the list again") from None


class ResourceHandlers:
    def __init__(self, *, store: Store, info: KindInfo, cache: WatchCache, namespaces: WatchCache,
                 leases: BucketLeases | None = None, allocator: ServiceAllocator | None = None,
                 admit: Callable[[Object, bool], Awaitable[None]] | None = None,
                 containers: WatchCache | None = None,
                 restrict: Callable[[Identity, Object], None] | None = None) -> None:
        self.containers = containers  # Secrets: which ones a node may read (api/secretaccess.py)
        self.restrict = restrict  # a further check of a create by who asks (NodeRestriction's Events)
        self.store = store
        self.allocator = allocator  # Services: cluster IPs and node ports (store/allocation.py)
        self.admit = admit  # fills server-set fields of a new or updated object (priority: api/priority.py)
        self.leases = leases  # Events: the shared lease that makes them expire (see store/leases.py)
        self.info = info
        self.strategy = strategy_for(info)  # what a create, update, status write and delete may do
        self.registry = Registry(store, event_leases=leases)  # every write goes through it
        self.cache = cache
        self.namespaces = namespaces
        self._decoder: msgspec.json.Decoder[Object] = msgspec.json.Decoder(info.type)

    # --- helpers ----------------------------------------------------------------------------

    def _ns(self, request: web.Request) -> str:
        return request.match_info.get("namespace", "") if self.info.namespaced else ""

    def _what(self, namespace: str, name: str) -> str:
        return describe(self.info, namespace, name)

    def _cached(self, key: str, *, rv: str) -> tuple[Object, int] | None:
        """The watch cache's copy of ``key`` when it is the version a write expects (the one ``rv``
        names, or, with no ``rv``, the newest the cache has), for the registry's first attempt: the
        CAS in etcd still decides, and a lost one retries from etcd. This spares the agents' status
        writes an etcd read each (Kubernetes' GuaranteedUpdate starts from the watch cache the same way)."""
        entry = self.cache.objects.get(key)
        if entry is not None and (not rv or rv == str(entry.revision)):
            return entry.obj, entry.revision
        return None

    async def _namespace(self, namespace: str) -> Namespace | None:
        """The namespace object (the cache first, then etcd); None if there is none."""
        key = NAMESPACES.key("", namespace)
        entry = self.namespaces.objects.get(key)
        if entry is not None and isinstance(entry.obj, Namespace):
            return entry.obj
        kv = await self.store.get(key)
        return typed.decode(kv, Namespace) if kv is not None else None

    async def _admit(self, request: web.Request, obj: Object, namespace: str) -> None:
        """The namespace's security level for workloads (api/admission.py)."""
        if self.info in ADMITTED:
            admit(request[IDENTITY], obj, await self._namespace(namespace) if self.info.namespaced else None)

    async def _check_namespace(self, namespace: str) -> None:
        """The namespace exists and is not being deleted (the cache first; etcd when the cache does not
        have it yet). A namespace DELETE answers only once this server's cache shows it Terminating,
        so a create sent here after it is refused."""
        if not self.info.namespaced:
            return
        key = NAMESPACES.key("", namespace)
        entry = self.namespaces.objects.get(key)
        ns: Object | None = entry.obj if entry is not None else None
        if ns is None:
            kv = await self.store.get(key)
            ns = typed.decode(kv, Namespace) if kv is not None else None
        if ns is None:
            raise NotFound(f'namespace "{namespace}" not found; create it first: corral create namespace {namespace}')
        if ns.metadata.deletion_timestamp:
            raise Forbidden(f'namespace "{namespace}" is being deleted; nothing new can be created in it')

    def _decode_body(self, raw: bytes, namespace: str, *, name: str = "") -> Object:
        """The request body as a validated object of this kind, with the path's namespace and name.

        The fast path decodes straight into the Struct; only a body that fails it is parsed again
        slowly, to name every bad field at once.
        """
        try:
            obj = self._decoder.decode(raw)
        except msgspec.ValidationError:
            validation.convert(codec.read_object_body(codec.parse_json(raw)), self.info.type)
            raise  # pragma: no cover - the slow path always finds what the fast one did
        except msgspec.DecodeError:
            codec.read_object_body(codec.parse_json(raw))
            raise BadRequest("the request body is not a JSON object of this kind") from None
        meta = obj.metadata
        errors: list[FieldError] = []
        if self.info.namespaced and meta.namespace not in ("", namespace):
            errors.append(FieldError("metadata.namespace", f"is {meta.namespace!r} but the path says {namespace!r}"))
        if not self.info.namespaced and meta.namespace:
            errors.append(FieldError("metadata.namespace", f"{self.info.plural} are not namespaced; leave it out"))
        if name and meta.name not in ("", name):
            errors.append(FieldError("metadata.name", f"is {meta.name!r} but the path says {name!r}"))
        if errors:
            raise Invalid(f"{errors[0].field}: {errors[0].message}", details=errors)
        if name:
            meta.name = name
        meta.namespace = ""
        self.strategy.validate(obj)
        meta.namespace = namespace
        return obj

    def _precondition(self, rv: str) -> int | None:
        """The revision a client's resourceVersion names (None: none given, write on the newest)."""
        if not rv:
            return None
        try:
            return int(rv)
        except ValueError:
            raise Invalid(
                f"metadata.resourceVersion: {rv!r} is not a resourceVersion",
                details=[FieldError("metadata.resourceVersion", "must be the resourceVersion string the server gave you")],
            ) from None

    # --- create -----------------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.Response:
        namespace = self._ns(request)
        obj = self._decode_body(await codec.read_body(request), namespace)
        if self.admit is not None:
            await self.admit(obj, True)
        authorize_write(request[IDENTITY], self.info, obj, verb="create")
        if self.restrict is not None:
            self.restrict(request[IDENTITY], obj)
        await self._check_namespace(namespace)
        await self._admit(request, obj, namespace)
        self.strategy.prepare_for_create(obj)
        if _dry_run(request):  # checked, not stored (nor are a Service's address and ports taken)
            return codec.json_response(obj, status=201)
        finish = await self.allocator.before_create(obj) if self.allocator is not None else None
        key, value = self.info.key(namespace, obj.metadata.name), typed.encode(obj)
        self.cache.expect(key, value, obj)  # the watch cache takes obj as it is: no second decode
        try:
            await self.registry.create(obj, prepared=True, value=value)  # an Event on the current lease, so it expires
        except BaseException:
            self.cache.withdraw(key, value)
            if finish is not None:
                await finish(False)
            raise
        # the stored bytes, not a new encode
        return codec.raw_response(splice_rv(value, int(obj.metadata.resource_version)), status=201)

    # --- get / list / watch -----------------------------------------------------------------

    async def get(self, request: web.Request) -> web.Response:
        namespace, name = self._ns(request), request.match_info["name"]
        authorize_read(request[IDENTITY], self.info, namespace=namespace, name=name)
        kv = await self.store.get(self.info.key(namespace, name))
        if kv is None:
            raise NotFound(f"{self._what(namespace, name)} not found")
        if request[IDENTITY].role == "node":
            if self.info is SECRETS and self.containers is not None:
                node_may_read_secret(self.containers, node=request[IDENTITY].node, namespace=namespace, name=name)
            authorize_node_object(request[IDENTITY], typed.decode(kv, self.info.type))
        if self.info is SECRETS and request[IDENTITY].role == "view":
            return codec.raw_response(splice_rv(redact_secret(kv.value), kv.mod_revision))
        return codec.raw_response(splice_rv(kv.value, kv.mod_revision))

    def _predicate(self, request: web.Request) -> selectors.Predicate | None:
        q = request.query
        namespace = self._ns(request)
        ns_pred: selectors.Predicate | None = None
        if namespace:
            ns_pred = lambda o: o.metadata.namespace == namespace  # noqa: E731
        return selectors.combine(
            ns_pred,
            selectors.label_predicate(q.get("labelSelector", "")),
            selectors.field_predicate(q.get("fieldSelector", ""), self.info),
        )

    async def list(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        predicate = self._predicate(request)
        authorize_list(request[IDENTITY], self.info, q.get("fieldSelector", ""), namespace=self._ns(request),
                       watch=q.get("watch", "") not in ("", "0", "false"))
        if q.get("watch", "") not in ("", "0", "false"):
            return await self.watch(request, predicate)
        limit = min(_parse_int(q["limit"], "limit"), MAX_LIMIT) if q.get("limit") else 0
        start_after, revision = _decode_continue(q["continue"]) if q.get("continue") else ("", 0)
        namespace = self._ns(request)
        items: list[bytes] = []
        more = False
        if q.get("resourceVersion") == "0":  # "any version": served whole from the watch cache, as Kubernetes
            await self.cache.wait_ready()  # does (limit and continue do not apply)
            revision = self.cache.revision
            node = _single_node(q.get("fieldSelector", ""))
            items = [e.json for e in self.cache.matching(predicate, node=node)]
            if self.info is SECRETS and request[IDENTITY].role == "view":
                items = [redact_secret(i) for i in items]
        else:
            try:
                page = await self.store.list(self.info.prefix(namespace), limit=limit, start_after=start_after, revision=revision)
            except Compacted:
                raise Gone("continue: the list's revision was compacted; start the list again") from None
            revision, more = page.revision, page.more
            for kv in page.items:
                if predicate is not None and not predicate(typed.decode(kv, self.info.type)):
                    continue
                value = redact_secret(kv.value) if self.info is SECRETS and request[IDENTITY].role == "view" else kv.value
                items.append(splice_rv(value, kv.mod_revision))
            if more and page.items:
                start_after = page.items[-1].key
        meta: dict[str, str] = {"resourceVersion": str(revision)}
        if more:
            meta["continue"] = _encode_continue(start_after, revision)
        head = codec.encode({"apiVersion": API_VERSION, "kind": self.info.list_kind, "metadata": meta})
        body = head[:-1] + b',"items":[' + b",".join(items) + b"]}"
        return codec.raw_response(body)

    async def watch(self, request: web.Request, predicate: selectors.Predicate | None) -> web.StreamResponse:
        q = request.query
        cache = self.cache
        await cache.wait_ready()
        timeout = _parse_int(q["timeoutSeconds"], "timeoutSeconds") if q.get("timeoutSeconds") else 0
        rv = q.get("resourceVersion", "")
        node = _single_node(q.get("fieldSelector", ""))  # an agent's watch: read only its node's events
        initial: list[bytes] = []
        if rv in ("", "0"):
            from_revision = cache.revision
            index = cache.end
            initial = [b'{"type":"ADDED","object":%s}\n' % e.json for e in cache.matching(predicate, node=node)]
        else:
            from_revision = _parse_int(rv, "resourceVersion")
            if from_revision > cache.revision and not await cache.wait_for_revision(from_revision, AHEAD_WAIT_SECONDS):
                raise Gone(f"resourceVersion {from_revision} is ahead of the store ({cache.revision}): it was "
                           "restored from a snapshot; list again and watch from the list's resourceVersion")
            index = cache.start_index(from_revision)  # Gone → 410 before the stream starts
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        deadline = time.monotonic() + timeout if timeout else float("inf")
        last_write = time.monotonic()
        # watchers with the same filter share each event's rendered line
        signature = (self._ns(request), q.get("labelSelector", ""), q.get("fieldSelector", ""))
        try:
            if initial:
                await response.write(b"".join(initial))
            while time.monotonic() < deadline and not cache.closing:
                try:
                    events, index = cache.events_from(index) if node is None else cache.node_events_from(node, index)
                except Gone as e:
                    await response.write(b'{"type":"ERROR","object":%s}\n' % codec.encode(e.to_body()))
                    break
                lines: list[bytes] = []
                for ev in events:
                    if ev.revision <= from_revision:
                        continue
                    line = ev.rendered.get(signature, _UNSEEN)
                    if line is _UNSEEN:
                        line = ev.rendered[signature] = _render(ev, predicate)
                    if line is not None:
                        lines.append(line)
                if lines:
                    await response.write(b"".join(lines))
                    last_write = time.monotonic()
                    if len(events) < COALESCE_BELOW:
                        # events are flowing: gather a few more per write (one send per batch, not per event)
                        await asyncio.sleep(COALESCE_SECONDS)
                elif time.monotonic() - last_write >= BOOKMARK_SECONDS:
                    mark = {"kind": self.info.kind, "apiVersion": API_VERSION,
                            "metadata": {"resourceVersion": str(cache.revision)}}
                    await response.write(b'{"type":"BOOKMARK","object":%s}\n' % codec.encode(mark))
                    last_write = time.monotonic()
                transport = request.transport
                if transport is None or transport.is_closing():
                    break  # the client went away
                wait = min(BOOKMARK_SECONDS - (time.monotonic() - last_write), deadline - time.monotonic(), 1.0)
                if wait > 0 and index == cache.end:
                    await cache.wait_changed(wait, node=node)
        except (ConnectionResetError, ConnectionError):
            pass
        return response

    # --- update -----------------------------------------------------------------------------

    async def update(self, request: web.Request) -> web.Response:
        namespace, name = self._ns(request), request.match_info["name"]
        new = self._decode_body(await codec.read_body(request), namespace, name=name)
        await self._admit_update(request, new, namespace)
        return await self._write_over(request, namespace, name, rv=new.metadata.resource_version,
                                      change=self._update_change(request, new), allocate=True)

    async def _admit_update(self, request: web.Request, new: Object, namespace: str) -> None:
        """Server-set fields and the namespace's security level, for an update to ``new``."""
        if self.admit is not None:
            await self.admit(new, False)
        await self._admit(request, new, namespace)

    def _update_change(self, request: web.Request, new: Object) -> Callable[[Object], Object]:
        """The mutate of a PUT: ``new`` over the stored object as the kind's strategy allows."""
        identity = request[IDENTITY]

        def change(current: Object) -> Object:
            authorize_update(identity, self.info, current, new)
            check_volume_update(current, new)  # a bound Volume stays on its node (api/volumeprotection.py)
            self.strategy.prepare_for_update(new, current)  # carry-over, generation; no spec change while deleting
            return new

        return change

    def _status_change(self, request: web.Request, status: Any) -> Callable[[Object], Object]:
        """The mutate of a status write: the stored object with ``status``."""
        identity = request[IDENTITY]

        def change(current: Object) -> Object:
            authorize_status(identity, self.info, current, status)
            return self.strategy.prepare_for_status(current, status)

        return change

    async def patch(self, request: web.Request) -> web.Response:
        """PATCH of the object (api/patching.py): the patched document goes the PUT's way, made from
        the stored version it is written over; a lost race is patched again on the newest version."""
        return await self._patch(request, status=False)

    async def patch_status(self, request: web.Request) -> web.Response:
        return await self._patch(request, status=True)

    async def _patch(self, request: web.Request, *, status: bool) -> web.Response:
        namespace, name = self._ns(request), request.match_info["name"]
        content_type = request.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() not in PATCH_TYPES:
            raise UnsupportedMediaType(f"PATCH needs Content-Type {MERGE_PATCH} or {JSON_PATCH}")
        patch = codec.parse_json(await codec.read_body(request))

        async def change(current: Object) -> Object:
            revision = current.metadata.resource_version
            doc = full_document(current)
            doc.setdefault("metadata", {})["resourceVersion"] = revision
            patched = apply_patch(content_type, doc, patch)
            if not isinstance(patched, dict):
                raise Invalid("the patched document is not an object", details=[FieldError("patch", "must leave an object")])
            rv = str((patched.get("metadata") or {}).get("resourceVersion") or "")
            if rv and rv != revision and self._precondition(rv) is not None:  # the client named another version
                raise Conflict(conflict_message(self.info, namespace, name))
            if status:
                new_status = validation.convert(patched.get("status") or {}, type(self.info.type().status), path="status")
                return self._status_change(request, new_status)(current)
            new = self._decode_body(codec.encode(patched), namespace, name=name)
            await self._admit_update(request, new, namespace)
            return self._update_change(request, new)(current)

        return await self._write_over(request, namespace, name, rv="", change=change, allocate=not status)

    async def update_status(self, request: web.Request) -> web.Response:
        namespace, name = self._ns(request), request.match_info["name"]
        raw = await codec.read_body(request)
        try:  # the fast path, as for create: straight into the Struct (status writes are the agents' hot path)
            sent = self._decoder.decode(raw)
            status: Any = sent.status
            rv = sent.metadata.resource_version
        except msgspec.ValidationError:  # only the status matters here: name every bad field of it
            body = codec.read_object_body(codec.parse_json(raw))
            status = validation.convert(body.get("status", {}), type(self.info.type().status), path="status")
            meta = body.get("metadata")
            rv = str(meta.get("resourceVersion") or "") if isinstance(meta, dict) else ""
        except msgspec.DecodeError:
            codec.read_object_body(codec.parse_json(raw))
            raise BadRequest("the request body is not a JSON object of this kind") from None
        return await self._write_over(request, namespace, name, rv=rv, change=self._status_change(request, status))

    async def _write_over(self, request: web.Request, namespace: str, name: str, *, rv: str,
                          change: Callable[[Object], Object | Awaitable[Object]], allocate: bool = False) -> web.Response:
        """Write ``change(stored object)`` through the registry's guaranteed_update: with ``rv`` (the
        client's resourceVersion) once, and a stale one is a Conflict; without, a lost race is
        retried on the newest version."""
        key = self.info.key(namespace, name)
        written = await self.registry.guaranteed_update(
            self.info, key, change, cached=self._cached(key, rv=rv), precondition=self._precondition(rv),
            before_write=self._allocate if allocate and self.allocator is not None else None,
            dry_run=_dry_run(request))
        return codec.json_response(written.obj)

    async def _allocate(self, new: Object, current: Object) -> Callable[[bool], Awaitable[None]] | None:
        """A Service's addresses and ports for an update (store/allocation.py), and how to finish."""
        if self.allocator is None or new.metadata.deletion_timestamp:
            return None
        return await self.allocator.before_update(new, current)

    # --- delete -----------------------------------------------------------------------------

    async def delete(self, request: web.Request) -> web.Response:
        namespace, name = self._ns(request), request.match_info["name"]
        grace = request.query.get("gracePeriodSeconds")
        policy = request.query.get("propagationPolicy", "Background")
        if policy not in ("Background", "Foreground", "Orphan"):
            raise BadRequest(f"propagationPolicy must be Background, Foreground or Orphan, not {policy!r}")
        if self.info is NAMESPACES and name == "default":
            raise Forbidden('namespace "default" cannot be deleted')
        identity, key = request[IDENTITY], self.info.key(namespace, name)

        def check(current: Object) -> None:
            authorize_delete(identity, self.info, current)
            if self.info is VOLUMES and self.containers is not None:  # its data: api/volumeprotection.py
                refuse_if_mounted(self.containers, namespace, name)

        if _dry_run(request):
            current, _revision = await self.registry.read(self.info, key, self.info.type)
            check(current)
            return codec.json_response(current)
        # Orphan: the garbage collector strips this owner from its dependents, then this finalizer.
        # Foreground is served as Background: the owner goes first, the collector removes the rest.
        written = await self.registry.delete(
            self.info, key, self.info.type, grace=_parse_int(grace, "gracePeriodSeconds") if grace is not None else None,
            orphan=policy == "Orphan", check=check)
        obj = written.obj
        if written.removed:
            if self.allocator is not None:
                await self.allocator.after_delete(obj)
            obj.metadata.resource_version = str(written.revision)
            return codec.json_response(obj)
        if self.info is NAMESPACES:  # creates check namespaces in the cache: once this returns,
            await self.cache.wait_for_revision(written.revision, NAMESPACE_SYNC_SECONDS)  # they see Terminating
        return codec.json_response(obj, status=202)
