"""EtcdWatch: one prefix watch that survives etcd restarts without losing or repeating events.

Each watch is its own bidirectional ``Watch`` stream on the store's shared channel, created with
``prev_kv`` (a DELETE carries the value the key had) and ``progress_notify``. The watch remembers
``next_revision``: one past the revision of the last event it handed out, advanced also by
progress notifications (etcd sends them only once a watcher has caught up). A response's events
are buffered and handed out one by one; the stream is read again only when the buffer is empty,
so when the stream breaks (etcd restarted, leader lost, connection reset, or its channel closed by
``EtcdStore.retarget`` — which grpc.aio reports as a ``CancelledError`` of the call, told apart
from a cancellation of the watching task by ``Task.cancelling()``) every event before
``next_revision`` has been delivered and none after it: the watch opens a new stream from
``next_revision`` after a jittered backoff, forever, until it is closed.

A ``from_revision`` that etcd has compacted ends the watch with ``Compacted`` (and the compact
revision): the caller relists. Closing is explicit (``aclose``, or ``async with``); a task
cancelled while it waits for events cancels the stream at once, and a watch dropped after a
``break`` cancels its stream when it is garbage collected.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
from types import TracebackType
from typing import TYPE_CHECKING, Any

from aetcd import rpc

from corral.model.errors import BadRequest, CorralError, Unavailable
from corral.store.base import Compacted, EventType, WatchEvent
from corral.store.etcd_errors import GRPC_ERRORS, retryable, translate
from corral.store.keyrange import prefix_end

if TYPE_CHECKING:
    from corral.store.etcd import EtcdStore

log = logging.getLogger(__name__)

BACKOFF_FIRST = 0.05
BACKOFF_MAX = 2.0

_DELETE = rpc.Event.EventType.DELETE
_METADATA = (("hasleader", "true"),)  # etcd cancels the watch when its member loses the leader


class EtcdWatch:
    """An async iterator of ``WatchEvent`` for one prefix; see the module docstring."""

    def __init__(self, store: EtcdStore, prefix: str, *, from_revision: int) -> None:
        self.prefix = prefix
        self._store = store
        self._key = prefix.encode() or b"\0"
        self._range_end = prefix_end(prefix.encode())
        self.next_revision = from_revision
        self._buffer: collections.deque[WatchEvent] = collections.deque()
        self._call: Any = None
        self._closed = False
        self._backoff = BACKOFF_FIRST
        self.reconnects = 0

    @property
    def revision(self) -> int:
        """The newest revision this watch has fully seen (events and progress), or ``from_revision - 1``."""
        return self.next_revision - 1

    def __aiter__(self) -> EtcdWatch:
        return self

    async def __anext__(self) -> WatchEvent:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            try:
                await self._fill()
            except BaseException:
                self._cancel_call()
                raise
        return self._buffer.popleft()

    async def aclose(self) -> None:
        """Stop watching: cancel the etcd stream; the iterator then ends."""
        self._closed = True
        self._buffer.clear()
        self._cancel_call()

    async def __aenter__(self) -> EtcdWatch:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        call = self.__dict__.get("_call")
        if call is not None:
            with contextlib.suppress(Exception):  # the loop may be gone at interpreter exit
                call.cancel()

    # -- the stream -------------------------------------------------------------------------

    def _cancel_call(self) -> None:
        call, self._call = self._call, None
        if call is not None:
            call.cancel()

    async def _open(self) -> None:
        call = self._store.watch_stub().Watch(metadata=_METADATA, wait_for_ready=True)
        self._call = call
        create = rpc.WatchCreateRequest(
            key=self._key,
            range_end=self._range_end,
            start_revision=self.next_revision,
            prev_kv=True,
            progress_notify=True,
        )
        await call.write(rpc.WatchRequest(create_request=create))

    async def _fill(self) -> None:
        """Read one response into the buffer, or reconnect after a backoff when the stream broke."""
        if self._store.closed:
            self._closed = True
            raise Unavailable("etcd: the store was closed while watching")
        try:
            if self._call is None:
                await self._open()
            resp = await self._call.read()
        except GRPC_ERRORS as e:
            err = translate(e, what=f"watch {self.prefix}")
            if isinstance(err, Compacted) or not retryable(err):
                self._closed = True
                raise err from None
            await self._reconnect(err)
            return
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._closed or (task is not None and task.cancelling()):
                raise  # this task is being cancelled, or the watch closed: end
            # grpc.aio raises CancelledError when the *call* was cancelled under us: its channel was
            # closed because the store moved to a new one (``retarget``: the etcd members changed)
            await self._reconnect(Unavailable("the watch's channel was closed"))
            return
        if resp is None or not hasattr(resp, "events"):  # grpc.aio.EOF: the server ended the stream
            await self._reconnect(Unavailable("etcd ended the watch stream"))
            return
        if resp.compact_revision:
            self._closed = True
            self._cancel_call()
            raise Compacted(
                f"etcd: watch {self.prefix}: revision {self.next_revision} was compacted "
                f"(oldest kept: {resp.compact_revision}); relist",
                compact_revision=resp.compact_revision,
            )
        if resp.canceled:
            reason = resp.cancel_reason or "no reason given"
            if resp.created or "invalid" in reason:
                self._closed = True
                self._cancel_call()
                raise BadRequest(f"etcd refused to watch {self.prefix}: {reason}")
            await self._reconnect(Unavailable(f"etcd cancelled the watch: {reason}"))
            return
        self._backoff = BACKOFF_FIRST
        if resp.created and self.next_revision <= 0:
            self.next_revision = resp.header.revision + 1  # "from now": pin now, so a resume loses nothing
        if resp.events:
            self._buffer.extend(self._event(e) for e in resp.events)
            self.next_revision = resp.events[-1].kv.mod_revision + 1
        elif not resp.created and resp.header.revision >= self.next_revision:
            self.next_revision = resp.header.revision + 1  # a progress notification

    def _event(self, e: Any) -> WatchEvent:
        kv = e.kv
        if e.type == _DELETE:
            prev = e.prev_kv
            return WatchEvent(
                type=EventType.DELETE,
                key=kv.key.decode(),
                value=prev.value,
                revision=kv.mod_revision,
                create_revision=prev.create_revision,
                version=prev.version,
                lease=prev.lease,
            )
        return WatchEvent(
            type=EventType.PUT,
            key=kv.key.decode(),
            value=kv.value,
            revision=kv.mod_revision,
            create_revision=kv.create_revision,
            version=kv.version,
            lease=kv.lease,
        )

    async def _reconnect(self, err: CorralError) -> None:
        self._cancel_call()
        self.reconnects += 1
        delay = self._backoff * random.uniform(0.5, 1.0)
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)
        log.info("watch %s from revision %d broke (%s); reconnecting in %.2fs",
                 self.prefix, self.next_revision, err.message, delay)
        await asyncio.sleep(delay)
