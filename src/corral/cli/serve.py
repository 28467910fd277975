"""``corral serve``: run roles in this process until Ctrl-C or SIGTERM.

``--role=control`` runs the API, the scheduler and the controllers (with an embedded etcd when no
``--etcd`` is given; the scheduler and controllers run in a child ``--role=leader`` process unless
``--inline-leader``); ``--role=worker`` runs the agent against ``--server``; ``--all`` runs both on
this host, plus an embedded containerd when none answers at ``--containerd-socket``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from corral.aiokit import loops
from corral.cli.hygiene import apply_hygiene, hygiene_options

# The roles are imported when one is run, not when the command is defined: a worker process should
# not carry the API server, the scheduler and the controllers in its memory.
if TYPE_CHECKING:
    from corral.roles.agent import AgentConfig
    from corral.roles.control import ControlConfig, ControlPlane
    from corral.roles.leader import LeaderRoleConfig

log = logging.getLogger("corral.serve")


def _split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter(f"{listen!r} must be HOST:PORT, e.g. 127.0.0.1:6443", param_hint="--listen")
    return host or "127.0.0.1", int(port)


def _labels(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} must be KEY=VALUE", param_hint="--label")
        out[key] = value
    return out


def _exit_at_once() -> None:
    """End a control or leader process that has stopped in order (children stopped, stores closed)
    without the interpreter's teardown, which frees the caches object by object: seconds at 30,000
    containers, and a restart waits for it."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _install_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def _serve_control(cfg: ControlConfig) -> None:
    from corral.roles.control import run_control

    stop = asyncio.Event()
    _install_signals(stop)
    await run_control(cfg, stop=stop)


async def _serve_worker(cfg: AgentConfig, *, embedded_dir: Path) -> None:
    from corral.roles.agent import run_agent
    from corral.roles.runtime import ensure_containerd

    stop = asyncio.Event()
    _install_signals(stop)
    async with ensure_containerd(cfg.containerd_socket, base_dir=embedded_dir) as sock:
        cfg.containerd_socket = sock
        await run_agent(cfg, stop=stop)


async def _serve_leader(cfg: LeaderRoleConfig) -> None:
    from corral.roles.leader import run_leader_role

    stop = asyncio.Event()
    _install_signals(stop)
    await run_leader_role(cfg, stop=stop)


async def _serve_all(control: ControlConfig, agent: AgentConfig, *, embedded_dir: Path) -> None:
    from corral.roles.agent import run_agent
    from corral.roles.control import run_control
    from corral.roles.runtime import ensure_containerd

    stop = asyncio.Event()
    _install_signals(stop)

    async with ensure_containerd(agent.containerd_socket, base_dir=embedded_dir) as sock:
        agent.containerd_socket = sock

        async def start_agent(plane: ControlPlane) -> None:
            agent.servers = [plane.url]
            agent.join_token = plane.join_token
            try:
                await run_agent(agent, stop=stop)
            finally:
                stop.set()

        await run_control(control, stop=stop, started=start_agent)




@click.command()
@click.option("--role", type=click.Choice(["control", "worker", "leader"]),
              help="Which role to run: control (API, and a leader process), worker (the agent), or leader "
                   "(the scheduler and controllers alone, elected through --etcd; control starts one itself).")
@click.option("--inline-leader", is_flag=True,
              help="[control] Run the scheduler and controllers in the API's process instead of a child process.")
@click.option("--leader-ttl", default=5, show_default=True, type=click.IntRange(min=1),
              help="[control, leader] Seconds a leader's etcd lease lives: how soon another instance takes over.")
@click.option("--all", "all_roles", is_flag=True,
              help="The whole cluster on this host: control roles, embedded etcd, an agent (and containerd if none runs).")
@click.option("--listen", default="127.0.0.1:6443", show_default=True, help="Where the API listens (HOST:PORT).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("/var/lib/corral"), show_default=True,
              help="Where corral keeps its state: embedded etcd data, tokens, the agent's files.")
