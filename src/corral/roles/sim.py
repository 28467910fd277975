"""Hollow nodes: many simulated agents in one process, against a real control plane (like kubemark).

``run_sim`` starts ``nodes`` hollow nodes. Each one does the API traffic of a real agent with the
real agent's code: it joins (``POST /join`` with the given join or admin token → its own node
token, so the API authorizes it exactly like a worker), registers its Node with the status built
by ``roles.agent.build_node_status``, heartbeats (jittered) through ``PUT /nodes/{name}/status``,
and follows the containers bound to it with its own informer over the API (``fieldSelector=spec.node=<name>``:
one watch stream per node, served by the API's watch cache, never an etcd watch each). Only the
runtime is simulated, and the node says so: label ``corral.io/simulated: "true"``, runtime
``simulated``. A bound container is reported ``Running`` (ip, containerID, startedAt) after
``start_delay``; a deleted one loses the agent's finalizer after ``stop_delay``, so it goes.

Scale: 1,000 nodes share one aiohttp connection pool (one ``TCPConnector`` for every node's
client; each keeps its own token header). Container work from every node goes through one dedup
``WorkQueue`` of ``(node, namespace, name)`` keys served by a bounded pool of workers, so the
number of in-flight API writes stays bounded however many nodes or containers there are; per node
there are only two long-lived tasks (its informer and its heartbeat).

Fault injection: ``fail_rate`` of started containers crash ``crash_after`` seconds after they
start (``restartPolicy: Never`` → phase Failed, exit code 1; otherwise a restart is counted);
``lost_nodes`` nodes stop heartbeating and reporting after ``lose_after`` seconds, as a dead
machine would (their watch stays open but they ignore it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import msgspec

from corral.aiokit.queueing import WorkQueue
from corral.aiokit.retrying import retry_temporary
from corral.aiokit.running import run_until_stopped
from corral.api import retrying
from corral.api.client import ApiClient
from corral.api.listwatch import NamespacedName, api_informer
from corral.model import errors
from corral.model.lifecycle import AGENT_FINALIZER, now_rfc3339, release_agent_finalizer
from corral.model.quantities import parse_cpu, parse_memory
from corral.model.resources import Container, ContainerStatus, Node, NodeSpec, NodeStatus, ObjectMeta
from corral.roles.agent import AgentConfig, NodeBeats, build_node_status, node_labels
from corral.store.informer import Change, Informer
from corral.tls.contexts import client_context
from corral.tls.tokens import JoinToken, fetch_pinned_ca

log = logging.getLogger(__name__)

SIMULATED_LABEL = "corral.io/simulated"
Key = tuple[str, str, str]  # (node, namespace, name)


@dataclass
class SimConfig:
    servers: list[str]
    token: str  # a join token (the real path) or the admin token; every node exchanges it for its own
    ca_pem: bytes | None = None  # the cluster CA to trust (a K10 join token pins and fetches it instead)
    nodes: int = 10
    name_prefix: str = "hollow"
    start_delay: float = 0.05
    stop_delay: float = 0.0
    heartbeat_seconds: float = 2.0  # the real agent's period; under the control plane's --node-grace (5 s)
    cpu: str = "32"
    memory: str = "128Gi"
    max_containers: int = 110
    labels: dict[str, str] = field(default_factory=dict)
    fail_rate: float = 0.0
    crash_after: float = 1.0
    lost_nodes: int = 0
    lose_after: float = 30.0
    workers: int = 64
    register_concurrency: int = 32
    seed: int | None = None


@dataclass
class SimStats:
    registered: int = 0
    heartbeats: int = 0
    heartbeat_errors: int = 0
    status_writes: int = 0
    write_errors: int = 0
    released: int = 0
    crashed: int = 0
    lost: int = 0

    def as_dict(self) -> dict[str, int]:
        return {k: int(v) for k, v in vars(self).items()}


@dataclass
class _Started:
    uid: str
    at: float  # loop time the container was first seen bound here
    reported: bool = False
    crash_at: float | None = None


class HollowNode:
    """One simulated agent: its API client and reflector, node status, and what it has 'started'."""

    def __init__(self, sim: Simulator, name: str, index: int) -> None:
        self.sim = sim
        self.name = name
        self.index = index
        cfg = sim.cfg
        self.agent_cfg = AgentConfig(servers=cfg.servers, data_dir=Path("/nonexistent"), node_name=name,
                                     labels={**cfg.labels, SIMULATED_LABEL: "true"}, reserve_cpu="0",
                                     reserve_memory="0", max_containers=cfg.max_containers,
                                     heartbeat_seconds=cfg.heartbeat_seconds)
        self.capacity = (parse_cpu(cfg.cpu), parse_memory(cfg.memory))
        self.api: ApiClient | None = None
        self.reflector: Informer[NamespacedName, Container] | None = None
        self.started: dict[tuple[str, str], _Started] = {}
        self.lost = False
        self.beats: NodeBeats | None = None
        self._next_ip = 2

    def node_status(self) -> NodeStatus:
        return build_node_status(self.agent_cfg, capacity=self.capacity, hostname=self.name, endpoint="",
                                 runtime="simulated", runtime_version="sim")

    def ip(self) -> str:
        n, self._next_ip = self._next_ip, self._next_ip % 250 + 2
        return f"10.{100 + self.index // 256 % 100}.{self.index % 256}.{n}"

    async def join(self) -> None:
        async with ApiClient(self.sim.cfg.servers, self.sim.secret, connector=self.sim.connector,
                             ssl_context=self.sim.ssl_context) as client:
            body = await client.request("POST", "/join", body={"node": self.name})
        token: str = msgspec.json.decode(body)["token"]
        self.api = ApiClient(self.sim.cfg.servers, token, connector=self.sim.connector,
                             ssl_context=self.sim.ssl_context)
        self.beats = NodeBeats(self.api, self.name, self.node_status)
        self.reflector = api_informer(self.api, Container, field_selector=f"spec.node={self.name}")
        self.reflector.add_handler(self._on_container)

    async def register(self) -> None:
        """Create the Node (or take over an existing one of that name), like ``Agent.register``."""
        assert self.api is not None
        labels = node_labels(self.agent_cfg, hostname=self.name)
        node = Node(metadata=ObjectMeta(name=self.name, labels=labels), spec=NodeSpec(),
                    status=self.node_status())
        try:
            await self.api.create(node)
        except errors.AlreadyExists:
            current = await self.api.get(Node, self.name)
            current.metadata.labels = {**current.metadata.labels, **labels}
            await self.api.update(current)
            await self.heartbeat()
        self.sim.stats.registered += 1

    async def heartbeat(self) -> None:
        """A beat exactly as the real agent sends it (``roles.agent.NodeBeats``)."""
        assert self.beats is not None
        await self.beats.beat()

    async def heartbeats(self) -> None:
        period = self.sim.cfg.heartbeat_seconds
        await asyncio.sleep(random.uniform(0, period))  # spread the nodes over the period
        while not self.lost:
            try:
                await self.heartbeat()
                self.sim.stats.heartbeats += 1
            except errors.CorralError as e:
                self.sim.stats.heartbeat_errors += 1
                log.debug("%s: heartbeat failed: %s", self.name, e)
            await asyncio.sleep(period * random.uniform(0.8, 1.2))

    def _on_container(self, _change: Change, key: NamespacedName, _obj: Container, _old: Container | None) -> None:
        if not self.lost:
            self.sim.queue.add((self.name, *key))

    async def sync(self, namespace: str, name: str) -> None:
        """The simulated runtime's reconcile of one container: start, crash, or release it."""
        assert self.api is not None and self.reflector is not None
        if self.lost:
            return
        key = (namespace, name)
        desired = self.reflector.objects.get(key)
        now = asyncio.get_running_loop().time()
        started = self.started.get(key)
        if desired is None:
            self.started.pop(key, None)
            return
        cfg = self.sim.cfg
        if desired.metadata.deletion_timestamp:
            if started is not None and now < started.at + cfg.stop_delay:
                self.sim.queue.add_after((self.name, *key), started.at + cfg.stop_delay - now)
                return
            await self.release(desired)
            self.started.pop(key, None)
            return
        if started is None or started.uid != desired.metadata.uid:
            started = self.started[key] = _Started(desired.metadata.uid, now)
            if self.sim.rng.random() < cfg.fail_rate:
                started.crash_at = now + cfg.start_delay + cfg.crash_after
        if now < started.at + cfg.start_delay:
            self.sim.queue.add_after((self.name, *key), started.at + cfg.start_delay - now)
            return
        status = desired.status
        if not started.reported:
            status = ContainerStatus(phase="Running", node=self.name, ip=self.ip(), container_id=f"sim-{desired.metadata.uid}",
                                     started_at=now_rfc3339(), ready=True,
                                     observed_generation=desired.metadata.generation)
        elif started.crash_at is not None and now >= started.crash_at:
            started.crash_at = None
            self.sim.stats.crashed += 1
            if desired.spec.restart_policy == "Never":
                status = msgspec.structs.replace(status, phase="Failed", ready=False, exit_code=1, reason="Error",
                                                 message="simulated crash", finished_at=now_rfc3339())
            else:
                status = msgspec.structs.replace(status, restart_count=status.restart_count + 1, exit_code=1,
                                                 started_at=now_rfc3339(), reason="Restarted",
                                                 message="simulated crash; restarted")
        if status is not desired.status:
            await self.api.update_status(msgspec.structs.replace(desired, status=status))
            started.reported = True
            self.sim.stats.status_writes += 1
        if started.crash_at is not None:
            self.sim.queue.add_after((self.name, *key), max(started.crash_at - now, 0.0))

    async def release(self, obj: Container) -> None:
        """Remove the agent's finalizer (as ``Agent._release`` does): the container is gone here."""
        assert self.api is not None
        if AGENT_FINALIZER not in obj.metadata.finalizers:
            return
        with contextlib.suppress(errors.NotFound):  # gone already
            await retrying.update(self.api, Container, obj.metadata.name, release_agent_finalizer,
                                  namespace=obj.metadata.namespace, start=obj)
            self.sim.stats.released += 1

    async def close(self) -> None:
        if self.api is not None:
            await self.api.close()


