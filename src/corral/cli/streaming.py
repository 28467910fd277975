"""The client side of exec, attach and port-forward: open the WebSocket, speak the channels.

``open_stream`` upgrades ``GET /namespaces/{ns}/containers/{name}/{verb}`` through the command's
``ApiClient`` session (its token, and however it reaches the API). A refused upgrade carries no
readable sentence in aiohttp's client, so the same request is then made plainly: the API runs the
same checks and answers the error's body, which becomes the usual one-line error.

``run_session`` drives an exec/attach socket: stdin chunks go out on channel 0 (then close-stream),
window sizes on channel 4, stdout/stderr frames go to their callbacks, and the status frame
(channel 3) is the result. A socket that closes without a status is a lost connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Sequence

import aiohttp

from corral.api import streamproto as sp
from corral.api.client import ApiClient, untrusted
from corral.model.errors import Unavailable

Params = Sequence[tuple[str, str]]


async def open_stream(client: ApiClient, *, namespace: str, name: str, verb: str,
                      params: Params) -> aiohttp.ClientWebSocketResponse:
    path = f"/namespaces/{namespace}/containers/{name}/{verb}"
    try:
        return await client.session().ws_connect(
            client.server + path, params=list(params), protocols=(sp.SUBPROTOCOL,),
            max_msg_size=sp.MAX_FRAME * 4, autoping=True, ssl=client.ssl_option,
        )
    except aiohttp.ClientConnectorCertificateError as e:
        raise untrusted(client.server, client.trust_source, e) from None
    except aiohttp.WSServerHandshakeError as e:
        if e.status >= 400:
            await client.request("GET", path, params=dict(params))  # raises the API's own sentence
        raise Unavailable(f"the API refused the {verb} WebSocket: {e.status} {e.message}") from None
    except (aiohttp.ClientConnectionError, OSError) as e:
        raise Unavailable(f"cannot reach the corral API at {client.server}: {e}") from None


def stdin_chunks(fd: int = 0) -> AsyncIterator[bytes]:
    """What arrives on ``fd``, read by a daemon thread (works for terminals, pipes and files, and
    never holds the process open at exit); ends at end of file."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)

    def reader() -> None:
        import os

        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            try:
                asyncio.run_coroutine_threadsafe(queue.put(data), loop).result()
            except (RuntimeError, asyncio.CancelledError):  # the loop is gone
                return
            if not data:
                return

    threading.Thread(target=reader, name="stdin", daemon=True).start()

    async def chunks() -> AsyncIterator[bytes]:
        while data := await queue.get():
            yield data

    return chunks()


async def run_session(ws: aiohttp.ClientWebSocketResponse, *, stdin: AsyncIterator[bytes] | None,
                      stdout: Callable[[memoryview], None], stderr: Callable[[memoryview], None]) -> sp.ExitReport:
    """Pump one exec/attach socket until its status frame; see the module docstring."""

    async def send_stdin() -> None:
        if stdin is None:
            return
        async for chunk in stdin:
            for start in range(0, len(chunk), sp.MAX_FRAME):
                await ws.send_bytes(sp.frame(sp.STDIN, chunk[start:start + sp.MAX_FRAME]))
        await ws.send_bytes(sp.close_frame(sp.STDIN))

    sender = asyncio.ensure_future(send_stdin())
    try:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                continue
            channel, payload = sp.split(msg.data)
            if channel == sp.STDOUT:
                stdout(payload)
            elif channel == sp.STDERR:
                stderr(payload)
            elif channel == sp.STATUS:
                return sp.parse_status(payload)
        return sp.ExitReport(None, "ConnectionLost", "the connection closed before the command's exit status came")
    finally:
        sender.cancel()
        with contextlib.suppress(BaseException):
            await sender
        with contextlib.suppress(Exception):
            await ws.close()
