"""Shell completion: the bash script loads, and completes commands, kinds and container names."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid

from corral.api.client import ApiClient
from corral.model.resources import Container, ContainerSpec, ObjectMeta
from tests.fixtures.control import RunningControl

SCRIPT = """
source <(corral completion bash)
COMP_WORDS=({words})
COMP_CWORD={cword}
_corral_completion corral
printf '%s\\n' "${{COMPREPLY[@]}}"
"""


def complete(words: list[str], env: dict[str, str]) -> list[str]:
    """What bash offers after ``words`` (the last one is being typed), through the real script."""
    script = SCRIPT.format(words=" ".join(f"'{w}'" for w in words), cword=len(words) - 1)
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, check=True, timeout=60)
    return [line.split(",", 1)[-1] for line in result.stdout.splitlines() if line]


async def test_the_bash_script_completes_commands_kinds_and_the_names_of_containers(
        control_plane: RunningControl) -> None:
    corral = shutil.which("corral") or os.path.join(os.path.dirname(sys.executable), "corral")
    env = {**os.environ, "CORRAL_SERVER": control_plane.url, "CORRAL_TOKEN": control_plane.admin_token,
           "CORRAL_CA": str(control_plane.ca_file),
           "PATH": f"{os.path.dirname(corral)}:{os.environ.get('PATH', '')}"}
    name = f"compl-{uuid.uuid4().hex[:6]}"
    async with ApiClient(control_plane.url, control_plane.admin_token, ssl_context=control_plane.ssl) as api:
        await api.create(Container(metadata=ObjectMeta(name=name), spec=ContainerSpec(image="busybox")))
        try:
            assert "describe" in await asyncio.to_thread(complete, ["corral", "desc"], env)
            assert "containers" in await asyncio.to_thread(complete, ["corral", "get", "cont"], env)
            names = await asyncio.to_thread(complete, ["corral", "get", "containers", "compl-"], env)
            assert name in names
            assert name in await asyncio.to_thread(complete, ["corral", "logs", "compl-"], env)
        finally:
            await api.delete(Container, name, grace_period=0)
