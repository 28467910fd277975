"""``corral serve``: run roles in this process until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import click

from corral.roles.control import ControlConfig, run_control


def _split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter(f"{listen!r} must be HOST:PORT, e.g. 127.0.0.1:6443", param_hint="--listen")
    return host or "127.0.0.1", int(port)


async def _serve(cfg: ControlConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_control(cfg, stop=stop)


@click.command()
@click.option("--role", type=click.Choice(["control", "worker"]), help="Which roles to run.")
@click.option("--all", "all_roles", is_flag=True, help="Run the whole cluster on this host: control roles, embedded etcd, an agent.")
@click.option("--listen", default="127.0.0.1:6443", show_default=True, help="Where the API listens (HOST:PORT).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("/var/lib/corral"), show_default=True,
              help="Where corral keeps its state: embedded etcd data, tokens, the agent's files.")
@click.option("--etcd", "etcd", multiple=True, metavar="URL",
              help="An etcd endpoint (repeatable). Without it, an embedded etcd child runs under the data dir.")
@click.option("--join-token", default="", help="The join token workers must present (default: generated, in <data-dir>/join.token).")
@click.option("--policy", type=click.Choice(["spread", "binpack"]), default="spread", show_default=True,
              help="Scheduling policy: spread (least allocated) or binpack (most allocated).")
@click.option("--max-body", default=3 * 1024 * 1024, show_default=True, help="Largest request body the API accepts, in bytes.")
@click.option("-v", "--verbose", count=True, help="Debug logging.")
def serve(role: str | None, all_roles: bool, listen: str, data_dir: Path, etcd: tuple[str, ...], join_token: str,
          policy: str, max_body: int, verbose: int) -> None:
    """Run corral's roles in this process until Ctrl-C or SIGTERM."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("grpc", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not role and not all_roles:
        raise click.UsageError("say what to run: --role=control, --role=worker or --all")
    if role == "worker":
        raise click.UsageError("--role=worker is not available yet in this build; run --role=control")
    host, port = _split_listen(listen)
    cfg = ControlConfig(data_dir=data_dir, host=host, port=port, etcd=list(etcd), max_body=max_body,
                        policy=policy, join_token=join_token)
    asyncio.run(_serve(cfg))
