"""``corral exec`` and ``corral attach``: a process in a container, with the terminal wired to it.

``exec -t`` puts the local terminal in raw mode (restored on the way out, whatever happens), gives
the remote pty the local window size at the start (``width``/``height`` on the request) and on every
``SIGWINCH`` (a resize frame); ``-i`` forwards stdin. The remote exit code becomes this command's;
a command that could not start exits 126, a refused or lost session 1 with its sentence on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import termios
import tty as ttys
from collections.abc import Callable, Iterator

import click

from corral.api import streamproto as sp
from corral.api.client import ApiClient
from corral.cli.connection import api_command, connection_options
from corral.cli.streaming import open_stream, run_session, stdin_chunks


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """The terminal on ``fd`` in raw mode for the block (a no-op when ``fd`` is not a terminal)."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        ttys.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _write(fd: int) -> Callable[[memoryview], None]:
    def write(data: memoryview) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    return write


def _exit_code(report: sp.ExitReport) -> int:
    if report.exit_code is not None:
        return report.exit_code
    click.echo(f"error: {report.message or report.reason}", err=True)
    return 126 if report.reason == "StartFailed" else 1


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("-n", "--namespace", default="default", show_default=True, help="The container's namespace.")
@click.option("-i", "--stdin", "interactive", is_flag=True, help="Send this terminal's stdin to the command.")
@click.option("-t", "--tty", "use_tty", is_flag=True,
              help="Give the command a terminal (raw mode here, window size and resizes forwarded).")
@connection_options
@api_command
async def exec_(client: ApiClient, *, name: str, command: tuple[str, ...], namespace: str, interactive: bool,
                use_tty: bool) -> int:
    """Run COMMAND in the running container NAME: `corral exec [-i] [-t] NAME -- CMD [ARG...]`.

    stdout and stderr come back as they are written; the command's exit code is this one's
    (126 when it could not start, 1 when the session was refused or lost). Closing this command
    (Ctrl-C, or its terminal going away) kills the remote command.
    """
    params = [("command", arg) for arg in command]
    params += [("stdin", "1" if interactive else "0"), ("stdout", "1"), ("stderr", "0" if use_tty else "1")]
    if use_tty:
        size = shutil.get_terminal_size((80, 24)) if os.isatty(1) else os.terminal_size((80, 24))
        params += [("tty", "1"), ("width", str(size.columns)), ("height", str(size.lines))]
    ws = await open_stream(client, namespace=namespace, name=name, verb="exec", params=params)
    loop = asyncio.get_running_loop()
    resizes: set[asyncio.Task[None]] = set()
    if use_tty and os.isatty(1):

        def resized() -> None:
            cols, rows = shutil.get_terminal_size((80, 24))
            task = loop.create_task(ws.send_bytes(sp.frame(sp.RESIZE, sp.resize_payload(cols, rows))))
            resizes.add(task)
            task.add_done_callback(resizes.discard)

        loop.add_signal_handler(signal.SIGWINCH, resized)
    try:
        with raw_terminal(0) if use_tty and interactive else contextlib.nullcontext():
            report = await run_session(ws, stdin=stdin_chunks() if interactive else None,
                                       stdout=_write(1), stderr=_write(2))
    except BrokenPipeError:  # our stdout was closed (`| head`): the session is closed, the command killed
        return 128 + signal.SIGPIPE
    finally:
        if use_tty:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signal.SIGWINCH)
    sys.stdout.flush()
    return _exit_code(report)


@click.command()
@click.argument("name")
@click.option("-n", "--namespace", default="default", show_default=True, help="The container's namespace.")
@connection_options
@api_command
async def attach(client: ApiClient, *, name: str, namespace: str) -> int:
    """Follow the output of container NAME's main process from now on, until it exits.

    stdout and stderr arrive on their own streams; this command exits with the process's exit code.
    The main process has no stdin to attach to (use `corral exec -i` for input). Ctrl-C detaches.
    """
    ws = await open_stream(client, namespace=namespace, name=name, verb="attach",
                           params=[("stdout", "1"), ("stderr", "1")])
    report = await run_session(ws, stdin=None, stdout=_write(1), stderr=_write(2))
    return _exit_code(report)
