"""Services end to end on one real worker: Endpoints, the nftables proxy, and DNS from inside containers.

A Deployment of httpd replicas answers each with its own hostname. Traffic is sent from inside
containers: from client containers whose command does the work (their logs are read back), or by
running the host's busybox inside a container's network namespace (``nsenter --net``). DNS names
outside the cluster are forwarded only to a resolver this test runs on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from dnslib import QTYPE, RR, A, DNSRecord

from corral.model.resources import (
    Container,
    ContainerPort,
    ContainerSpec,
    ContainerTemplate,
    Deployment,
    DeploymentSpec,
    Endpoints,
    ExecAction,
    LabelSelector,
    ObjectMeta,
    Probe,
    Service,
    ServicePort,
    ServiceSpec,
    TemplateMeta,
)
from corral.network.attachments import Network
from corral.network.config import NetworkConfig
from corral.network.nftables import nft_command
from corral.reconcile.naming import netns_prefix
from corral.runtime.client import Client
from corral.runtime.tasks import Task
from corral.store.embedded import free_port
from tests.fixtures.cluster import Cluster, eventually, start_cluster
from tests.fixtures.registry import Registry
from tests.flow.test_nodes import Proxy

EXTERNAL_NAME = "outside.corral-test."
EXTERNAL_IP = "192.0.2.77"


class _Upstream(asyncio.DatagramProtocol):
    """A tiny resolver on loopback: one name, everything else NXDOMAIN."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = DNSRecord.parse(data)
        reply = request.reply()
        if str(request.q.qname).lower() == EXTERNAL_NAME and request.q.qtype == QTYPE.A:
            reply.add_answer(RR(EXTERNAL_NAME, QTYPE.A, ttl=30, rdata=A(EXTERNAL_IP)))
        else:
            reply.header.rcode = 3
        self.transport.sendto(reply.pack(), addr)  # type: ignore[attr-defined]


@pytest_asyncio.fixture(scope="module")
async def svc_cluster_and_link(tmp_path_factory: pytest.TempPathFactory,
                               registry: Registry) -> AsyncIterator[tuple[Cluster, Proxy]]:
    port = free_port()
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(_Upstream, local_addr=("127.0.0.1", port))
    proxies: list[Proxy] = []

    async def server_for(_name: str, url: str) -> str:  # the agent reaches the API through a link we can cut
        proxy = Proxy(url)
        await proxy.heal()
        proxies.append(proxy)
        return proxy.url

    try:
        async with start_cluster(tmp_path_factory.mktemp("services"), registry, workers=1, server_for=server_for,
                                 worker_args=["--upstream-dns", f"127.0.0.1:{port}"]) as c:
            yield c, proxies[0]
    finally:
        for p in proxies:
            await p.cut()
        transport.close()


@pytest.fixture
def svc_cluster(svc_cluster_and_link: tuple[Cluster, Proxy]) -> Cluster:
    return svc_cluster_and_link[0]


