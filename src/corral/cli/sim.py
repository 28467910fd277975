"""``corral sim``: run N hollow nodes in this process against a real control plane.

Each hollow node joins with ``--token`` (a join token, or the admin token) and then acts as a real
agent through the API, over a simulated runtime (see ``roles.sim``). Counters are printed as one
JSON object a line on stdout (``{"event": "ready", ...}`` once every node is registered and
watching, then ``{"event": "stats", ...}`` every ``--report-every`` seconds), so scripts can follow
it. Ctrl-C / SIGTERM stops it; ``--delete-nodes`` then removes the hollow Nodes (admin token only).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import click
import msgspec

from corral.aiokit import loops
from corral.cli.connection import resolve
from corral.cli.serve import _labels
from corral.roles.sim import SimConfig, run_sim


def _duration(text: str) -> float:
    """``50ms``, ``2s``, ``1.5`` (seconds) → seconds."""
    t = text.strip()
    try:
        if t.endswith("ms"):
            return float(t[:-2]) / 1000
        if t.endswith("s"):
            return float(t[:-1])
        if t.endswith("m"):
            return float(t[:-1]) * 60
        return float(t)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a duration (e.g. 50ms, 2s, 1m)") from None


def _print(event: str, counters: dict[str, int]) -> None:
    click.echo(msgspec.json.encode({"event": event, **counters}).decode())


@click.command()
@click.option("--server", metavar="URL", default=None, help="The API's URL (default: the CLI config).")
@click.option("--token", metavar="TOKEN", default=None,
              help="A join token (each hollow node exchanges it for its own node token) or the admin token.")
@click.option("--nodes", type=click.IntRange(1, 20_000), default=10, show_default=True)
@click.option("--name-prefix", default="hollow", show_default=True, help="Nodes are <prefix>-00000, …")
@click.option("--start-delay", default="50ms", show_default=True, help="Simulated time from bound to Running.")
@click.option("--stop-delay", default="0s", show_default=True, help="Simulated time to stop a deleted container.")
@click.option("--heartbeat", default="2s", show_default=True, help="Heartbeat period per node (jittered ±20%).")
@click.option("--cpu", default="32", show_default=True, help="Capacity of each hollow node.")
@click.option("--memory", default="128Gi", show_default=True)
@click.option("--max-containers", type=int, default=110, show_default=True)
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Extra node labels.")
@click.option("--fail-rate", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="Fraction of started containers that crash --crash-after later.")
@click.option("--crash-after", default="1s", show_default=True)
@click.option("--lose-nodes", type=int, default=0, show_default=True,
              help="Nodes that stop heartbeating and reporting --lose-after after start-up.")
@click.option("--lose-after", default="30s", show_default=True)
@click.option("--workers", type=int, default=64, show_default=True, help="Concurrent container status writers.")
@click.option("--report-every", default="5s", show_default=True)
@click.option("--delete-nodes", is_flag=True, help="Delete the hollow Nodes on exit (needs the admin token).")
@click.option("--seed", type=int, default=None)
@click.option("-v", "--verbose", is_flag=True)
def sim(server: str | None, token: str | None, nodes: int, name_prefix: str, start_delay: str, stop_delay: str,
        heartbeat: str, cpu: str, memory: str, max_containers: int, labels: tuple[str, ...], fail_rate: float,
        crash_after: str, lose_nodes: int, lose_after: str, workers: int, report_every: str, delete_nodes: bool,
        seed: int | None, verbose: bool) -> None:
    """Run hollow nodes: real agents' API traffic over a simulated runtime."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    conn = resolve(server, token, env=os.environ)
    cfg = SimConfig(servers=[conn.server], token=conn.token, ca_pem=conn.ca_pem, nodes=nodes, name_prefix=name_prefix,
                    start_delay=_duration(start_delay), stop_delay=_duration(stop_delay),
                    heartbeat_seconds=_duration(heartbeat), cpu=cpu, memory=memory, max_containers=max_containers,
                    labels=_labels(labels), fail_rate=fail_rate, crash_after=_duration(crash_after),
                    lost_nodes=lose_nodes, lose_after=_duration(lose_after), workers=workers, seed=seed)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        stats = await run_sim(cfg, stop=stop, delete_nodes_token=conn.token if delete_nodes else "",
                              report=_print, report_every=_duration(report_every))
        _print("stopped", stats.as_dict())

    from corral.aiokit.heap import tune_for_large_heaps

    tune_for_large_heaps()
    loops.run(main())
