"""``corral get -w`` follows through the one informer: a version the API no longer keeps is listed again
and what changed meanwhile is printed, not lost."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest

from corral.api.client import ApiClient
from corral.cli import tables
from corral.cli.get import Printer, follow
from corral.model.errors import Gone
from corral.model.kinds import BY_KIND
from corral.model.resources import Container, ContainerSpec, ObjectMeta
from tests.fixtures.control import RunningControl


async def test_get_watch_from_a_version_the_api_no_longer_keeps_prints_what_changed_meanwhile(
        control_plane: RunningControl) -> None:
    lines: list[str] = []
    printed = asyncio.Event()
    name = f"gw-{uuid.uuid4().hex[:8]}"

    def echo(line: str) -> None:
        lines.append(line)
        if name in line:
            printed.set()

    only_it = f"metadata.name={name}"
    async with ApiClient(control_plane.url, control_plane.admin_token, ssl_context=control_plane.ssl) as client:
        await client.create(Container(metadata=ObjectMeta(name=name, namespace="default"),
                                      spec=ContainerSpec(image="127.0.0.1:5000/busybox:1")))
        with pytest.raises(Gone):  # revision 1 is older than what the API keeps
            async for _ in client.watch(Container, namespace="default", resource_version="1"):
                break
        printer = Printer(BY_KIND["Container"], "table", all_namespaces=False, ctx=tables.Context(), echo=echo)
        printer.widths = [12] * 8
        # what a `get -w` started long ago would hold: nothing yet, at revision 1 (long compacted from the cache)
        watching = asyncio.create_task(follow(client, printer, namespace="default", items=[], rv="1",
                                              label_selector="", field_selector=only_it))
        try:
            await asyncio.wait_for(printed.wait(), 10)  # 410, list again: the container made meanwhile is a row
            await client.delete(Container, name, grace_period=0)
            await asyncio.wait_for(_rows_of(lines, name, 2), 10)  # and it follows changes afterwards
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching


async def _rows_of(lines: list[str], name: str, n: int) -> None:
    while sum(1 for line in lines if line.split()[:1] == [name]) < n:
        await asyncio.sleep(0.05)
