"""``corral run --wait`` draws the image pull its node's agent reports in ``status.pull``.

An image of three layers (busybox, then two of incompressible bytes) is pushed to the test registry
under a fresh name, so the worker must pull it; the container's watch must show ``status.pull``
(every blob, with sizes) before the container is Running, and none once it is; the CLI, its bars
forced on, draws a bar per layer. A second container of the same image (present by then) gets no
pull status at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
import uuid

import aiohttp
import pytest

from corral.model.resources import Container, ContainerSpec, ObjectMeta
from corral.runtime.distribution import host_platform
from corral.runtime.imagebuild import BUSYBOX, MEDIA_CONFIG, MEDIA_LAYER_GZIP, MEDIA_MANIFEST, PATH_ENV, rootfs_tar
from tests.cli.test_image_pull import run_on_a_terminal
from tests.fixtures.cluster import Cluster, eventually
from tests.fixtures.registry import Registry

NOISE_BYTES = 6 << 20  # per noise layer: random, so gzip keeps it this big


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _noise_layer(name: str) -> bytes:
    out = io.BytesIO()
    data = os.urandom(NOISE_BYTES)
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def layered_image() -> tuple[list[bytes], bytes, bytes]:
    """Three gzip layers (busybox with a fresh marker, two of noise), the config and the manifest."""
    tars = [rootfs_tar(BUSYBOX.read_bytes() + uuid.uuid4().bytes), _noise_layer("noise-1"), _noise_layer("noise-2")]
    layers = [gzip.compress(t, compresslevel=1, mtime=0) for t in tars]
    platform = host_platform()
    config = json.dumps({
        "architecture": platform.architecture, "os": platform.os,
        "config": {"Env": [PATH_ENV], "Cmd": ["sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [_digest(t) for t in tars]},
    }).encode()  # fmt: skip
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": MEDIA_LAYER_GZIP, "digest": _digest(x), "size": len(x)} for x in layers],
    }).encode()  # fmt: skip
    return layers, config, manifest


async def push_layered(registry: Registry, repository: str, tag: str) -> list[str]:
    """Push ``layered_image()`` over the distribution API (monolithic uploads); its blobs' digests."""
    layers, config, manifest = await asyncio.to_thread(layered_image)
    base = f"http://{registry.host}/v2/{repository}"
    async with aiohttp.ClientSession() as session:
        for blob in [*layers, config]:
            async with session.post(f"{base}/blobs/uploads/") as resp:
                assert resp.status == 202, await resp.text()
                location = resp.headers["Location"]
            sep = "&" if "?" in location else "?"
            url = location if location.startswith("http") else f"http://{registry.host}{location}"
            async with session.put(f"{url}{sep}digest={_digest(blob)}", data=blob,
                                   headers={"Content-Type": "application/octet-stream"}) as resp:
                assert resp.status == 201, await resp.text()
        async with session.put(f"{base}/manifests/{tag}", data=manifest,
                               headers={"Content-Type": MEDIA_MANIFEST}) as resp:
            assert resp.status == 201, await resp.text()
    return [_digest(x) for x in layers] + [_digest(config)]


