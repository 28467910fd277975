"""Back-off and retrying one call (aiokit/backoff.py, aiokit/retrying.py)."""

from __future__ import annotations

import time

import pytest

from corral.aiokit.backoff import Backoff, exponential
from corral.aiokit.retrying import retry_temporary
from corral.model.errors import Invalid, TemporaryError, Unavailable


def test_the_delay_doubles_per_failure_up_to_its_cap() -> None:
    assert [exponential(n, initial=0.5, maximum=4.0) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert exponential(10_000, initial=1.0, maximum=60.0) == 60.0  # no overflow however many


def test_a_backoff_starts_over_after_a_success() -> None:
    b = Backoff(initial=0.1, maximum=1.0)
    assert [b.next(), b.next(), b.next()] == [0.1, 0.2, 0.4]
    b.succeeded()
    assert b.next() == 0.1


async def test_a_call_is_retried_while_it_fails_temporarily_honouring_the_delay_it_names() -> None:
    failures: list[Exception] = [Unavailable("down"), TemporaryError("busy", delay=0.3)]
    calls: list[float] = []

    async def call() -> str:
        calls.append(time.monotonic())
        if failures:
            raise failures.pop(0)
        return "done"

    assert await retry_temporary(call, what="test", backoff=Backoff(initial=0.01)) == "done"
    assert len(calls) == 3 and calls[2] - calls[1] >= 0.29


async def test_any_other_error_ends_the_retries_at_once() -> None:
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        raise Invalid("spec.image is empty")

    with pytest.raises(Invalid):
        await retry_temporary(call, what="test")
    assert calls == 1
