"""The channel protocol of exec, attach and port-forward WebSockets (shaped like ``v5.channel.k8s.io``).

Every message is one binary WebSocket frame whose first byte names the channel and whose rest is
the payload. The same framing runs on both hops (client → API, API → agent), so the API passes
frames through untouched and keeps no state beyond the two sockets.

exec / attach channels:

- ``0`` stdin (client → process), ``1`` stdout, ``2`` stderr (process → client);
- ``3`` status, sent once by the agent as the last frame: JSON, ``{"status": "Success"}`` or
  ``{"status": "Failure", "reason": "NonZeroExitCode"|"StartFailed"|…, "message": …, "exitCode": N}``;
- ``4`` resize (client → process): JSON ``{"Width": cols, "Height": rows}``;
- ``255`` close-stream: the payload is one byte, the channel being closed (``[255, 0]``: stdin is done).

port-forward (one port per WebSocket, ``?ports=PORT``): channel ``0`` carries the TCP bytes both
ways, ``1`` an error text from the agent (e.g. connection refused), ``255`` + ``0`` half-closes the
side that sends it (the agent shuts down its write side towards the container when the client is
done sending; the agent closes the WebSocket when the container's side has closed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

SUBPROTOCOL = "v5.channel.k8s.io"
STDIN, STDOUT, STDERR, STATUS, RESIZE = 0, 1, 2, 3, 4
DATA, ERROR = 0, 1  # port-forward
CLOSE = 255
MAX_FRAME = 256 * 1024  # the largest payload either side sends in one frame (aiohttp queues 512 KiB per socket before it pauses reading)


def frame(channel: int, payload: bytes = b"") -> bytes:
    return bytes((channel,)) + payload


def close_frame(channel: int) -> bytes:
    return bytes((CLOSE, channel))


def split(message: bytes) -> tuple[int, memoryview]:
    """(channel, payload) of one frame — the payload a view, not a copy; ``ValueError`` for an empty frame."""
    if not message:
        raise ValueError("an empty frame has no channel")
    return message[0], memoryview(message)[1:]


@dataclass(frozen=True, slots=True)
class ExitReport:
    """What channel 3 said: the exit code (None when the process never ran) and why."""

    exit_code: int | None
    reason: str
    message: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def status_payload(*, exit_code: int | None, reason: str = "", message: str = "") -> bytes:
    body: dict[str, Any]
    if exit_code == 0:
        body = {"status": "Success", "exitCode": 0}
    else:
        body = {"status": "Failure", "reason": reason or "NonZeroExitCode",
                "message": message or f"command terminated with exit code {exit_code}", "exitCode": exit_code}
    return json.dumps(body).encode()


def parse_status(payload: bytes | memoryview) -> ExitReport:
    try:
        body = json.loads(bytes(payload))
    except ValueError:
        return ExitReport(None, "BadStatus", bytes(payload).decode(errors="replace"))
    code = body.get("exitCode")
    return ExitReport(code if isinstance(code, int) else None, str(body.get("reason", "")),
                      str(body.get("message", "")))


def resize_payload(width: int, height: int) -> bytes:
    return json.dumps({"Width": width, "Height": height}).encode()


def parse_resize(payload: bytes | memoryview) -> tuple[int, int] | None:
    """(width, height), or None when the payload is not a sensible size."""
    try:
        body = json.loads(bytes(payload))
        width, height = int(body["Width"]), int(body["Height"])
    except (ValueError, KeyError, TypeError):
        return None
    if not (0 < width < 65536 and 0 < height < 65536):
        return None
    return width, height