class Simulator:
    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.stats = SimStats()
        self.queue: WorkQueue[Key] = WorkQueue(base_delay=0.2, max_delay=10.0)
        self.connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
        self.secret = cfg.token  # what joins: the token, or the secret of a K10 join token
        self.ssl_context = client_context(cfg.ca_pem) if cfg.ca_pem else None
        self.nodes = {f"{cfg.name_prefix}-{i:05}": HollowNode(self, f"{cfg.name_prefix}-{i:05}", i)
                      for i in range(cfg.nodes)}
        self.ready = asyncio.Event()

    async def _bring_up(self, node: HollowNode, gate: asyncio.Semaphore) -> None:
        async with gate:
            async def bring_up() -> None:
                await node.join()
                await node.register()

            await retry_temporary(bring_up, what=f"{node.name}: bring-up", level=logging.INFO)

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self.nodes[key[0]].sync(key[1], key[2])
                self.queue.forget(key)
            except errors.CorralError as e:
                self.stats.write_errors += 1
                delay = self.queue.retry(key)
                log.debug("sim %s %s/%s: %s (retry in %.1fs)", *key, e, delay)
            finally:
                self.queue.done(key)

    async def _lose_nodes(self) -> None:
        if not self.cfg.lost_nodes:
            return
        await asyncio.sleep(self.cfg.lose_after)
        for node in self.rng.sample(list(self.nodes.values()), min(self.cfg.lost_nodes, len(self.nodes))):
            node.lost = True
            self.stats.lost += 1
            log.warning("%s is lost: no more heartbeats or status", node.name)

    async def _trust(self) -> None:
        """A K10 join token: pin the cluster CA it names (as a worker does) and join with its secret."""
        if self.cfg.token.startswith("K10"):
            token = JoinToken.parse(self.cfg.token)
            self.ssl_context = client_context(await fetch_pinned_ca(self.cfg.servers, token))
            self.secret = token.secret

    async def run(self) -> None:
        """Bring every node up, then run them until cancelled."""
        await self._trust()
        gate = asyncio.Semaphore(self.cfg.register_concurrency)
        t0 = time.monotonic()
        try:
            async with asyncio.TaskGroup() as tg:
                for i in range(self.cfg.workers):
                    tg.create_task(self._worker(), name=f"sim-worker-{i}")
                async with asyncio.TaskGroup() as up:
                    for node in self.nodes.values():
                        up.create_task(self._bring_up(node, gate), name=f"sim-up-{node.name}")
                for node in self.nodes.values():
                    assert node.reflector is not None
                    tg.create_task(node.reflector.run(), name=f"sim-reflector-{node.name}")
                    tg.create_task(node.heartbeats(), name=f"sim-heartbeat-{node.name}")
                for node in self.nodes.values():
                    assert node.reflector is not None
                    await node.reflector.synced.wait()
                log.info("%d hollow nodes registered and watching in %.1fs", len(self.nodes), time.monotonic() - t0)
                self.ready.set()
                tg.create_task(self._lose_nodes(), name="sim-lose-nodes")
        finally:
            self.queue.close()

    async def delete_nodes(self, token: str) -> None:
        """Remove the hollow Node objects (needs an admin token), so nothing is scheduled onto them."""
        async with ApiClient(self.cfg.servers, token, connector=self.connector, ssl_context=self.ssl_context) as admin:
            for name in self.nodes:
                with contextlib.suppress(errors.NotFound):
                    await admin.delete(Node, name)

    async def close(self) -> None:
        for node in self.nodes.values():
            await node.close()
        await self.connector.close()


Report = Callable[[str, dict[str, int]], None]


async def run_sim(cfg: SimConfig, *, stop: asyncio.Event, delete_nodes_token: str = "",
                  report: Report | None = None, report_every: float = 0.0) -> SimStats:
    """Run the hollow nodes until ``stop``; optionally delete their Nodes afterwards; the final counters.

    ``report("ready", counters)`` is called once every node is registered and synced, then
    ``report("stats", counters)`` every ``report_every`` seconds.
    """
    sim = Simulator(cfg)
    reporter = asyncio.create_task(_report(sim, report, report_every), name="sim-report")
    try:
        await run_until_stopped(sim.run(), stop=stop, name="sim")
    finally:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
        try:
            if delete_nodes_token:
                await sim.delete_nodes(delete_nodes_token)
        finally:
            await sim.close()
    return sim.stats


async def _report(sim: Simulator, report: Report | None, every: float) -> None:
    await sim.ready.wait()
    if report is None:
        return
    report("ready", {"nodes": len(sim.nodes), **sim.stats.as_dict()})
    while every > 0:
        await asyncio.sleep(every)
        report("stats", sim.stats.as_dict())
