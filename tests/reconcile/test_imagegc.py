"""Image GC's choices against the real containerd: least recently used first, only as much as needed,
never an image in use, never a fresh one; and the pressure it reports."""

from __future__ import annotations

from pathlib import Path

from corral.reconcile.imagegc import ImageGC, ImageGCConfig, Usage
from corral.runtime import images
from corral.runtime.client import Client
from corral.runtime.images import Image
from tests.runtime.test_exec import running


async def test_gc_removes_the_least_recently_used_unused_images_until_enough_is_freed(
    ctr_client: Client, busybox_image: Image
) -> None:
    names = ["gc.test/a:1", "gc.test/b:1", "gc.test/c:1"]
    size = busybox_image.target_size + sum(layer.size for layer in busybox_image.layers)
    for name in names:
        await images.create_image(ctr_client, name, digest=busybox_image.target_digest,
                                  media_type=busybox_image.target_media_type, size=busybox_image.target_size)
    removed: list[str] = []
    # 50 % full of 100 image sizes; GC down to 48 %: two images' worth to free
    gc = ImageGC(ctr_client, ImageGCConfig(image_fs=Path("/"), high=50, low=48, pressure=60, min_age=0),
                 on_removed=lambda name, _size, _usage: removed.append(name),
                 usage=lambda _path: Usage(used=50 * size, total=100 * size))
    gc.last_used.update({"gc.test/a:1": 300.0, "gc.test/b:1": 100.0, "gc.test/c:1": 200.0})
    try:
        async with running(ctr_client, busybox_image):  # its image is in use, and oldest of all
            gc.last_used[busybox_image.name] = 1.0
            result = await gc.run_once()
            assert removed == ["gc.test/b:1", "gc.test/c:1"] == result.removed
            left = await images.image_names(ctr_client)
            assert "gc.test/a:1" in left and busybox_image.name in left
            assert not result.pressure
    finally:
        for name in names:
            await images.remove_image(ctr_client, name)


async def test_gc_spares_fresh_images_and_does_nothing_under_the_high_mark(ctr_client: Client,
                                                                            busybox_image: Image) -> None:
    await images.create_image(ctr_client, "gc.test/fresh:1", digest=busybox_image.target_digest,
                              media_type=busybox_image.target_media_type, size=busybox_image.target_size)
    removed: list[str] = []
    try:
        full = ImageGC(ctr_client, ImageGCConfig(image_fs=Path("/"), high=50, low=0, pressure=90, min_age=3600),
                       on_removed=lambda name, _s, _u: removed.append(name),
                       usage=lambda _p: Usage(used=95, total=100))
        result = await full.run_once()
        assert "gc.test/fresh:1" not in removed and result.pressure
        calm = ImageGC(ctr_client, ImageGCConfig(image_fs=Path("/"), high=50, low=0, pressure=90, min_age=0),
                       on_removed=lambda name, _s, _u: removed.append(name),
                       usage=lambda _p: Usage(used=10, total=100))
        assert (await calm.run_once()).removed == []
        assert "gc.test/fresh:1" in await images.image_names(ctr_client)
    finally:
        await images.remove_image(ctr_client, "gc.test/fresh:1")
