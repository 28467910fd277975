"""TCP connections into a container's network namespace, without ``nsenter`` or a fork.

A socket belongs to the network namespace its creator was in when it was made, for its whole life.
So a short-lived thread of its own enters the container's namespace (``setns`` on the namespace's
mount, ``/var/run/netns/<name>``: a thread's network namespace is its own, the agent's other threads
stay where they are), creates the socket, and ends; the socket is then connected and used from the
event loop like any other. This is how port-forward reaches ``127.0.0.1:PORT`` *inside* a
container — a port never published on the host.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import threading
from pathlib import Path

from corral.model.errors import NotFound

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _socket_in(netns: Path) -> socket.socket:
    """Run in a fresh thread: enter ``netns`` and make a TCP socket there."""
    result: list[socket.socket | BaseException] = []

    def run() -> None:
        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {netns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        except BaseException as e:  # handed to the caller
            result.append(e)

    thread = threading.Thread(target=run, name="netns-dial", daemon=True)
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


async def dial(netns: Path, port: int, *, host: str = "127.0.0.1", timeout: float = 5.0) -> socket.socket:
    """A connected, non-blocking TCP socket to ``host:port`` as seen inside the namespace mounted at
    ``netns`` (for ``loop.sock_recv_into``/``sock_sendall``: no stream buffer in between)."""
    if not await asyncio.to_thread(netns.exists):
        raise NotFound(f"network namespace {netns} does not exist")
    sock = await asyncio.to_thread(_socket_in, netns)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    except BaseException:
        sock.close()
        raise


__all__ = ["dial"]
