"""An embedded containerd: a child ``containerd`` process with its root, state and socket under a directory.

``corral serve --all`` starts one when no containerd answers at the configured socket, and the tests
use one as their runtime. The child gets a generated ``config.toml`` (version 2) that keeps it apart
from any other containerd on the host: its own ``root`` (content, snapshots, metadata), ``state``
(shim bundles), gRPC socket (ttrpc beside it), ``opt`` directory, no debug or metrics listener, and
the CRI plugin and unused snapshotters disabled so it starts in well under a second. Shim sockets
are named from a hash of the containerd address, so two daemons never share one.

Unix socket paths are limited to 107 bytes; when ``base_dir`` is too deep the socket goes to a short
private directory under ``/tmp`` instead (removed on ``stop``). ``start`` waits until the socket
answers Version; ``stop`` sends SIGTERM and SIGKILLs after a grace; ``kill`` is SIGKILL (crash tests);
``start`` again reuses the same directories, so images and snapshots survive a restart.

It runs as an ``aiokit.processes.ChildProcess``: SIGTERM when its parent dies (even by SIGKILL;
shims, and so containers, outlive containerd by design), its pid in ``<base_dir>/containerd.pid``,
and a leftover containerd on the same config ended by ``start`` before a new one runs. ``wait``
lets a ``Supervisor`` restart it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from corral.aiokit.processes import ChildProcess
from corral.model.errors import Unavailable
from corral.runtime.client import Client
from corral.runtime.errors import INSTALL_HINT

_MAX_SOCKET_PATH = 100
_DISABLED_PLUGINS = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
)


def render_config(*, root: Path, state: Path, socket: str, opt: Path) -> str:
    """containerd's config.toml (version 2) for an embedded daemon. Pure."""
    disabled = ", ".join(f'"{p}"' for p in _DISABLED_PLUGINS)
    return f"""\
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [{disabled}]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.runtime.v1.linux"]
  shim = "containerd-shim"
  runtime = "runc"
  runtime_root = ""
  no_shim = false
  shim_debug = false
"""


class EmbeddedContainerd:
    """A containerd child process. ``await start()``, ``.socket`` for clients, ``await stop()``."""

    def __init__(self, base_dir: Path, *, log_path: Path | None = None) -> None:
        self.base_dir = base_dir
        self.log_path = log_path or base_dir / "containerd.log"
        self._child: ChildProcess | None = None
        self._short_dir: str | None = None
        socket = str(base_dir / "c.sock")
        if len(socket) > _MAX_SOCKET_PATH:
            self._short_dir = tempfile.mkdtemp(prefix="corral-ctd-")
            socket = os.path.join(self._short_dir, "c.sock")
        self._socket = socket

    @property
    def socket(self) -> str:
        return self._socket

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    @property
    def running(self) -> bool:
        return self._child is not None and self._child.running

    async def start(self, *, timeout: float = 30.0) -> None:
        binary = shutil.which("containerd")
        if binary is None:
            raise Unavailable(f"containerd is not installed; {INSTALL_HINT}")
        if shutil.which("runc") is None:
            raise Unavailable(f"runc is not installed; {INSTALL_HINT}")
        if self.running:
            return
        config = self.base_dir / "config.toml"
        await asyncio.to_thread(self._prepare_dirs, config)
        self._child = ChildProcess([binary, "--config", str(config)], name="containerd", log_path=self.log_path,
                                   pid_file=self.base_dir / "containerd.pid", marker=str(config))
        await self._child.start()
        try:
            await self._wait_ready(timeout)
        except BaseException:
            await self.kill()
            raise

    async def wait(self) -> int | None:
        """Its exit code once it exits (None at once when it is not running): for a Supervisor."""
        return await self._child.wait() if self._child is not None else None

    def _prepare_dirs(self, config: Path) -> None:
        for sub in ("root", "state", "opt"):
            (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._socket)  # a stale socket from a killed daemon
        config.write_text(
            render_config(
                root=self.base_dir / "root",
                state=self.base_dir / "state",
                socket=self._socket,
                opt=self.base_dir / "opt",
            )
        )

    async def _wait_ready(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        client = Client(self._socket, timeout=2.0)
        try:
            while True:
                if self._child is not None and self._child.returncode is not None:
                    raise Unavailable(
                        f"containerd exited with code {self._child.returncode} at start; see {self.log_path}"
                    )
                with contextlib.suppress(Unavailable):
                    await client.version()
                    return
                if loop.time() > deadline:
                    raise Unavailable(f"containerd at {self._socket} did not answer in {timeout:.0f}s; see {self.log_path}")
                await asyncio.sleep(0.05)
        finally:
            await client.close()

    async def stop(self, *, grace: float = 10.0, cleanup: bool = False) -> None:
        """SIGTERM, then SIGKILL after ``grace``. ``cleanup`` also removes the short socket dir.

        Shims (and so running containers) outlive containerd by design; stop them first.
        """
        if self._child is not None:
            await self._child.stop(grace=grace)
        if cleanup and self._short_dir is not None:
            shutil.rmtree(self._short_dir, ignore_errors=True)

    async def kill(self) -> None:
        """SIGKILL the daemon (tests of crash recovery); ``start`` brings it back on the same dirs."""
        if self._child is not None:
            await self._child.kill()
