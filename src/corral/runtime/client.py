"""The containerd client core: one grpclib channel over containerd's unix socket, in one namespace.

Everything corral asks containerd goes through a ``Client``:

- **One channel.** ``grpclib.client.Channel(path=socket)``; the HTTP/2 connection is made lazily
  on the first call. The stubs (``client.tasks``, ``client.content``, ...) are built for the current
  channel; callers pass a stub *method* to ``call``/``stream``/``open_stream``, which re-bind it to
  the live channel by its gRPC path, so a stub kept from before a reconnect still works.
- **Headers in one place.** A ``SendRequest`` listener on the channel adds ``containerd-namespace``
  to every request, and ``containerd-lease`` when a lease is active in the caller's context
  (``corral.runtime.leases`` sets it with ``client.lease_scope``).
- **Errors at the boundary.** grpclib's ``GRPCError``, ``StreamTerminatedError`` and socket errors are
  translated into corral's error tree (``runtime/errors.py``) before they leave this module.
- **Reconnect.** After a connection error the channel is closed and dropped; the next call makes a
  new one. Calls that are safe to repeat (reads: Get, List, Info, Stat, Version, ...) are retried once
  on a fresh channel; others raise ``ContainerdUnavailable`` and the caller decides.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any, TypeVar

from google.protobuf import empty_pb2
from grpclib.client import Channel, Stream, StreamStreamMethod, UnaryStreamMethod, UnaryUnaryMethod
from grpclib.events import SendRequest, listen
from grpclib.exceptions import GRPCError

from corral.model.errors import CorralError
from corral.runtime._pb.containerd.services.containers.v1 import containers_grpc
from corral.runtime._pb.containerd.services.content.v1 import content_grpc
from corral.runtime._pb.containerd.services.diff.v1 import diff_grpc
from corral.runtime._pb.containerd.services.events.v1 import events_grpc
from corral.runtime._pb.containerd.services.images.v1 import images_grpc
from corral.runtime._pb.containerd.services.leases.v1 import leases_grpc
from corral.runtime._pb.containerd.services.snapshots.v1 import snapshots_grpc
from corral.runtime._pb.containerd.services.tasks.v1 import tasks_grpc
from corral.runtime._pb.containerd.services.version.v1 import version_grpc
from corral.runtime.errors import CONNECTION_ERRORS, ContainerdUnavailable, translate

NAMESPACE_HEADER = "containerd-namespace"
LEASE_HEADER = "containerd-lease"  # containerd leases.GRPCHeader
DEFAULT_NAMESPACE = "corral"

Req = TypeVar("Req")
Rep = TypeVar("Rep")

# the lease every call in this context runs under (see ``Client.lease_scope``); per asyncio task
_current_lease: contextvars.ContextVar[str | None] = contextvars.ContextVar("containerd_lease", default=None)

# what grpclib and the socket raise; everything else (cancellation, corral errors) passes unchanged
_TRANSLATED: tuple[type[BaseException], ...] = (GRPCError, TimeoutError, *CONNECTION_ERRORS)

# methods that only read: repeating them after a reconnect cannot do anything twice
_SAFE_VERBS = frozenset(
    {"Get", "List", "ListStream", "Info", "Stat", "Version", "Mounts", "Usage", "ListPids", "Metrics",
     "Status", "ListStatuses", "ListResources", "Read", "Wait"}
)  # fmt: skip


def _is_safe(path: str) -> bool:
    return path.rsplit("/", 1)[-1] in _SAFE_VERBS


class _Stubs:
    """The service stubs of one channel."""

    def __init__(self, channel: Channel) -> None:
        self.containers = containers_grpc.ContainersStub(channel)
        self.tasks = tasks_grpc.TasksStub(channel)
        self.images = images_grpc.ImagesStub(channel)
        self.content = content_grpc.ContentStub(channel)
        self.snapshots = snapshots_grpc.SnapshotsStub(channel)
        self.diff = diff_grpc.DiffStub(channel)
        self.leases = leases_grpc.LeasesStub(channel)
        self.events = events_grpc.EventsStub(channel)
        self.version = version_grpc.VersionStub(channel)


class Client:
    """A connection to one containerd, in one containerd namespace. Use ``async with Client(...)``."""

    def __init__(self, socket: str, namespace: str = DEFAULT_NAMESPACE, *, timeout: float = 30.0) -> None:
        self.socket = socket
        self.namespace = namespace
        self.timeout = timeout
        self._channel: Channel | None = None
        self._stubs: _Stubs | None = None
        self.reconnects = 0

    # -- lifecycle -------------------------------------------------------------------------------

    async def connect(self, *, check: bool = True) -> None:
        """Open the channel; with ``check``, ask containerd's version so a dead socket fails here."""
        self._ensure_channel()
        if check:
            await self.version()

    async def close(self) -> None:
        self._drop_channel()

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _ensure_channel(self) -> _Stubs:
        if self._stubs is None:
            channel = Channel(path=self.socket)
            listen(channel, SendRequest, self._on_send_request)
            self._channel, self._stubs = channel, _Stubs(channel)
        return self._stubs

    def _drop_channel(self) -> None:
        channel, self._channel, self._stubs = self._channel, None, None
        if channel is not None:
            channel.close()

    async def _on_send_request(self, event: SendRequest) -> None:
        event.metadata[NAMESPACE_HEADER] = self.namespace
        lease = _current_lease.get()
        if lease:
            event.metadata[LEASE_HEADER] = lease

    # -- stubs (bound to the current channel; hand their methods to call/stream/open_stream) --------

    @property
    def containers(self) -> containers_grpc.ContainersStub:
        return self._ensure_channel().containers

    @property
    def tasks(self) -> tasks_grpc.TasksStub:
        return self._ensure_channel().tasks

    @property
    def images(self) -> images_grpc.ImagesStub:
        return self._ensure_channel().images

    @property
    def content(self) -> content_grpc.ContentStub:
        return self._ensure_channel().content

    @property
    def snapshots(self) -> snapshots_grpc.SnapshotsStub:
        return self._ensure_channel().snapshots

    @property
    def diff(self) -> diff_grpc.DiffStub:
        return self._ensure_channel().diff

    @property
    def leases(self) -> leases_grpc.LeasesStub:
        return self._ensure_channel().leases

    @property
    def events(self) -> events_grpc.EventsStub:
        return self._ensure_channel().events

    # -- leases ------------------------------------------------------------------------------------

    @staticmethod
    @contextlib.contextmanager
    def lease_scope(lease_id: str | None) -> Iterator[None]:
        """Every call made inside (in this task and tasks it starts) carries ``containerd-lease``."""
        token = _current_lease.set(lease_id)
        try:
            yield
        finally:
            _current_lease.reset(token)

    @staticmethod
    def current_lease() -> str | None:
        return _current_lease.get()

    # -- calls -------------------------------------------------------------------------------------

    def _rebind(self, method: Any, kind: type[Any]) -> Any:
        """``method`` (from any channel's stub) bound to the live channel."""
        self._ensure_channel()
        return kind(self._channel, method.name, method.request_type, method.reply_type)

    async def call(
        self,
        method: UnaryUnaryMethod[Req, Rep],
        request: Req,
        *,
        timeout: float | None = None,
        retry: bool | None = None,
    ) -> Rep:
        """One unary call: ``await client.call(client.tasks.Kill, KillRequest(...))``.

        ``retry`` (default: only for read methods) repeats the call once on a new channel after
        a connection error. Raises corral errors only.
        """
        path: str = method.name
        attempts = 2 if (retry if retry is not None else _is_safe(path)) else 1
        for attempt in range(attempts):
            bound = self._rebind(method, UnaryUnaryMethod)
            try:
                reply: Rep = await bound(request, timeout=timeout if timeout is not None else self.timeout)
                return reply
            except _TRANSLATED as e:
                error = self._fail(e, path)
                if isinstance(error, ContainerdUnavailable) and attempt + 1 < attempts:
                    continue
                raise error from e
        raise AssertionError("unreachable")

    async def stream(
        self,
        method: UnaryStreamMethod[Req, Rep],
        request: Req,
        *,
        timeout: float | None = None,
    ) -> AsyncIterator[Rep]:
        """A server-streaming call (Events.Subscribe, Content.Read, Snapshots.List ...) as an async
        iterator of replies. ``timeout`` (default: none) bounds the whole stream."""
        bound = self._rebind(method, UnaryStreamMethod)
        path: str = method.name
        try:
            async with bound.open(timeout=timeout) as st:
                await st.send_message(request, end=True)
                async for reply in st:
                    yield reply
        except _TRANSLATED as e:
            raise self._fail(e, path) from e

    @contextlib.asynccontextmanager
    async def open_stream(
        self,
        method: StreamStreamMethod[Req, Rep],
        *,
        timeout: float | None = None,
    ) -> AsyncIterator[Stream[Req, Rep]]:
        """A bidirectional stream (Content.Write) as grpclib's ``Stream``; errors are translated."""
        bound = self._rebind(method, StreamStreamMethod)
        path: str = method.name
        try:
            async with bound.open(timeout=timeout if timeout is not None else self.timeout) as st:
                yield st
        except _TRANSLATED as e:
            raise self._fail(e, path) from e

    def _fail(self, exc: BaseException, path: str) -> CorralError:
        """The corral error for ``exc``; drops the channel when the connection is gone."""
        error = translate(exc, method=path)
        if isinstance(error, ContainerdUnavailable):
            self._drop_channel()
            self.reconnects += 1
        return error

    # -- a few calls everyone needs ------------------------------------------------------------------

    async def version(self) -> str:
        """containerd's version string (e.g. ``1.6.20~ds1``); also proves the socket answers."""
        reply = await self.call(self._ensure_channel().version.Version, empty_pb2.Empty())
        return str(reply.version)
