"""``corral run NAME --image IMG``: build a Container from flags and create it; with ``--wait``, follow it
until it runs, its image pull drawn as a bar per layer (cli/runwait.py)."""

from __future__ import annotations

import click

from corral.api.client import ApiClient
from corral.cli import output, params
from corral.cli.connection import api_command, connection_options
from corral.model.errors import CorralError, Unavailable
from corral.model.resources import Container, ContainerSpec, ObjectMeta, ResourceList, ResourceRequirements


def build_container(name: str, *, image: str, namespace: str, cpu: str, memory: str, ports: tuple[str, ...],
                    env: tuple[str, ...], labels: tuple[str, ...], restart: str, command: tuple[str, ...]) -> Container:
    """The Container the flags describe (not yet validated: the server does that and names bad fields)."""
    amount = ResourceList(cpu=cpu, memory=memory)
    spec = ContainerSpec(
        image=image,
        command=list(command),
        env=params.parse_env(env),
        ports=[params.parse_port(p) for p in ports],
        resources=ResourceRequirements(requests=amount, limits=ResourceList(cpu=cpu, memory=memory)),
        restart_policy="Always" if restart == "Always" else "OnFailure" if restart == "OnFailure" else "Never",
    )
    meta = ObjectMeta(name=name, namespace=namespace, labels=params.parse_pairs(labels, hint="-l/--labels"))
    return Container(metadata=meta, spec=spec)


@click.command()
@click.argument("name")
@click.option("--image", required=True, help="The image to run, e.g. 127.0.0.1:5000/busybox:1.")
@click.option("-n", "--namespace", default="default", show_default=True, help="The namespace to create it in.")
@click.option("--cpu", default="", metavar="QUANTITY", help="CPU to reserve and cap it at (requests = limits), e.g. 250m.")
@click.option("--memory", default="", metavar="QUANTITY", help="Memory to reserve and cap it at (requests = limits), e.g. 64Mi.")
@click.option("-p", "--port", "ports", multiple=True, metavar="[HOST:]CTR[/udp]",
              help="Publish a container port, on a host port when given (repeatable).")
@click.option("-e", "--env", multiple=True, metavar="K=V", help="An environment variable (repeatable).")
@click.option("-l", "--labels", multiple=True, metavar="K=V", help="A label (repeatable).")
@click.option("--restart", type=click.Choice(["Always", "OnFailure", "Never"]), default="Always", show_default=True,
              help="When to restart it after it exits.")
@click.option("--dry-run", is_flag=True, help="Print the Container as YAML instead of creating it.")
@click.option("--wait", is_flag=True, help="Wait until it runs (exit 1 if it fails or --timeout passes), "
                                           "drawing its node's image pull as a bar per layer.")
@click.option("--timeout", type=float, default=300, show_default=True, metavar="SECONDS",
              help="With --wait: give up (exit 1) after this long.")
@click.option("--progress", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True,
              help="With --wait: pull progress bars on a terminal only (auto), always, or never.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@connection_options
@api_command
async def run(client: ApiClient, *, name: str, image: str, namespace: str, cpu: str, memory: str,
              ports: tuple[str, ...], env: tuple[str, ...], labels: tuple[str, ...], restart: str,
              dry_run: bool, wait: bool, timeout: float, progress: str, command: tuple[str, ...]) -> int:
    """Create a container NAME running IMAGE; after `--`, the COMMAND and its arguments replace the image's."""
    ctr = build_container(name, image=image, namespace=namespace, cpu=cpu, memory=memory, ports=ports, env=env,
                          labels=labels, restart=restart, command=command)
    if dry_run:
        click.echo(output.dump(output.to_data(ctr), "yaml"))
        return 0
    what = output.ref(output.kind_info("Container"), name)
    try:
        await client.create(ctr, namespace=namespace)
    except Unavailable:
        raise
    except CorralError as e:
        output.print_error(e, what=what)
        return 1
    click.echo(f"{what} created")
    if not wait:
        return 0
    from corral.cli.pullprogress import PullDisplay
    from corral.cli.runwait import follow_until_running

    return await follow_until_running(client, name, namespace=namespace, timeout=timeout,
                                      display=PullDisplay.for_mode(progress))