@click.option("--etcd", "etcd", multiple=True, metavar="URL",
              help="[control] An etcd endpoint (repeatable). Without it, an embedded etcd child runs under the data dir.")
@click.option("--etcd-cafile", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="[control, leader] The CA of an https --etcd (PEM).")
@click.option("--etcd-certfile", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="[control, leader] A client certificate for --etcd (PEM; with --etcd-keyfile).")
@click.option("--etcd-keyfile", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="[control, leader] The key of --etcd-certfile (PEM).")
@click.option("--join-token", default="", envvar="CORRAL_JOIN_TOKEN",
              help="[control] the join secret workers must present (default: generated); <data-dir>/join.token "
                   "then holds the token to give workers, K10<sha256 of the CA PEM>::<secret>. "
                   "[worker] that K10 token: it pins the cluster CA before anything else is trusted. "
                   "Also $CORRAL_JOIN_TOKEN (better: not on a command line).")
@click.option("--tls-san", "tls_sans", multiple=True, metavar="NAME|IP",
              help="[control] Another name or IP of the API for its serving certificate (repeatable).")
@click.option("--tls-ca-cert", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="[control] Your own cluster CA certificate (PEM; with --tls-ca-key) instead of a generated one.")
@click.option("--tls-ca-key", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="[control] The key of --tls-ca-cert (PEM, EC).")
@click.option("--tls-cert", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="[control] Your own API serving certificate (PEM; with --tls-key), signed by the cluster CA.")
@click.option("--tls-key", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="[control] The key of --tls-cert (PEM).")
@click.option("--insecure-plain-http-loopback", "plain_http", is_flag=True, hidden=True,
              help="Testing only: serve plain HTTP on a loopback --listen (to measure what TLS costs).")
@click.option("--policy", type=click.Choice(["spread", "binpack"]), default="spread", show_default=True,
              help="[control] Scheduling policy: spread (least allocated) or binpack (most allocated).")
@click.option("--max-body", default=3 * 1024 * 1024, show_default=True, help="[control] Largest request body, in bytes.")
@click.option("--event-ttl", type=click.IntRange(min=0), default=3600, show_default=True, metavar="SECONDS",
              help="[control] How long Events live before etcd expires them (0: forever).")
@click.option("--cluster-cidr", default="10.42.0.0/16", show_default=True,
              help="[control] The containers' addresses, cluster-wide; each node gets a slice of it.")
@click.option("--node-cidr-size", default=24, show_default=True, type=click.IntRange(min=8, max=30),
              help="[control] The prefix length of each node's slice of --cluster-cidr.")
@click.option("--service-cidr", default="10.43.0.0/16", show_default=True,
              help="[control] The Services' virtual IPs.")
@click.option("--cluster-domain", default="cluster.local", show_default=True,
              help="[control] The cluster's DNS domain (<service>.<namespace>.svc.<domain>).")
@click.option("--network-backend", type=click.Choice(["vxlan", "host-gw"]), default="vxlan", show_default=True,
              help="[control] How nodes reach each other's containers: a VXLAN overlay, or plain routes "
                   "(host-gw: every node on one L2 segment).")
@click.option("--vxlan-vni", default=1, show_default=True, type=click.IntRange(1, 16_777_215),
              help="[control] The VXLAN network identifier.")
@click.option("--vxlan-port", default=8472, show_default=True, type=click.IntRange(1, 65_535),
              help="[control] The VXLAN UDP port.")
@click.option("--encryption-key-file", type=click.Path(path_type=Path), default=None,
              help="[control] The keys that encrypt Secrets in etcd (AES-GCM; default <data-dir>/encryption.key, "
                   "made mode 0600 at first start). Every control instance needs the same file.")
@click.option("--audit-log", type=click.Path(path_type=Path), default=None,
              help="[control] Write every API write and every refused request here, one JSON line each.")
@click.option("--audit-log-max-size", default=100, show_default=True, type=click.IntRange(min=1), metavar="MIB",
              help="[control] Rotate the audit log when it passes this many MiB (5 old files kept).")
