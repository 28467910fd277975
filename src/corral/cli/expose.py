"""``corral expose deployment NAME --port P``: a Service in front of a deployment's containers.

The Service selects what the deployment's template is labelled with (its ``spec.selector``), and
is named like the deployment unless ``--name`` says otherwise. ``--target-port`` is a number or a
container port's name (default: the same as ``--port``); ``--type NodePort`` also opens a node port
on every node (``--node-port`` asks for one, else one is allocated). The API allocates the cluster
IP; the answer shows it.
"""

from __future__ import annotations

import click

from corral.api.client import ApiClient
from corral.cli.connection import api_command, connection_options
from corral.cli.rollout import deployment_name
from corral.model.resources import Deployment, ObjectMeta, Service, ServicePort, ServiceSpec


def _target(text: str | None) -> int | str:
    if not text:
        return 0
    return int(text) if text.isdigit() else text


@click.command()
@click.argument("kind", type=click.Choice(["deployment", "deploy"]))
@click.argument("name")
@click.option("--port", type=click.IntRange(1, 65535), required=True, help="The port the Service answers on.")
@click.option("--target-port", default=None, help="The container port (a number or its name); default: --port.")
@click.option("--protocol", type=click.Choice(["TCP", "UDP"]), default="TCP", show_default=True)
@click.option("--type", "type_", type=click.Choice(["ClusterIP", "NodePort"]), default="ClusterIP", show_default=True,
              help="NodePort also answers on every node's address at a node port.")
@click.option("--node-port", type=click.IntRange(30000, 32767), default=None, help="Ask for this node port (NodePort).")
@click.option("--session-affinity", type=click.Choice(["None", "ClientIP"]), default="None", show_default=True,
              help="ClientIP: a client keeps reaching the same container.")
@click.option("--name", "service_name", default=None, help="The Service's name (default: the deployment's).")
@click.option("-n", "--namespace", default="default", show_default=True, help="The deployment's namespace.")
@connection_options
@api_command
async def expose(client: ApiClient, *, kind: str, name: str, port: int, target_port: str | None, protocol: str,
                 type_: str, node_port: int | None, session_affinity: str, service_name: str | None,
                 namespace: str) -> int:
    """Create a Service that load-balances over a deployment's containers."""
    del kind
    name = deployment_name(name)
    d = await client.get(Deployment, name, namespace=namespace)
    selector = dict(d.spec.selector.match_labels)
    svc = Service(
        metadata=ObjectMeta(name=service_name or name, namespace=namespace),
        spec=ServiceSpec(selector=selector, type=type_,  # type: ignore[arg-type]
                         ports=[ServicePort(port=port, target_port=_target(target_port),
                                            protocol=protocol,  # type: ignore[arg-type]
                                            node_port=node_port or 0)],
                         session_affinity=session_affinity),  # type: ignore[arg-type]
    )
    created = await client.create(svc)
    ports = ",".join(f"{p.port}:{p.node_port}/{p.protocol}" if p.node_port else f"{p.port}/{p.protocol}"
                     for p in created.spec.ports)
    click.echo(f"service.corral/{created.metadata.name} exposed at {created.spec.cluster_ip} ({ports})")
    return 0
