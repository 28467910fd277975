"""The audit log: every write and every refused request, one JSON line each, with size-based rotation.

A line holds ``time`` (RFC 3339, UTC), ``requestId`` (also the response's ``X-Request-Id``),
``identity`` (``admin``, ``edit:<token id>``, ``node:<name>``, or ``anonymous`` for a request without a
valid token), ``verb`` (the HTTP method), ``kind``/``namespace``/``name`` (from the path; a create's
name from its answer), ``code`` (the response status), ``sourceIP`` and ``path``. Written: every
POST/PUT/DELETE/PATCH (node heartbeats excepted: they are not changes anyone audits, and would be most
of the log) and every 401 and 403, whatever the method. Never a request or response body, so no
Secret value can reach the log.

The API's event loop only appends a dict to a queue; one writer thread encodes, writes and flushes
the lines, and rotates: when the file passes ``max_bytes`` it becomes ``<path>.1`` (``.1`` → ``.2``, …,
``backups`` kept) and a new file starts. The file is created mode 0600. ``close`` drains the queue.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 100 * 1024 * 1024
DEFAULT_BACKUPS = 5
_STOP = object()


class AuditLog:
    def __init__(self, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="audit-log-writer", daemon=True)
        self._started = False
        self.dropped = 0

    def start(self) -> None:
        if not self._started:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._thread.start()
            self._started = True

    def record(self, entry: dict[str, Any]) -> None:
        """Queue one line (never blocks the caller)."""
        if not self._started:
            self.start()
        self._queue.put(entry)

    def close(self, timeout: float = 5.0) -> None:
        if self._started:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._started = False

    # --- the writer thread --------------------------------------------------------------------

    def _open(self) -> Any:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return os.fdopen(fd, "a", encoding="utf-8")

    def _rotate(self) -> None:
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))

    def _run(self) -> None:
        f = self._open()
        size = f.tell()
        try:
            while True:
                item = self._queue.get()
                batch = [item]
                while len(batch) < 512:  # write what has piled up in one go
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = any(i is _STOP for i in batch)
                text = "".join(json.dumps(i, separators=(",", ":")) + "\n" for i in batch if i is not _STOP)
                try:
                    f.write(text)
                    f.flush()
                    size += len(text.encode())
                    if size >= self.max_bytes:
                        f.close()
                        self._rotate()
                        f = self._open()
                        size = 0
                except OSError as e:
                    self.dropped += len(batch)
                    log.error("audit log %s: %s (%d lines lost)", self.path, e, len(batch))
                if stop:
                    return
        finally:
            f.close()


WRITE_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})


def should_audit(method: str, path: str, status: int) -> bool:
    if status in (401, 403):
        return True
    return method in WRITE_METHODS and not path.endswith("/heartbeat")


def target_of(path: str) -> tuple[str, str, str]:
    """(plural, namespace, name) named by an API path: ``/namespaces/ns/containers/web/status`` →
    ``("containers", "ns", "web")``; ``/nodes/n1`` → ``("nodes", "", "n1")``; ``/tokens`` → ``("tokens", "", "")``."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "namespaces":
        return parts[2], parts[1], parts[3] if len(parts) > 3 else ""
    if not parts:
        return "", "", ""
    return parts[0], "", parts[1] if len(parts) > 1 else ""
