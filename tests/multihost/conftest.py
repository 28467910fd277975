"""What the multi-host tests share: an httpd that tells each client the address it saw, and a client.

The server is busybox ``httpd`` with one CGI script (``/cgi-bin/peer``) that answers ``peer=<REMOTE_ADDR>``:
the client's log then shows which source address reached the server — its own container IP when
nothing in between NATs it.
"""

from __future__ import annotations

from corral.model.resources import Container, ContainerSpec, ObjectMeta
from tests.fixtures.cluster import eventually
from tests.fixtures.hosts import Hosts

SERVER_SCRIPT = (
    "mkdir -p /www/cgi-bin && "
    "printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho peer=$REMOTE_ADDR\\n' > /www/cgi-bin/peer && "
    "chmod +x /www/cgi-bin/peer && exec httpd -f -p 8080 -h /www"
)


def server(name: str, *, node: str, image: str) -> Container:
    return Container(metadata=ObjectMeta(name=name, labels={"test": "multihost"}),
                     spec=ContainerSpec(image=image, command=["sh", "-c", SERVER_SCRIPT], node=node,
                                        termination_grace_period_seconds=0))


def client(name: str, *, node: str, image: str, urls: list[str]) -> Container:
    """Fetches every URL (retrying each for up to 30 s), printing the answers; exits 1 if one never answers."""
    fetches = " && ".join(
        f"(for i in $(seq 1 30); do timeout 3 wget -q -O- {url} && exit 0; sleep 1; done; exit 1)" for url in urls)
    return Container(metadata=ObjectMeta(name=name, labels={"test": "multihost"}),
                     spec=ContainerSpec(image=image, command=["sh", "-c", fetches], node=node,
                                        restart_policy="Never", termination_grace_period_seconds=0))


def peers_seen(output: str) -> list[str]:
    """The addresses the servers saw, from a client's output (httpd writes IPv4 as ``[::ffff:a.b.c.d]``)."""
    return [line.removeprefix("peer=").strip("[]").removeprefix("::ffff:")
            for line in output.split() if line.startswith("peer=")]


async def wait_running(hosts: Hosts, name: str, *, timeout: float = 90.0) -> Container:
    async def running() -> Container:
        c = await hosts.api.get(Container, name)
        assert c.status.phase == "Running" and c.status.ip, f"{name}: {c.status.phase} {c.status.message}"
        return c

    return await eventually(running, timeout=timeout, what=f"{name} runs")


async def fetch_from(hosts: Hosts, name: str, *, node: str, urls: list[str], timeout: float = 120.0) -> tuple[str, str]:
    """Run a client on ``node`` that fetches ``urls``; (its container IP, its output). Fails if it failed."""
    await hosts.api.create(client(name, node=node, image=hosts.image, urls=urls))

    async def finished() -> Container:
        c = await hosts.api.get(Container, name)
        assert c.status.phase in ("Succeeded", "Failed"), f"{name}: {c.status.phase} {c.status.message}"
        return c

    done = await eventually(finished, timeout=timeout, what=f"{name} finishes")
    logs = (await hosts.api.request("GET", f"/namespaces/default/containers/{name}/logs")).decode()
    assert done.status.phase == "Succeeded", f"{name} failed ({done.status.exit_code}); its output:\n{logs}"
    return done.status.ip, logs
