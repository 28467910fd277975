"""Cron schedules: five fields (minute hour day-of-month month day-of-week) in a time zone.

The parsing and the arithmetic of "the next time after t" are croniter's (a well-kept library,
pallets-eco; it knows ranges, steps, names and the day-of-month/day-of-week OR rule of Vixie cron).
This module fixes what corral accepts: exactly five fields (no seconds, no ``@reboot``; the
``@hourly``-style macros are allowed), and a time zone from the system's tz database
(``zoneinfo``); the empty zone is UTC. Times in and out are aware ``datetime``s.

croniter (with dateutil) is imported on first use, not with this module: validation imports this
module for every process, and a worker never reads a schedule (0.5 MiB and 24 modules of its memory).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def zone(name: str) -> tzinfo:
    """The named zone (UTC when empty); ValueError when the tz database does not know it."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"time zone {name!r} is not in the tz database (e.g. 'Europe/Paris', 'UTC')") from None


def schedule_problem(schedule: str, time_zone: str = "") -> str | None:
    """Why ``schedule`` (in ``time_zone``) cannot be used, or None."""
    try:
        zone(time_zone)
    except ValueError as e:
        return str(e)
    text = schedule.strip()
    if not text:
        return "is required, e.g. '*/5 * * * *' (every five minutes)"
    if text.startswith("@"):
        return None if text in MACROS else f"{text!r} is not one of {', '.join(MACROS)}"
    if len(text.split()) != 5:
        return f"{text!r} must have five fields: minute hour day-of-month month day-of-week"
    from croniter import croniter

    if not croniter.is_valid(text):
        return f"{text!r} is not a valid cron schedule"
    return None


def times_after(schedule: str, time_zone: str, start: datetime) -> Iterator[datetime]:
    """The scheduled times strictly after ``start``, in order, in UTC (endless)."""
    from croniter import croniter

    it = croniter(schedule.strip(), start.astimezone(zone(time_zone)))
    while True:
        yield it.get_next(datetime).astimezone(UTC)
