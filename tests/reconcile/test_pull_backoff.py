"""The image pull back-off: 10 s doubling to 5 minutes per (container, image), not tried before its time."""

from __future__ import annotations

import pytest

from corral.reconcile.containers import ImagePullBackOff, PullBackoff


def test_failed_pulls_wait_10s_doubling_to_5_minutes_and_a_success_forgets_them() -> None:
    now = [100.0]
    backoff = PullBackoff(clock=lambda: now[0])
    key = ("uid-1", "registry.test/app:1")
    backoff.check(key)  # nothing failed yet: pull
    assert [backoff.failed(key, "pulling registry.test/app:1: not found") for _ in range(7)] == [
        10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0]
    with pytest.raises(ImagePullBackOff) as caught:
        backoff.check(key)
    assert caught.value.delay == 300.0 and caught.value.reason == "ImagePullBackOff"
    assert caught.value.message == ("back-off pulling registry.test/app:1 after 7 failed pulls: "
                                    "pulling registry.test/app:1: not found")
    backoff.check(("uid-2", "registry.test/app:1"))  # another container's pull is its own
    now[0] += 299.0
    with pytest.raises(ImagePullBackOff):
        backoff.check(key)
    now[0] += 1.0
    backoff.check(key)  # due
    backoff.forget("uid-1")
    assert backoff.failed(key, "again") == 10.0  # counted from the start again
