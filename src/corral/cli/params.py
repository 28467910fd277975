"""Parsers for the shorthand flags of ``corral run``: ports, environment variables and labels."""

from __future__ import annotations

from collections.abc import Iterable

import click

from corral.model.resources import ContainerPort, EnvVar


def parse_port(text: str) -> ContainerPort:
    """``8080``, ``18080:8080`` or ``18080:8080/udp`` (host port, container port, protocol)."""
    spec, _, proto = text.partition("/")
    proto = proto.lower() or "tcp"
    if proto not in ("tcp", "udp"):
        raise click.BadParameter(f"{text!r}: the protocol must be tcp or udp", param_hint="-p/--port")
    host, sep, ctr = spec.rpartition(":")
    if not ctr.isdigit() or (sep and not host.isdigit()):
        raise click.BadParameter(f"{text!r} must be CONTAINER_PORT or HOST_PORT:CONTAINER_PORT[/udp], e.g. 18080:8080",
                                 param_hint="-p/--port")
    return ContainerPort(container_port=int(ctr), host_port=int(host) if sep else 0,
                         protocol="udp" if proto == "udp" else "tcp")


def parse_pairs(items: Iterable[str], *, hint: str) -> dict[str, str]:
    """``K=V`` items as a dict (the last of a repeated key wins)."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} must look like KEY=VALUE", param_hint=hint)
        pairs[key] = value
    return pairs


def parse_env(items: Iterable[str]) -> list[EnvVar]:
    return [EnvVar(name=k, value=v) for k, v in parse_pairs(items, hint="-e/--env").items()]


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, *, hint: str) -> float:
    """``90s``, ``30m``, ``6h``, ``1d`` (or plain seconds) as seconds; ``0`` is zero."""
    value = text.strip().lower()
    unit = _UNITS.get(value[-1:], 0)
    number = value[:-1] if unit else value
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise click.BadParameter(f"{text!r} must be a duration like 90s, 30m, 6h or 1d", param_hint=hint) from None
    if seconds < 0:
        raise click.BadParameter(f"{text!r} must not be negative", param_hint=hint)
    return seconds
