"""``--log-format json``: one JSON object a line, carrying the request id of the request it belongs to."""

import json
import logging

from corral.aiokit.logfmt import REQUEST_ID, JsonFormatter


def record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            import sys
            exc_info = sys.exc_info()
    return logging.LogRecord("corral.api", logging.WARNING, __file__, 1, msg, args, exc_info)


def test_a_line_is_json_with_time_level_logger_and_the_formatted_message() -> None:
    line = json.loads(JsonFormatter().format(record("node %s is %s", "n1", "NotReady")))
    assert line["level"] == "warning" and line["logger"] == "corral.api"
    assert line["message"] == "node n1 is NotReady"
    assert line["time"].endswith("+00:00") and "requestId" not in line


def test_a_line_logged_during_a_request_carries_its_id_and_an_exception_its_traceback() -> None:
    token = REQUEST_ID.set("4f2a9c")
    try:
        line = json.loads(JsonFormatter().format(record("failed", exc=True)))
    finally:
        REQUEST_ID.reset(token)
    assert line["requestId"] == "4f2a9c"
    assert "ValueError: boom" in line["exc"]
