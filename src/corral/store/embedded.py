"""An embedded etcd: a child ``etcd`` process on free loopback ports with its data under a directory.

``corral serve`` uses it when no ``--etcd`` is given, and the tests use it as their etcd. Two
instances on one machine never collide: each picks its own free ports and its own data directory.
The child is asked to stop with SIGTERM and killed if it does not within a few seconds.

It runs as an ``aiokit.processes.ChildProcess``: it gets SIGTERM when its parent dies (even by
SIGKILL), its pid is kept in ``<data_dir>.pid``, and ``start`` first ends a leftover etcd of an
earlier run on the same data dir (one that would hold the data dir's lock). ``start`` again after
it died reuses the same ports, so clients that know the endpoint reconnect; ``wait`` lets a
``Supervisor`` restart it.

With ``tls`` (what ``corral serve`` gives it: certificates from the cluster CA) it serves clients
over HTTPS only and requires a client certificate signed by that CA (``--client-cert-auth``), so
another local user cannot read or write the cluster's records through its port; ``client_tls()``
is what the control plane connects with. Its peer port stays plaintext on loopback (one member).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from corral.aiokit.processes import ChildProcess
from corral.model.errors import Unavailable
from corral.store.etcd import EtcdTls
from corral.tls.contexts import client_context

INSTALL_HINT = "install it with `scripts/install-deps.sh` (Debian packages etcd-server etcd-client)"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _find_etcd() -> str | None:
    return shutil.which("etcd") or ("/usr/bin/etcd" if os.path.exists("/usr/bin/etcd") else None)


@dataclass(frozen=True)
class EtcdServerTls:
    """The embedded etcd's serving certificate, the CA its clients must chain to, and the client
    certificate the control plane presents (all PEM files)."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    client_cert_file: Path
    client_key_file: Path


@dataclass
class EmbeddedEtcd:
    data_dir: Path
    host: str = "127.0.0.1"
    client_port: int = 0
    peer_port: int = 0
    log_path: Path | None = None
    tls: EtcdServerTls | None = None
    _child: ChildProcess | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.client_port}"

    def client_tls(self) -> EtcdTls | None:
        """How a client connects (None: plaintext)."""
        if self.tls is None:
            return None
        return EtcdTls(self.tls.ca_file, self.tls.client_cert_file, self.tls.client_key_file)

    def _tls_args(self) -> list[str]:
        if self.tls is None:
            return []
        return ["--cert-file", str(self.tls.cert_file), "--key-file", str(self.tls.key_file),
                "--client-cert-auth", "--trusted-ca-file", str(self.tls.ca_file)]

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child else None

    @property
    def pid_file(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.pid"

    async def start(self, *, timeout: float = 20.0) -> None:
        binary = await asyncio.to_thread(_find_etcd)
        if binary is None:
            raise Unavailable(f"etcd is not installed; {INSTALL_HINT}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.client_port = self.client_port or free_port(self.host)
        self.peer_port = self.peer_port or free_port(self.host)
        client = self.endpoint
        peer = f"http://{self.host}:{self.peer_port}"
        log_path = self.log_path or self.data_dir.parent / f"{self.data_dir.name}.log"
        self._child = ChildProcess(
            [
                binary,
                "--name", "corral",
                "--data-dir", str(self.data_dir),
                "--listen-client-urls", client,
                "--advertise-client-urls", client,
                "--listen-peer-urls", peer,
                "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"corral={peer}",
                "--initial-cluster-state", "new",
                "--auto-compaction-mode", "periodic",
                "--auto-compaction-retention", "1h",
                "--quota-backend-bytes", str(8 * 1024**3),
                "--logger", "zap",
                "--log-outputs", "stderr",
                *self._tls_args(),
            ],
            name="etcd", log_path=log_path, pid_file=self.pid_file, marker=str(self.data_dir),
        )  # fmt: skip
        await self._child.start()
        try:
            await self._wait_healthy(timeout)
        except BaseException:
            await self._child.kill()
            raise

    async def wait(self) -> int | None:
        """Its exit code once it exits (None at once when it is not running): for a Supervisor."""
        return await self._child.wait() if self._child is not None else None

    async def _wait_healthy(self, timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        tls = (client_context(self.tls.ca_file.read_bytes(), cert_file=self.tls.client_cert_file,
                              key_file=self.tls.client_key_file) if self.tls is not None else False)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls)) as http:
            while True:
                if self._child is not None and self._child.returncode is not None:
                    raise Unavailable(f"etcd exited with code {self._child.returncode}; see its log")
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with http.get(f"{self.endpoint}/health", timeout=aiohttp.ClientTimeout(1)) as r:
                        if r.status == 200 and (await r.json(content_type=None)).get("health") == "true":
                            return
                if asyncio.get_running_loop().time() > deadline:
                    raise Unavailable(f"etcd at {self.endpoint} did not become healthy in {timeout:.0f}s")
                await asyncio.sleep(0.05)

    async def stop(self, *, grace: float = 5.0) -> None:
        if self._child is not None:
            await self._child.stop(grace=grace)

    async def kill(self) -> None:
        """SIGKILL the child (tests of crash recovery)."""
        if self._child is not None:
            await self._child.kill()
