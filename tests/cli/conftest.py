"""Run the user commands as a user would, against the session's real control plane.

Commands call ``asyncio.run`` themselves, so they run in a thread while the session loop keeps
serving the API. The server and token reach them through CORRAL_SERVER/CORRAL_TOKEN.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from corral.cli.apply import apply
from corral.cli.create import create
from corral.cli.delete import delete
from corral.cli.describe import describe
from corral.cli.events import events
from corral.cli.get import get
from corral.cli.label import annotate, label
from corral.cli.run import run
from tests.fixtures.control import RunningControl

# The same commands main.py registers; built here so these tests do not depend on `serve`'s imports.
COMMANDS = click.Group("corral", commands=[apply, get, describe, delete, run, create, label, annotate, events])

Corral = Callable[..., Coroutine[Any, Any, Result]]


@pytest.fixture
def corral(control_plane: RunningControl) -> Corral:
    env: dict[str, str | None] = {"CORRAL_SERVER": control_plane.url, "CORRAL_TOKEN": control_plane.admin_token, "CORRAL_CA": str(control_plane.ca_file)}

    async def invoke(*args: str, stdin: str | None = None, extra_env: dict[str, str | None] | None = None) -> Result:
        runner = CliRunner()
        return await asyncio.to_thread(runner.invoke, COMMANDS, list(args), input=stdin,
                                       env={**env, **(extra_env or {})})

    return invoke
