"""``corral top nodes|containers``: CPU and memory in use, from what the agents sample.

Each agent samples its running containers' usage from containerd (CPU as cores over the last
period, memory in bytes); the API serves a node's sample at ``GET /nodes/{name}/stats``. ``top
containers`` lists them (``-n NS``, ``-A``), busiest first; ``top nodes`` sums them per node beside
the node's allocatable CPU and memory. A node whose agent cannot be reached shows ``<unknown>``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import click
import msgspec

from corral.api.client import ApiClient
from corral.cli import styling
from corral.cli.connection import api_command, connection_options
from corral.model.errors import CorralError
from corral.model.quantities import parse_cpu, parse_memory
from corral.model.resources import Node


def cores(value: float) -> str:
    return f"{round(value * 1000)}m"


def mebibytes(value: float) -> str:
    return f"{value / 2**20:.0f}Mi"


async def _stats(client: ApiClient, nodes: list[Node]) -> dict[str, dict[str, Any] | None]:
    async def one(name: str) -> tuple[str, dict[str, Any] | None]:
        try:
            return name, msgspec.json.decode(await client.request("GET", f"/nodes/{name}/stats", timeout=15))
        except CorralError:
            return name, None

    return dict(await asyncio.gather(*(one(n.metadata.name) for n in nodes)))


@click.group()
def top() -> None:
    """CPU and memory in use on nodes and in containers (sampled by the agents every few seconds)."""


@top.command("nodes")
@connection_options
@api_command
async def top_nodes(client: ApiClient) -> int:
    """Per node: the CPU and memory its containers use, and as a share of what the node offers."""
    nodes, _ = await client.list(Node)
    found = await _stats(client, nodes)
    rows = [["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%", "CONTAINERS"]]
    for node in sorted(nodes, key=lambda n: n.metadata.name):
        data = found.get(node.metadata.name)
        if data is None:
            rows.append([node.metadata.name, "<unknown>", "", "<unknown>", "", ""])
            continue
        cpu = sum(c["cpuCores"] for c in data["containers"])
        mem = sum(c["memoryBytes"] for c in data["containers"])
        alloc_cpu = parse_cpu(node.status.allocatable.cpu or "0") / 1000
        alloc_mem = parse_memory(node.status.allocatable.memory or "0")
        rows.append([node.metadata.name, cores(cpu), f"{cpu / alloc_cpu:.0%}" if alloc_cpu else "",
                     mebibytes(mem), f"{mem / alloc_mem:.0%}" if alloc_mem else "", str(len(data["containers"]))])
    color = styling.color_enabled()
    styling.echo(styling.render(rows[0], rows[1:], color=color), color=color)
    return 0


@top.command("containers")
@click.option("-n", "--namespace", default="default", show_default=True, help="The namespace to show.")
@click.option("-A", "--all-namespaces", is_flag=True, help="Containers of every namespace.")
@connection_options
@api_command
async def top_containers(client: ApiClient, *, namespace: str, all_namespaces: bool) -> int:
    """Per running container: its CPU (cores) and memory, busiest first."""
    nodes, _ = await client.list(Node)
    found = await _stats(client, nodes)
    items = [(node, c) for node, data in found.items() if data is not None for c in data["containers"]
             if all_namespaces or c["namespace"] == namespace]
    items.sort(key=lambda nc: (-nc[1]["cpuCores"], -nc[1]["memoryBytes"]))
    header = (["NAMESPACE"] if all_namespaces else []) + ["NAME", "NODE", "CPU(cores)", "MEMORY(bytes)"]
    rows = [header] + [([c["namespace"]] if all_namespaces else []) +
                       [c["name"], node, cores(c["cpuCores"]), mebibytes(c["memoryBytes"])] for node, c in items]
    if len(rows) == 1:
        click.echo("No running containers found." if not [n for n in found.values() if n is None]
                   else "No figures: the nodes' agents could not be reached.", err=True)
        return 0
    color = styling.color_enabled()
    styling.echo(styling.render(rows[0], rows[1:], color=color), color=color)
    unreachable = sorted(name for name, data in found.items() if data is None)
    if unreachable:
        click.echo(f"(no figures from {', '.join(unreachable)})", err=True)
    return 0
