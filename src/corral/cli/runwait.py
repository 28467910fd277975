"""``corral run --wait``: follow the new container until it runs, drawing its image pull.

The container is read once, then followed through the API's watch (field selector on its name,
from the version read), so every status its node's agent writes arrives as it is written: the
``status.pull`` written while the image is pulled moves a bar per layer (``PullDisplay``, the
bars of ``corral image pull``), and the pull's end fills them. The wait ends when the container is
Running or Succeeded (exit 0), Failed (exit 1, with its reason), or at ``--timeout`` (exit 1).
Between those it says each new state once (``waiting for container "web": Pending: ...``), as
``apply --wait`` does (cli/waiting.py). A cut watch resumes from the last version seen; an expired
one reads the container again.
"""

from __future__ import annotations

import asyncio

import click

from corral.api.client import ApiClient
from corral.cli.pullprogress import PullDisplay
from corral.cli.waiting import container_state
from corral.model.errors import Gone, NotFound, Unavailable
from corral.model.resources import Container

RETRY_SECONDS = 1.0


class _Follower:
    """What the user has been shown of one container: its last state line, and its pull."""

    def __init__(self, display: PullDisplay) -> None:
        self.display = display
        self.last_message = ""
        self.pulling = False
        self.last_pull = ""

    def see(self, obj: Container) -> bool | None:
        """Show what changed in ``obj``; True/False once it is ready/failed, else None."""
        pull = obj.status.pull
        if pull is not None:
            if not self.pulling:
                self.display.note(f"pulling {pull.image} on {obj.status.node or obj.spec.node}")
                self.pulling = True
            self.display.show_status(pull)
            self.last_pull = f"pulling {pull.image}: {pull.bytes_done} of {pull.bytes_total} bytes"
        elif self.pulling:
            self.display.complete()
            self.pulling = False
        done, message = container_state(obj)
        if done is False:
            return False
        if message != self.last_message and (done or pull is None):
            self.display.note(message)
            self.last_message = message
        return done


async def follow_until_running(client: ApiClient, name: str, *, namespace: str, timeout: float,
                               display: PullDisplay) -> int:
    """0 once the container runs (or ran to completion), 1 when it failed or ``timeout`` passed."""
    follower = _Follower(display)
    with display:
        try:
            async with asyncio.timeout(timeout):
                done = await _follow(client, follower, name=name, namespace=namespace)
        except TimeoutError:
            done = None
    if done is None:
        click.echo(f'error: timed out after {timeout:g}s waiting for container "{name}" to run '
                   f"(last: {_last_seen(follower)})", err=True)
        return 1
    if done is False:
        _, message = container_state(await client.get(Container, name, namespace=namespace))
        click.echo(f"error: {message}", err=True)
        return 1
    return 0


def _last_seen(follower: _Follower) -> str:
    if follower.pulling:
        return follower.last_pull
    return follower.last_message or "no status yet"


async def _follow(client: ApiClient, follower: _Follower, *, name: str, namespace: str) -> bool:
    obj = await client.get(Container, name, namespace=namespace)
    while True:
        seen = follower.see(obj)
        if seen is not None:
            return seen
        rv = obj.metadata.resource_version
        try:
            async for ev in client.watch(Container, namespace=namespace, resource_version=rv,
                                         field_selector=f"metadata.name={name}"):
                if ev.type == "DELETED":
                    raise NotFound(f'container "{name}" was deleted while waiting for it to run')
                obj = ev.object
                seen = follower.see(obj)
                if seen is not None:
                    return seen
        except Gone:
            obj = await client.get(Container, name, namespace=namespace)
        except Unavailable:
            await asyncio.sleep(RETRY_SECONDS)
            obj = await client.get(Container, name, namespace=namespace)
