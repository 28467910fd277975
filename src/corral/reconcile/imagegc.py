"""Image garbage collection and disk pressure on a node, from the image filesystem's fill level.

Every ``period`` seconds ``ImageGC.run_once``:

1. lists containerd's containers: their images are *in use* (never removed) and their last-used
   time becomes now;
2. reads the image filesystem's fill level (``statvfs`` of ``image_fs``, as ``df`` counts it: used
   over what an unprivileged user could have);
3. when it is at or above ``high`` percent, removes unused images, least recently used first (never
   seen in use: by the time containerd last updated their record), sparing those younger than
   ``min_age`` (just pulled for a container about to start), until the sizes of the removed images
   add up to what brings the filesystem down to ``low`` percent. Each removal is reported through
   ``on_removed`` (the agent turns it into an Event on its Node). Removal is ``Images.Delete`` with
   containerd's own synchronous GC, so the blobs and snapshots only that image held go too;
4. reports whether the filesystem is at or above ``pressure`` percent (*after* the removals): the
   agent's ``DiskPressure`` Node condition.

An image's size is what its manifest names (config and compressed layers) — an estimate of what
its removal frees, as the kubelet uses.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from corral.model.errors import CorralError, NotFound
from corral.runtime import containers as ctrs
from corral.runtime import images
from corral.runtime._pb.containerd.services.images.v1 import images_pb2
from corral.runtime.client import Client

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Usage:
    used: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.used / self.total if self.total else 0.0


def fs_usage(path: Path) -> Usage:
    """How full the filesystem holding ``path`` is (blocking; ``df``'s arithmetic)."""
    st = os.statvfs(path)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    return Usage(used=used, total=used + st.f_bavail * st.f_frsize)


@dataclass
class ImageGCConfig:
    image_fs: Path
    high: int = 85
    low: int = 80
    pressure: int = 90
    min_age: float = 120.0
    period: float = 10.0


@dataclass
class GCResult:
    usage: Usage
    removed: list[str] = field(default_factory=list)
    pressure: bool = False


class ImageGC:
    def __init__(self, client: Client, cfg: ImageGCConfig, *,
                 on_removed: Callable[[str, int, Usage], None],
                 on_pressure: Callable[[bool, Usage], Awaitable[None]] | None = None,
                 usage: Callable[[Path], Usage] = fs_usage) -> None:
        self.client = client
        self.cfg = cfg
        self.on_removed = on_removed
        self.on_pressure = on_pressure
        self.usage = usage
        self.last_used: dict[str, float] = {}

    async def run_once(self) -> GCResult:
        now = time.time()
        in_use = {info.image for info in await ctrs.list_containers(self.client)}
        for name in in_use:
            self.last_used[name] = now
        usage = await asyncio.to_thread(self.usage, self.cfg.image_fs)
        result = GCResult(usage=usage)
        if usage.total and usage.percent >= self.cfg.high:
            to_free = usage.used - usage.total * self.cfg.low // 100
            reply = await self.client.call(self.client.images.List, images_pb2.ListImagesRequest())
            candidates = []
            for record in reply.images:
                if record.name in in_use:
                    continue
                stamp = record.updated_at.seconds or record.created_at.seconds
                if now - stamp < self.cfg.min_age and record.name not in self.last_used:
                    continue  # just pulled: a container may be about to use it
                candidates.append((self.last_used.get(record.name, float(stamp)), record))
            candidates.sort(key=lambda pair: pair[0])
            freed = 0
            for _, record in candidates:
                if freed >= to_free:
                    break
                size = await self._size(record)
                try:
                    await images.remove_image(self.client, record.name, sync=True)
                except CorralError as e:
                    log.warning("image GC could not remove %s: %s", record.name, e)
                    continue
                freed += size
                self.last_used.pop(record.name, None)
                result.removed.append(record.name)
                self.on_removed(record.name, size, usage)
            if result.removed:
                usage = result.usage = await asyncio.to_thread(self.usage, self.cfg.image_fs)
        result.pressure = bool(usage.total) and usage.percent >= self.cfg.pressure
        if self.on_pressure is not None:
            await self.on_pressure(result.pressure, usage)
        return result

    async def _size(self, record: images_pb2.Image) -> int:
        try:
            image = await images.resolve(self.client, record)
        except (NotFound, CorralError, ValueError):
            return int(record.target.size)
        return image.target_size + sum(layer.size for layer in image.layers)

    async def run_forever(self) -> None:
        while True:
            try:
                await self.run_once()
            except CorralError as e:
                log.warning("image GC pass failed: %s", e)
            await asyncio.sleep(self.cfg.period)


__all__ = ["GCResult", "ImageGC", "ImageGCConfig", "Usage", "fs_usage"]