@click.option("--pids-limit", default=4096, show_default=True, type=click.IntRange(min=0),
              help="[worker] The most processes one container may have (0: no limit).")
@click.option("--server", "servers", multiple=True, metavar="URL", help="[worker] An API server URL (repeatable).")
@click.option("--token", default="", hidden=True, help="[worker] Refused: nodes authenticate with certificates.")
@click.option("--node-name", default=socket.gethostname(), show_default=True, help="[worker] This node's name.")
@click.option("--containerd-socket", default="/run/containerd/containerd.sock", show_default=True,
              help="[worker] containerd's socket; with --all, an embedded containerd starts if none answers there.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="[worker] A node label (repeatable).")
@click.option("--pod-cidr", default="", metavar="CIDR",
              help="[worker] Override this node's container subnet (default: the control plane assigns a slice "
                   "of --cluster-cidr); must lie in the cluster CIDR and overlap no other node's.")
@click.option("--bridge", default="corral0", show_default=True, help="[worker] The Linux bridge containers attach to.")
@click.option("--nft-table", default="corral", show_default=True,
              help="[worker] The nftables table (family inet) that holds this agent's policy and service rules.")
@click.option("--node-ip", default="127.0.0.1", show_default=True,
              help="[worker] This node's InternalIP: the API reaches the agent there (logs), and the other "
                   "nodes send its containers' traffic there (routes, VXLAN); it is in the node's certificate. "
                   "A loopback address: no routes.")
@click.option("--agent-listen", default="127.0.0.1:0", show_default=True,
              help="[worker] Where the agent serves logs to the API (HOST:PORT; port 0 picks a free one).")
@click.option("--reserve-cpu", default="100m", show_default=True, help="[worker] CPU kept back from containers.")
@click.option("--reserve-memory", default="256Mi", show_default=True, help="[worker] Memory kept back from containers.")
@click.option("--insecure-registry", "insecure", multiple=True, metavar="HOST:PORT",
              help="[worker] A registry to reach over plain HTTP (loopback registries always are).")
@click.option("--node-grace", type=click.FloatRange(min=0.5), default=5.0, show_default=True, metavar="SECONDS",
              help="[control] A node silent this long is NotReady; its containers are released 3 s later. "
                   "[worker] the cluster's grace, from which --fence-after defaults.")
@click.option("--fence-after", type=click.FloatRange(min=0.2), default=None, metavar="SECONDS",
              help="[worker] Kill every local container after this long without reaching the API "
                   "(default: --node-grace minus 1 s).")
@hygiene_options
@click.option("--metrics-listen", default="", metavar="HOST:PORT",
              help="[worker] Serve the agent's Prometheus metrics at http://HOST:PORT/metrics; [leader] the "
                   "scheduler's and controllers'. (The API's are at its own /metrics.) Empty: not served.")
@click.option("--usage-sample-seconds", type=click.FloatRange(min=0.5), default=10.0, show_default=True,
              help="[worker] How often the agent reads its containers' CPU and memory from containerd "
                   "(its /metrics and `corral top`).")
@click.option("--leader-metrics-listen", default="", metavar="HOST:PORT",
              help="[control] Where the leader child process serves the scheduler's and controllers' metrics "
                   "(with --inline-leader they are on the API's /metrics). Empty: not served.")
@click.option("--upstream-dns", "upstream_dns", multiple=True, metavar="ADDR[:PORT]",
              help="[worker] Where the agent's DNS server forwards names outside the cluster (repeatable; "
                   "default: the nameservers in /etc/resolv.conf).")
@click.option("--job-backoff", type=click.FloatRange(min=0.1), default=10.0, show_default=True, metavar="SECONDS",
              help="[control, leader] The first delay before a failed Job's container is replaced; it doubles "
                   "with each failure, up to 6 minutes (Kubernetes' rule).")
@click.option("--etcd-snapshot-interval", default="12h", show_default=True, metavar="DURATION",
              help="[control] Take an etcd snapshot this often into <data-dir>/snapshots (e.g. 6h, 30m; 0: never).")
@click.option("--etcd-snapshot-retain", default=5, show_default=True, type=click.IntRange(min=1),
              help="[control] How many scheduled snapshots to keep (the oldest go first).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Log lines as text, or as JSON objects (time, level, logger, message, the API's requestId).")
@click.option("--cluster-init", is_flag=True,
              help="[control] Start the first member of a new embedded etcd cluster (what a control instance without "
                   "--etcd or --join does).")
@click.option("--join", "join_url", default="", metavar="URL",
              help="[control] Make this instance's embedded etcd a member of the cluster of the control instance at URL "
                   "(https://HOST:6443; with --join-token K10…). Ignored once this data dir holds a member.")
@click.option("--leave", is_flag=True,
              help="[control] On a clean stop, remove this instance's etcd member from the cluster.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def serve(role: str | None, inline_leader: bool, leader_ttl: int, all_roles: bool, listen: str, data_dir: Path, etcd: tuple[str, ...], join_token: str,
          policy: str, max_body: int, event_ttl: int, servers: tuple[str, ...], token: str, node_name: str, containerd_socket: str,
          labels: tuple[str, ...], pod_cidr: str, bridge: str, nft_table: str, node_ip: str, agent_listen: str, reserve_cpu: str,
          reserve_memory: str, insecure: tuple[str, ...], verbose: bool, node_grace: float,
          fence_after: float | None, cluster_cidr: str, node_cidr_size: int, service_cidr: str,
          cluster_domain: str, network_backend: str, vxlan_vni: int, vxlan_port: int,
          encryption_key_file: Path | None, pids_limit: int, audit_log: Path | None,
          audit_log_max_size: int, metrics_listen: str, leader_metrics_listen: str, job_backoff: float,
          tls_sans: tuple[str, ...] = (), tls_ca_cert: Path | None = None, tls_ca_key: Path | None = None,
          tls_cert: Path | None = None, tls_key: Path | None = None, plain_http: bool = False,
          etcd_cafile: Path | None = None, etcd_certfile: Path | None = None, etcd_keyfile: Path | None = None,
          upstream_dns: tuple[str, ...] = (), etcd_snapshot_interval: str = "0", etcd_snapshot_retain: int = 5,
          log_format: str = "text", usage_sample_seconds: float = 10.0, cluster_init: bool = False,
          join_url: str = "", leave: bool = False, **hygiene: Any) -> None:
    """Run corral's roles in this process until Ctrl-C or SIGTERM."""
    from corral.aiokit.logfmt import configure

    configure(level=logging.DEBUG if verbose else logging.INFO, fmt=log_format)
    for noisy in ("grpc", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if bool(role) == all_roles:
        raise click.UsageError("say what to run: --role=control, --role=worker, --role=leader or --all (one of them)")
    from corral.roles.agent import AgentConfig

    data_dir = data_dir.resolve()
    agent_host, agent_port = _split_listen(agent_listen)
    agent = AgentConfig(servers=list(servers), data_dir=data_dir / "agent", node_name=node_name, token=token,
                        join_token=join_token, containerd_socket=containerd_socket, labels=_labels(labels),
                        reserve_cpu=reserve_cpu, reserve_memory=reserve_memory, pod_cidr=pod_cidr, bridge=bridge, nft_table=nft_table,
                        node_ip=node_ip, listen_host=agent_host, listen_port=agent_port,
                        insecure_registries=list(insecure), metrics_listen=metrics_listen,
                        metrics_sample_seconds=usage_sample_seconds)
    agent.upstream_dns = list(upstream_dns)
    agent.pids_limit = pids_limit
    agent.fence_after = fence_after if fence_after is not None else max(node_grace - 1.0, node_grace / 2)
    apply_hygiene(agent, hygiene)
    embedded = data_dir / "containerd"
    with contextlib.suppress(KeyboardInterrupt):
        if role == "worker":
            if not servers:
                raise click.UsageError("--role=worker needs --server URL (and --join-token or --token)")
            if token:
                raise click.UsageError("--token is no longer accepted by a worker: nodes authenticate with their own "
                                       "certificate; join with --join-token K10… (from <data-dir>/join.token)")
            if not join_token and not (data_dir / "agent" / "tls" / "node.crt").exists():
                raise click.UsageError("--role=worker needs --join-token K10… (from <data-dir>/join.token on a "
                                       "control host) to join the cluster")
            from corral.aiokit.heap import small_tls_buffers

            small_tls_buffers()  # a worker keeps a TLS connection per watch: 256 KiB each by default
            asyncio.run(_serve_worker(agent, embedded_dir=embedded))
            return
        from corral.aiokit.heap import tune_for_large_heaps
        from corral.store.etcd import EtcdTls

        if (etcd_certfile is None) != (etcd_keyfile is None):
            raise click.UsageError("--etcd-certfile and --etcd-keyfile go together")
        etcd_tls = (EtcdTls(etcd_cafile, etcd_certfile, etcd_keyfile)
                    if etcd_cafile or etcd_certfile else None)

        tune_for_large_heaps()  # control and leader hold every object in caches
        if role == "leader":
            from corral.roles.controllers import LeaderConfig
            from corral.roles.leader import LeaderRoleConfig

            if not etcd:
                raise click.UsageError("--role=leader needs --etcd URL (the control instances' etcd)")
            leader = LeaderRoleConfig(etcd=list(etcd), leader_ttl=leader_ttl, etcd_tls=etcd_tls,
                                      leader=LeaderConfig(policy=policy, node_grace=node_grace, event_ttl=float(event_ttl),
                                                          metrics_listen=metrics_listen, job_backoff=job_backoff))
            loops.run(_serve_leader(leader))
            _exit_at_once()
        from corral.model.cluster import ClusterConfig
        from corral.roles.control import ControlConfig

        host, port = _split_listen(listen)
        control = ControlConfig(data_dir=data_dir, host=host, port=port, etcd=list(etcd), max_body=max_body,
                                policy=policy, join_token=join_token, event_ttl=float(event_ttl))
        control.node_grace = node_grace
        control.job_backoff = job_backoff
        control.leader_ttl = leader_ttl
        control.encryption_key_file = encryption_key_file
        control.audit_log = audit_log
        control.audit_log_max_bytes = audit_log_max_size * 1024 * 1024
        control.leader_process = not inline_leader
        control.leader_metrics_listen = leader_metrics_listen
        from corral.cli.params import parse_duration
        from corral.roles.clustertls import TlsOptions

        control.snapshot_interval = parse_duration(etcd_snapshot_interval, hint="--etcd-snapshot-interval")
        control.snapshot_retain = etcd_snapshot_retain
        control.tls = TlsOptions(sans=list(tls_sans), ca_cert=tls_ca_cert, ca_key=tls_ca_key, cert=tls_cert,
                                 key=tls_key)
        control.plain_http = plain_http
        control.etcd_tls = etcd_tls
        if (cluster_init or join_url) and etcd:
            raise click.UsageError("--cluster-init and --join are for the embedded etcd; not with --etcd")
        if cluster_init and join_url:
            raise click.UsageError("--cluster-init starts a new cluster, --join joins one: give one of them")
        control.join_url, control.leave = join_url, leave
        control.cluster = ClusterConfig(cluster_cidr=cluster_cidr, node_cidr_size=node_cidr_size,
                                        service_cidr=service_cidr, cluster_domain=cluster_domain,
                                        backend=network_backend, vxlan_vni=vxlan_vni,  # type: ignore[arg-type]
                                        vxlan_port=vxlan_port)
        if role == "control":
            loops.run(_serve_control(control))
        else:
            asyncio.run(_serve_all(control, agent, embedded_dir=embedded))
        _exit_at_once()
