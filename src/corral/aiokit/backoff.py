"""Exponential back-off for restarting something that keeps failing.

``Backoff.next()`` gives the delay before the next attempt: ``initial`` doubled per failure up to
``maximum``. A thing that then stays up for ``reset_after`` seconds has recovered: ``succeeded``
(or ``ran_for``) resets the delay, so a crash once a day restarts at once rather than after the
cap it reached during some bad hour. Pure; the caller sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Backoff:
    initial: float = 0.2
    maximum: float = 30.0
    factor: float = 2.0
    reset_after: float = 60.0
    failures: int = 0

    def next(self) -> float:
        """The delay before the next attempt (and count this failure)."""
        delay = min(self.initial * self.factor**self.failures, self.maximum)
        self.failures += 1
        return delay

    def ran_for(self, seconds: float) -> None:
        """The thing ran this long before it failed: long enough, and the delays start over."""
        if seconds >= self.reset_after:
            self.failures = 0

    def succeeded(self) -> None:
        self.failures = 0
