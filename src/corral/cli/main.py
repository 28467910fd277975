"""The ``corral`` command: ``serve`` runs roles; the other commands talk to the API.

Commands are imported when they are run (or listed by ``--help``), not all at start: ``corral get``
starts faster, and a ``serve --role=worker`` process carries only what the agent needs.
"""

from __future__ import annotations

import importlib

import click

from corral import __version__

# command name -> "module:attribute"
COMMANDS: dict[str, str] = {
    "serve": "corral.cli.serve:serve",
    "apply": "corral.cli.apply:apply",
    "diff": "corral.cli.diff:diff",
    "completion": "corral.cli.completion:completion",
    "events": "corral.cli.events:events",
    "get": "corral.cli.get:get",
    "describe": "corral.cli.describe:describe",
    "delete": "corral.cli.delete:delete",
    "run": "corral.cli.run:run",
    "create": "corral.cli.create:create",
    "logs": "corral.cli.logs:logs",
    "image": "corral.cli.image:image",
    "rollout": "corral.cli.rollout:rollout",
    "scale": "corral.cli.scale:scale",
    "label": "corral.cli.label:label",
    "annotate": "corral.cli.label:annotate",
    "expose": "corral.cli.expose:expose",
    "cordon": "corral.cli.nodes:cordon",
    "uncordon": "corral.cli.nodes:uncordon",
    "drain": "corral.cli.nodes:drain",
    "why-not": "corral.cli.whynot:why_not",
    "sim": "corral.cli.sim:sim",
    "secrets": "corral.cli.secrets:secrets",
    "token": "corral.cli.token:token",
    "exec": "corral.cli.execs:exec_",
    "attach": "corral.cli.execs:attach",
    "port-forward": "corral.cli.portforward:port_forward",
    "cp": "corral.cli.cp:cp",
    "etcd": "corral.cli.etcd:etcd",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="corral")
def cli() -> None:
    """corral — a container orchestrator on etcd, containerd, runc and CNI."""


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
