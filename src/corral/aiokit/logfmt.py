"""Log records as JSON lines (``corral serve --log-format json``), with the request they belong to.

``REQUEST_ID`` is a context variable the API's middleware sets for the span of one request; every
record logged while it is set (by the handler, the store, anything the request calls) carries it as
``requestId`` — the same id the response's ``X-Request-Id`` header and the audit log carry, so one
request's lines can be found in all three. Exceptions go in ``exc`` as their formatted traceback.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("corral_request_id", default="")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id:
            out["requestId"] = request_id
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure(*, level: int, fmt: str) -> None:
    """Root logging to stderr: ``text`` (time level logger: message) or ``json`` (one object a line)."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
