"""What the benchmark scripts share: process CPU and memory from /proc, percentiles, and waiting
for the parts they start (a file, a ready API, a registered node).

The scripts run as ``python benchmarks/bench_<what>.py``, so this folder is on ``sys.path`` and they
import it as ``harness``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from pathlib import Path

import aiohttp

from corral.api.client import ApiClient
from corral.model.errors import CorralError
from corral.model.resources import Node
from corral.tls.contexts import client_context

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """Resident memory now (``VmRSS``) or at its peak (``VmHWM``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; NaN for no values."""
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


async def wait_file(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} did not appear")
        await asyncio.sleep(0.1)


def trust(data_dir: Path) -> ssl.SSLContext:
    """A client TLS context trusting the cluster CA that ``corral serve --data-dir data_dir`` made."""
    return client_context((data_dir / "tls" / "ca.crt").read_bytes())


async def wait_ready(url: str, timeout: float = 60, *, data_dir: Path | None = None) -> None:
    """Until the API at ``url`` answers ``/readyz`` with 200 (over HTTPS trusting the CA in
    ``data_dir``, once it is written)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                tls: ssl.SSLContext | bool = trust(data_dir) if data_dir is not None and url.startswith("https") else False
                async with s.get(url + "/readyz", ssl=tls) as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise SystemExit(f"the control plane at {url} was not ready in {timeout:g}s")


async def wait_node(api: ApiClient, name: str, timeout: float = 20) -> None:
    """Until the Node ``name`` is registered."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await api.get(Node, name)
            return
        except CorralError:
            if time.monotonic() > deadline:
                raise SystemExit(f"node {name} did not register in {timeout:g}s") from None
            await asyncio.sleep(0.1)
