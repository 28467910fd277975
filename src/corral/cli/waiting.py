"""Waiting for applied objects to become ready: ``corral apply --wait``.

Ready means: a Deployment rolled out (the rule of ``corral rollout status``), a Container Running
(or Succeeded), anything else as soon as it exists. A Deployment past its progress deadline or a
Container Failed is a failure; the wait ends at the first failure or when all are ready, or at the
timeout. It polls each pending object once a second: a handful of GETs, not a watch per object.
"""

from __future__ import annotations

import asyncio

import click

from corral.api.client import ApiClient
from corral.cli import output
from corral.cli.rollout import rollout_state
from corral.model.kinds import CONTAINERS, DEPLOYMENTS, KindInfo
from corral.model.resources import Container, Deployment

POLL_SECONDS = 1.0


def container_state(c: Container) -> tuple[bool | None, str]:
    name, st = c.metadata.name, c.status
    if st.phase in ("Running", "Succeeded"):
        return True, f'container "{name}" is {st.phase}'
    if st.phase == "Failed":
        return False, f'container "{name}" failed: {st.reason or "Failed"} {st.message}'.rstrip()
    return None, f'waiting for container "{name}": {st.phase}{": " + st.reason if st.reason else ""}'


async def _state(client: ApiClient, info: KindInfo, namespace: str, name: str) -> tuple[bool | None, str]:
    if info is DEPLOYMENTS:
        return rollout_state(await client.get(Deployment, name, namespace=namespace))
    if info is CONTAINERS:
        return container_state(await client.get(Container, name, namespace=namespace))
    return True, f"{output.ref(info, name)} exists"


async def wait_ready(client: ApiClient, objects: list[tuple[KindInfo, str, str]], *, timeout: float) -> int:
    """0 when every object is ready, 1 when one failed or the timeout passed (each said on stderr)."""
    pending = list(objects)
    last: dict[tuple[str, str, str], str] = {}
    try:
        async with asyncio.timeout(timeout):
            while pending:
                still = []
                for info, namespace, name in pending:
                    done, message = await _state(client, info, namespace, name)
                    key = (info.kind, namespace, name)
                    if done is False:
                        click.echo(f"error: {message}", err=True)
                        return 1
                    if done:
                        click.echo(message)
                        continue
                    if last.get(key) != message:
                        click.echo(message)
                        last[key] = message
                    still.append((info, namespace, name))
                pending = still
                if pending:
                    await asyncio.sleep(POLL_SECONDS)
    except TimeoutError:
        names = ", ".join(output.ref(i, n) for i, _, n in pending)
        click.echo(f"error: timed out after {timeout:g}s waiting for {names}", err=True)
        return 1
    return 0