async def corral(cluster: Cluster, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "corral.cli.main", *args, "--server", cluster.plane.url,
        "--token", cluster.plane.admin_token, env={**os.environ, "CORRAL_CA": str(cluster.plane.ca_file)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    return out.decode()


def web(cluster: Cluster, name: str, replicas: int, *, probe: Probe | None = None) -> Deployment:
    return Deployment(
        metadata=ObjectMeta(name=name),
        spec=DeploymentSpec(
            replicas=replicas,
            selector=LabelSelector(match_labels={"app": name}),
            template=ContainerTemplate(
                metadata=TemplateMeta(labels={"app": name}),
                spec=ContainerSpec(
                    image=cluster.image, termination_grace_period_seconds=1,
                    command=["sh", "-c", "mkdir -p /www; hostname > /www/index.html; touch /tmp/ready; "
                                         "exec httpd -f -p 8080 -h /www"],
                    ports=[ContainerPort(container_port=8080, name="http")],
                    readiness_probe=probe,
                ),
            ),
        ),
    )


def service(name: str, **spec: object) -> Service:
    ports = spec.pop("ports", [ServicePort(port=80, target_port="http", name="http")])
    return Service(metadata=ObjectMeta(name=name), spec=ServiceSpec(selector={"app": name}, ports=ports, **spec))  # type: ignore[arg-type]


async def ready_endpoints(cluster: Cluster, name: str, count: int, *, rules: bool = True) -> Endpoints:
    """The Service's Endpoints once ``count`` are ready — and (``rules``) the node's rules lead to each."""
    async def check() -> Endpoints:
        ep = await cluster.api.get(Endpoints, name)
        assert len(ep.spec.addresses) == count, ep.spec
        return ep

    ep = await eventually(check, timeout=90, what=f"{name} has {count} ready endpoints")
    if not rules:  # a headless Service has none
        return ep

    async def in_rules() -> None:
        code, table = await nft_command("list", "table", "inet", cluster.worker.bridge)
        assert code == 0, table
        for a in ep.spec.addresses:
            assert f"{a.ip} . 8080" in table or f"{a.ip}:8080" in table, f"{a.ip} not in the rules yet"

    await eventually(in_rules, timeout=30, what=f"the rules lead to {name}'s endpoints")
    return ep


async def netns_of(cluster: Cluster, container: str) -> Path:
    c = await cluster.api.get(Container, container)
    w = cluster.worker
    net = Network(NetworkConfig(data_dir=w.agent_dir, bridge=w.bridge, subnet=w.pod_cidr,
                                netns_prefix=netns_prefix(w.agent_dir)))
    return net.netns_path(c.metadata.uid)


async def run_in(netns: Path | None, *argv: str, timeout: float = 5) -> tuple[int, str]:
    """Run the host's busybox applet ``argv`` in ``netns`` (None: on the node itself)."""
    prefix = ["nsenter", f"--net={netns}"] if netns is not None else []
    proc = await asyncio.create_subprocess_exec(*prefix, "timeout", str(timeout), "busybox", *argv,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


async def client(cluster: Cluster, name: str, script: str) -> str:
    """Run a client container with ``script``; its output once it finished."""
    await cluster.api.create(Container(metadata=ObjectMeta(name=name),
                                       spec=ContainerSpec(image=cluster.image, command=["sh", "-c", script],
                                                          restart_policy="Never")))
    await cluster.wait_for(name, lambda c: c.status.phase in ("Succeeded", "Failed"), timeout=90)
    body = await cluster.api.request("GET", f"/namespaces/default/containers/{name}/logs")
    with contextlib.suppress(Exception):
        await cluster.api.delete(Container, name, grace_period=0)
    return body.decode(errors="replace")


async def probe_container(cluster: Cluster, name: str) -> str:
    """A long-lived container to run traffic from (its network namespace)."""
    await cluster.api.create(Container(metadata=ObjectMeta(name=name),
                                       spec=ContainerSpec(image=cluster.image, command=["sleep", "3600"],
                                                          termination_grace_period_seconds=1)))
    await cluster.wait_for(name, lambda c: c.status.phase == "Running" and bool(c.status.ip), timeout=90)
    return name


async def hits(netns: Path | None, url: str, n: int) -> Counter[str]:
    got: Counter[str] = Counter()
    for _ in range(n):
        code, out = await run_in(netns, "wget", "-q", "-O-", url)
        got[out.strip() if code == 0 else f"error {code}: {out.strip()}"] += 1
    return got


async def test_a_service_spreads_over_its_replicas_by_name_and_follows_scaling(svc_cluster: Cluster) -> None:
    c = svc_cluster
    await c.api.create(web(c, "web", 3))
    said = await corral(c, "expose", "deployment", "web", "--port", "80", "--target-port", "http")
    svc = await c.api.get(Service, "web")
    assert svc.spec.cluster_ip in said and svc.spec.selector == {"app": "web"}
    ep = await ready_endpoints(c, "web", 3)
    table = await corral(c, "get", "services")
    assert any(line.split()[:5] == ["web", "ClusterIP", svc.spec.cluster_ip, "80/TCP", "3"]
               for line in table.splitlines()), table
    names = {a.container for a in ep.spec.addresses}
    assert all(p.port == 8080 for a in ep.spec.addresses for p in a.ports)  # the named targetPort, resolved
    out = await client(c, "resolver", "nslookup web; nslookup web.default.svc.cluster.local; "
                                      "for i in $(seq 30); do wget -q -O- http://web/; done")
    assert out.count(svc.spec.cluster_ip) >= 2, out
    answered = Counter(line for line in out.splitlines() if line.startswith("web-"))
    assert set(answered) == names and sum(answered.values()) == 30, out

    # hairpin: a backend reaching its own service gets answers from every replica, itself included
    backend = ep.spec.addresses[0].container
    got = await hits(await netns_of(c, backend), f"http://{svc.spec.cluster_ip}/", 30)
    assert set(got) == names, got

    netns = await netns_of(c, await probe_container(c, "prober"))
    loop = asyncio.get_running_loop()
    await c.api.update(_scaled(await c.api.get(Deployment, "web"), 1))
    started = loop.time()

    async def one_answers() -> None:
        got = await hits(netns, f"http://{svc.spec.cluster_ip}/", 3)
        assert len(got) == 1 and next(iter(got)) in names, got
        return None

    await eventually(one_answers, timeout=10, what="only the remaining replica answers")
    took = loop.time() - started
    print(f"scale to 1: one replica answers after {took:.2f}s")
    assert took < 2.0, f"scaling to 1 took {took:.2f}s to show in the rules"


def _scaled(d: Deployment, n: int) -> Deployment:
    d.spec.replicas = n
    return d


async def test_a_failing_readiness_probe_takes_a_backend_out(svc_cluster: Cluster) -> None:
    c = svc_cluster
    probe = Probe(exec=ExecAction(command=["test", "-e", "/tmp/ready"]), period_seconds=1, failure_threshold=1)
    await c.api.create(web(c, "gated", 2, probe=probe))
    await c.api.create(service("gated"))
    ep = await ready_endpoints(c, "gated", 2)
    victim = ep.spec.addresses[0].container
    # the probe fails once /tmp/ready is gone (removed through the task's root: exec is not there yet)
    pid = await _task_pid(c, victim)
    Path(f"/proc/{pid}/root/tmp/ready").unlink()
    ep = await ready_endpoints(c, "gated", 1)
    assert ep.spec.addresses[0].container != victim
    assert [a.container for a in ep.spec.not_ready_addresses] == [victim]


async def _task_pid(c: Cluster, name: str) -> int:
    ctr = await c.api.get(Container, name)
    async with Client(c.worker.containerd.socket) as client:
        status = await Task(client, ctr.status.container_id).status()
    return status.pid


async def test_a_node_port_answers_on_the_node_address_and_client_ip_affinity_sticks(svc_cluster: Cluster) -> None:
    c = svc_cluster
    await c.api.create(web(c, "sticky", 3))
    svc = await c.api.create(service("sticky", type="NodePort", session_affinity="ClientIP"))
    await ready_endpoints(c, "sticky", 3)
    node_port = svc.spec.ports[0].node_port
    got = await hits(None, f"http://127.0.0.1:{node_port}/", 6)
    assert len(got) == 1 and not next(iter(got)).startswith("error"), got
    netns = await netns_of(c, await probe_container(c, "sticky-client"))
    got = await hits(netns, f"http://{svc.spec.cluster_ip}/", 10)
    assert len(got) == 1 and not next(iter(got)).startswith("error"), got


async def test_a_service_without_endpoints_refuses_at_once(svc_cluster: Cluster) -> None:
    c = svc_cluster
    svc = await c.api.create(service("nobody"))
    netns = await netns_of(c, await probe_container(c, "lonely"))
    loop = asyncio.get_running_loop()

    async def refused() -> None:
        started = loop.time()
        code, out = await run_in(netns, "wget", "-q", "-O-", f"http://{svc.spec.cluster_ip}/", timeout=5)
        assert code != 0 and "refused" in out.lower(), out
        assert loop.time() - started < 2

    await eventually(refused, timeout=20, what="the service refuses")


async def test_headless_names_external_names_and_unknown_names_resolve_correctly(svc_cluster: Cluster) -> None:
    c = svc_cluster
    await c.api.create(web(c, "hl", 2))
    await c.api.create(service("hl", cluster_ip="None"))
    ep = await ready_endpoints(c, "hl", 2, rules=False)
    netns = await netns_of(c, await probe_container(c, "asker"))
    gateway = (await c.api.get(Container, "asker")).status.ip.rsplit(".", 1)[0] + ".1"

    async def ask(name: str) -> str:
        _code, out = await run_in(netns, "nslookup", name, gateway)
        return out

    out = await eventually(lambda: _expect(ask("hl.default.svc.cluster.local"), [a.ip for a in ep.spec.addresses]),
                           timeout=20, what="headless names")
    out = await ask(EXTERNAL_NAME.rstrip("."))
    assert EXTERNAL_IP in out, out
    out = await ask("missing.default.svc.cluster.local")
    assert "NXDOMAIN" in out or "can't find" in out, out
    out = await ask("asker.default.ctr.cluster.local")
    assert (await c.api.get(Container, "asker")).status.ip in out, out


async def test_a_new_name_resolves_at_once_and_dns_keeps_answering_while_the_api_is_unreachable(svc_cluster_and_link: tuple[Cluster, Proxy]) -> None:
    c, link = svc_cluster_and_link
    gateway = c.worker.pod_cidr.rsplit(".", 1)[0] + ".1"
    svc = await c.api.create(service("steady"))

    async def answer() -> list[str]:
        reply = await _dns_query(gateway, "steady.default.svc.cluster.local")
        got = [str(rr.rdata) for rr in reply.rr]
        assert got == [svc.spec.cluster_ip], got
        return got

    loop = asyncio.get_running_loop()
    created = loop.time()
    await eventually(answer, timeout=20, what="the service's name resolves")
    took = loop.time() - created
    print(f"a new service's name resolves after {took:.2f}s")
    assert took < 2.0, f"the new name took {took:.2f}s to resolve (goal: 1 s)"
    await link.cut()
    try:
        await asyncio.sleep(1.5)  # the agent's watches have broken
        assert await answer() == [svc.spec.cluster_ip]
    finally:
        await link.heal()


async def _dns_query(server: str, name: str) -> DNSRecord:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            if not done.done():
                done.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=(server, 53))
    try:
        transport.sendto(DNSRecord.question(name).pack())
        return DNSRecord.parse(await asyncio.wait_for(done, 3))
    finally:
        transport.close()


async def _expect(answer: object, needles: list[str]) -> str:
    out = await answer  # type: ignore[misc]
    for n in needles:
        assert n in out, out
    return str(out)


async def test_an_agent_restart_leaves_the_rules_identical(svc_cluster: Cluster) -> None:
    c = svc_cluster
    await c.api.create(service("restart-check", ports=[ServicePort(port=81)]))
    table = c.worker.bridge

    async def rules() -> str:
        code, out = await nft_command("list", "table", "inet", table)
        assert code == 0, out
        return _without_dynamic(out)

    async def has_restart_check() -> str:
        text = await rules()
        assert ". 81" in text, text
        return text

    before = await eventually(has_restart_check, timeout=20, what="the rules show the new service")
    await c.worker.stop()
    await c.worker.start()
    await c.wait_node_ready(c.worker)

    async def same() -> None:
        assert await rules() == before

    await eventually(same, timeout=30, what="the rules come back identical")


def _without_dynamic(text: str) -> str:
    """The table without the affinity sets' learned elements (they depend on traffic), as sorted fragments."""
    out, in_dynamic_set = [], False
    for line in text.splitlines():
        stripped = line.strip()
        if "flags dynamic" in stripped:
            in_dynamic_set = True
        elif in_dynamic_set and stripped == "}":
            in_dynamic_set = False
        elif in_dynamic_set and not stripped.startswith(("type", "size", "timeout")):
            continue  # its elements, however many lines they take
        out.append(line)
    # the kernel lists a set's elements in its own order, wrapped in lines as it likes: compare them as a multiset
    return "\n".join(sorted(re.split(r"[,{}]", " ".join("\n".join(out).split()))))