async def corral_run(cluster: Cluster, name: str, image: str, *extra: str,
                     command: tuple[str, ...] = ("sleep", "3600")) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "corral.cli.main", "run", name, "--image", image, "--wait", "--timeout", "90",
        "--server", cluster.plane.url, "--token", cluster.plane.admin_token, *extra, "--", *command,
        env={**os.environ, "CORRAL_CA": str(cluster.plane.ca_file)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def watch_statuses(cluster: Cluster, name: str, seen: list[Container]) -> None:
    async for ev in cluster.api.watch(Container, field_selector=f"metadata.name={name}"):
        seen.append(ev.object)


async def test_run_wait_draws_the_pull_the_agent_reports_and_a_present_image_reports_none(cluster: Cluster) -> None:
    image = f"{cluster.registry.host}/layered-{uuid.uuid4().hex[:8]}:1"
    repository, tag = image.split("/", 1)[1].split(":")
    blobs = await push_layered(cluster.registry, repository, tag)
    first, second = f"pp-{uuid.uuid4().hex[:6]}", f"pp-{uuid.uuid4().hex[:6]}"
    seen_first: list[Container] = []
    seen_second: list[Container] = []
    watchers = [asyncio.create_task(watch_statuses(cluster, first, seen_first)),
                asyncio.create_task(watch_statuses(cluster, second, seen_second))]
    try:
        await asyncio.sleep(0.5)  # the watches are open before the containers exist
        code, out = await corral_run(cluster, first, image, "--progress", "always")
        assert code == 0, out
        for digest in blobs:
            assert digest.removeprefix("sha256:")[:12] in out, out  # a bar per blob, labelled by digest
        assert "━" in out and f"pulling {image} on {cluster.worker.name}" in out, out
        assert f'container "{first}" is Running' in out, out

        running_at = next(i for i, c in enumerate(seen_first) if c.status.phase == "Running")
        pulls = [c.status.pull for c in seen_first[:running_at] if c.status.pull is not None]
        assert pulls, [c.status for c in seen_first]
        last = pulls[-1]
        assert last.image == image and last.layers and {x.digest for x in last.layers} <= set(blobs)
        assert last.bytes_total >= 2 * NOISE_BYTES or len(last.layers) < len(blobs)
        assert all(0 <= x.done <= x.size for x in last.layers)
        assert len(pulls) <= 20, f"{len(pulls)} progress writes for one pull: not rate-limited"
        assert all(c.status.pull is None for c in seen_first[running_at:])

        # the image is there now: no pull, no progress written, no bars off a terminal
        code, out = await corral_run(cluster, second, image)
        assert code == 0, out
        assert "━" not in out and "pulling" not in out, out
        await eventually(lambda: _running(seen_second), what="the second container's watch shows Running")
        assert all(c.status.pull is None for c in seen_second)
    finally:
        for task in watchers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for name in (first, second):
            with contextlib.suppress(Exception):
                await cluster.api.delete(Container, name, grace_period=0)


async def _running(seen: list[Container]) -> None:
    assert any(c.status.phase == "Running" for c in seen)


async def test_run_wait_exits_1_at_the_timeout_naming_the_state_it_was_stuck_in(cluster: Cluster) -> None:
    stuck = f"pf-{uuid.uuid4().hex[:6]}"
    try:
        code, out = await corral_run(cluster, stuck, "127.0.0.1:1/none:1", "--timeout", "8")
        assert code == 1 and f'timed out after 8s waiting for container "{stuck}"' in out, out
        assert "ImagePullFailed" in out or "ImagePullBackOff" in out, out
    finally:
        with contextlib.suppress(Exception):
            await cluster.api.delete(Container, stuck, grace_period=0)


async def test_progress_does_not_stay_behind_when_the_pass_fails_after_the_pull(cluster: Cluster) -> None:
    image = f"{cluster.registry.host}/layered-{uuid.uuid4().hex[:8]}:1"
    repository, tag = image.split("/", 1)[1].split(":")
    await push_layered(cluster.registry, repository, tag)
    name = f"pf-{uuid.uuid4().hex[:6]}"
    seen: list[Container] = []
    watcher = asyncio.create_task(watch_statuses(cluster, name, seen))
    try:
        await asyncio.sleep(0.5)
        ctr = Container(metadata=ObjectMeta(name=name),
                        spec=ContainerSpec(image=image, command=["/no/such/binary"]))  # pulled, then cannot start
        await cluster.api.create(ctr)

        async def pulled_then_cleared() -> None:
            assert any(c.status.pull is not None for c in seen), "no progress was reported"
            assert (await cluster.api.get(Container, name)).status.pull is None

        await eventually(pulled_then_cleared, timeout=60, what="the progress is written, then cleared")
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher
        with contextlib.suppress(Exception):
            await cluster.api.delete(Container, name, grace_period=0)


async def test_on_a_real_terminal_run_wait_draws_the_bars_by_itself(cluster: Cluster,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    image = f"{cluster.registry.host}/layered-{uuid.uuid4().hex[:8]}:1"
    repository, tag = image.split("/", 1)[1].split(":")
    blobs = await push_layered(cluster.registry, repository, tag)
    name = f"pt-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("CORRAL_CA", str(cluster.plane.ca_file))  # the child inherits the environment
    for var in ("NO_COLOR", "FORCE_COLOR", "TERM"):
        monkeypatch.delenv(var, raising=False)
    try:
        code, shown = await run_on_a_terminal([
            "-m", "corral.cli.main", "run", name, "--image", image, "--wait", "--timeout", "90",
            "--server", cluster.plane.url, "--token", cluster.plane.admin_token, "--", "sleep", "3600"])
        assert code == 0, shown
        assert "━" in shown and blobs[-1].removeprefix("sha256:")[:12] in shown, shown
        assert f'container "{name}" is Running' in shown, shown
    finally:
        with contextlib.suppress(Exception):
            await cluster.api.delete(Container, name, grace_period=0)
