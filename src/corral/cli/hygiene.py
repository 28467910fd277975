"""The worker's node-hygiene flags of ``corral serve``: how many containers, how long logs are kept
after their container is deleted, when images are garbage-collected.

Kept in a module of their own (one decorator and one call in ``serve``) so the flags, their help and
their defaults live next to each other.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def _duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``1h``, ``2d``."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip()
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a duration (e.g. 90s, 15m, 1h)") from None


def hygiene_options(f: F) -> F:
    f = click.option("--disk-pressure", type=click.IntRange(1, 100), default=90, show_default=True, metavar="PERCENT",
                     help="[worker] From this fill level of the image filesystem the Node reports DiskPressure "
                          "and is tainted corral.io/disk-pressure:NoSchedule (no new containers).")(f)
    f = click.option("--image-fs", type=click.Path(path_type=Path), default=None, metavar="PATH",
                     help="[worker] A path on the filesystem holding containerd's images "
                          "(default: the data dir, where the embedded containerd keeps them).")(f)
    f = click.option("--image-gc-min-age", default="2m", show_default=True, metavar="DURATION",
                     help="[worker] Image GC never removes an image pulled more recently than this.")(f)
    f = click.option("--image-gc-low", type=click.IntRange(0, 100), default=80, show_default=True, metavar="PERCENT",
                     help="[worker] Image GC frees space until the image filesystem is at most this full.")(f)
    f = click.option("--image-gc-high", type=click.IntRange(0, 100), default=85, show_default=True, metavar="PERCENT",
                     help="[worker] Image GC starts when the image filesystem is this full: least recently used "
                          "images no container uses go first, an Event for each.")(f)
    f = click.option("--keep-logs", default="1h", show_default=True, metavar="DURATION",
                     help="[worker] Keep a deleted container's log this long (readable with `corral logs NAME`); "
                          "0 removes it with the container.")(f)
    f = click.option("--max-containers", type=click.IntRange(min=0), default=110, show_default=True,
                     help="[worker] The most containers this node takes (0: no limit).")(f)
    return f


def apply_hygiene(agent: Any, options: dict[str, Any]) -> None:
    """Copy the flags of ``hygiene_options`` onto an ``AgentConfig``."""
    low, high = options["image_gc_low"], options["image_gc_high"]
    if low > high:
        raise click.BadParameter(f"--image-gc-low {low} is above --image-gc-high {high}")
    agent.max_containers = options["max_containers"]
    agent.keep_logs = _duration(options["keep_logs"])
    agent.image_gc_high, agent.image_gc_low = high, low
    agent.image_gc_min_age = _duration(options["image_gc_min_age"])
    agent.image_fs = options["image_fs"]
    agent.disk_pressure = options["disk_pressure"]
