"""Exponential back-off, the one way corral waits before trying again.

``exponential(failures, initial=…, maximum=…)`` is the pure formula (the work queue's per-key
backoff, a container's restart back-off, a Job's). ``Backoff`` keeps the count for a loop that
retries one thing (reconnects, registration, a supervised child): ``Backoff.next()`` gives the delay before the next attempt: ``initial`` doubled per failure up to
``maximum``. A thing that then stays up for ``reset_after`` seconds has recovered: ``succeeded``
(or ``ran_for``) resets the delay, so a crash once a day restarts at once rather than after the
cap it reached during some bad hour. Pure; the caller sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass


def exponential(failures: int, *, initial: float, maximum: float, factor: float = 2.0) -> float:
    """The delay after ``failures`` failures in a row: ``initial`` for the first retry (0 before
    it), times ``factor`` per further failure, at most ``maximum``."""
    return float(min(initial * factor ** min(max(failures, 0), 64), maximum))


@dataclass
class Backoff:
    initial: float = 0.2
    maximum: float = 30.0
    factor: float = 2.0
    reset_after: float = 60.0
    failures: int = 0

    def next(self) -> float:
        """The delay before the next attempt (and count this failure)."""
        delay = exponential(self.failures, initial=self.initial, maximum=self.maximum, factor=self.factor)
        self.failures += 1
        return delay

    def ran_for(self, seconds: float) -> None:
        """The thing ran this long before it failed: long enough, and the delays start over."""
        if seconds >= self.reset_after:
            self.failures = 0

    def succeeded(self) -> None:
        self.failures = 0
