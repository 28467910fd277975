"""Pull progress in status.pull: the tally of a pull's blobs, and how often (and over what) it is written.

The API here is a recorder of status writes (the writes themselves are tested against the real API
in tests/flow/test_pull_progress.py); what is tested is the reporter's own logic.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import msgspec
import pytest

from corral.api.client import ApiClient
from corral.model import errors
from corral.model.resources import MAX_PULL_LAYERS, Container, ContainerStatus, ObjectMeta, PullStatus
from corral.roles.agentpulls import PullTally, reporting_pulls
from corral.runtime.pull import PullProgress


class RecordingApi:
    def __init__(self, *, conflict_after: int | None = None, delay: float = 0.0) -> None:
        self.writes: list[Container] = []
        self.conflict_after = conflict_after
        self.delay = delay

    async def update_status(self, obj: Container) -> Container:
        await asyncio.sleep(self.delay)
        if self.conflict_after is not None and len(self.writes) >= self.conflict_after:
            raise errors.Conflict("the object has been modified")
        written = msgspec.structs.replace(obj, metadata=msgspec.structs.replace(
            obj.metadata, resource_version=str(int(obj.metadata.resource_version) + 1)))
        self.writes.append(written)
        return written


def _container() -> Container:
    return Container(metadata=ObjectMeta(name="web", namespace="default", resource_version="10"),
                     status=ContainerStatus(phase="Pending", node="n1"))


def _event(digest: str, done: int, total: int) -> PullProgress:
    return PullProgress("reg/app:1", digest, done, total)


def test_the_tally_keeps_each_blob_once_in_first_seen_order_and_sums_the_bytes() -> None:
    tally = PullTally()
    tally.add(_event("sha256:b", 0, 100))
    tally.add(_event("sha256:a", 5, 10))
    tally.add(_event("sha256:b", 60, 100))
    status = tally.status()
    assert status.image == "reg/app:1"
    assert [(x.digest, x.done, x.size) for x in status.layers] == [("sha256:b", 60, 100), ("sha256:a", 5, 10)]
    assert (status.bytes_done, status.bytes_total) == (65, 110)


def test_the_tally_stops_taking_new_blobs_at_the_cap_the_api_accepts() -> None:
    tally = PullTally()
    for i in range(MAX_PULL_LAYERS + 10):
        tally.add(_event(f"sha256:{i}", 1, 1))
    assert len(tally.status().layers) == MAX_PULL_LAYERS


async def test_a_pass_without_progress_writes_nothing_and_starts_no_writer() -> None:
    api = RecordingApi()
    async with reporting_pulls(cast(ApiClient, api), _container()) as report:
        await asyncio.sleep(0.05)
    assert api.writes == [] and report.written is None and report._writer is None  # not even a task


async def test_progress_is_written_at_once_then_at_most_once_an_interval_each_over_the_last_version() -> None:
    api = RecordingApi()
    seen: list[str] = []
    async with reporting_pulls(cast(ApiClient, api), _container(), interval=0.2,
                               on_written=lambda c: seen.append(c.metadata.resource_version)) as report:
        for i in range(50):  # a second of progress events, 50 a second
            report.progress(_event("sha256:a", i, 50))
            await asyncio.sleep(0.02)
    assert 2 <= len(api.writes) <= 7, len(api.writes)  # ~1 s / 0.2 s, plus the first
    first = api.writes[0].status.pull
    assert first is not None and first.layers[0].done == 0  # the first event, written at once
    # each write over the version the one before returned, so none overwrote another's change
    assert [w.metadata.resource_version for w in api.writes] == [str(11 + i) for i in range(len(api.writes))]
    assert seen == [w.metadata.resource_version for w in api.writes]
    assert report.written is api.writes[-1]
    assert api.writes[-1].status.phase == "Pending" and api.writes[-1].status.node == "n1"


async def test_the_end_of_a_pass_waits_for_the_write_in_flight_so_written_is_the_servers_version() -> None:
    api = RecordingApi(delay=0.2)
    async with reporting_pulls(cast(ApiClient, api), _container()) as report:
        report.progress(_event("sha256:a", 1, 2))
        await asyncio.sleep(0.05)  # the write is under way when the pass ends
    assert len(api.writes) == 1 and report.written is api.writes[0]


async def test_a_conflict_ends_the_reporting_of_that_pass() -> None:
    api = RecordingApi(conflict_after=1)
    async with reporting_pulls(cast(ApiClient, api), _container(), interval=0.01) as report:
        for i in range(20):
            report.progress(_event("sha256:a", i, 20))
            await asyncio.sleep(0.01)
    assert len(api.writes) == 1 and report.written is api.writes[0]


async def test_a_pass_failing_after_progress_clears_it_and_raises_its_own_error() -> None:
    api: Any = RecordingApi()
    with pytest.raises(errors.Unavailable, match="start failed"):
        async with reporting_pulls(cast(ApiClient, api), _container()) as report:
            report.progress(_event("sha256:a", 2, 2))
            await asyncio.sleep(0.05)  # the progress is written
            raise errors.Unavailable("start failed")
    assert [w.status.pull is not None for w in api.writes] == [True, False]
    assert report.written is api.writes[-1] and api.writes[-1].status.phase == "Pending"


async def test_a_failing_pass_clears_progress_an_earlier_pass_left() -> None:
    api: Any = RecordingApi()
    left = _container()
    left.status.pull = PullStatus(image="reg/app:1")
    with pytest.raises(errors.Unavailable):
        async with reporting_pulls(cast(ApiClient, api), left):
            raise errors.Unavailable("start failed")
    assert len(api.writes) == 1 and api.writes[0].status.pull is None
    api.writes.clear()
    with pytest.raises(errors.Unavailable):  # nothing to clear: nothing written
        async with reporting_pulls(cast(ApiClient, api), _container()):
            raise errors.Unavailable("start failed")
    assert api.writes == []
