"""The security commands as a user runs them: tokens made, listed, revoked; Secrets shown without values."""

from __future__ import annotations

import asyncio
from pathlib import Path

from click.testing import CliRunner, Result

from corral.cli.get import get
from corral.cli.secrets import secrets
from corral.cli.token import token
from tests.cli.conftest import Corral
from tests.fixtures.control import RunningControl


async def run(control_plane: RunningControl, command: object, *args: str, token_value: str | None = None,
              token_file: Path | None = None) -> Result:
    ca = str(control_plane.ca_file)
    env = {"CORRAL_SERVER": control_plane.url, "CORRAL_TOKEN": token_value or "", "CORRAL_CA": ca}
    if token_value is None:
        env["CORRAL_TOKEN"] = control_plane.admin_token
    if token_file is not None:
        env = {"CORRAL_SERVER": control_plane.url, "CORRAL_TOKEN_FILE": str(token_file), "CORRAL_TOKEN": "",
               "CORRAL_CA": ca}
    return await asyncio.to_thread(CliRunner().invoke, command, list(args), env=env)  # type: ignore[arg-type]


async def test_a_token_is_printed_once_listed_without_its_secret_and_revoked(control_plane: RunningControl,
                                                                            tmp_path: Path) -> None:
    made = await run(control_plane, token, "create", "--role", "view", "--ttl", "1h", "--description", "ci reader")
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    (tmp_path / "t").write_text(secret + "\n")
    assert (await run(control_plane, get, "namespaces", token_file=tmp_path / "t")).exit_code == 0
    listed = await run(control_plane, token, "list")
    assert "ci reader" in listed.stdout and "view" in listed.stdout and secret not in listed.stdout
    token_id = next(line.split()[0] for line in listed.stdout.splitlines() if "ci reader" in line)
    assert (await run(control_plane, token, "revoke", token_id)).exit_code == 0
    refused = await run(control_plane, get, "namespaces", token_file=tmp_path / "t")
    assert refused.exit_code == 1 and "revoked" in refused.stderr


async def test_get_secrets_shows_keys_and_yaml_hides_values_unless_asked(corral: Corral,
                                                                        control_plane: RunningControl) -> None:
    result = await corral("apply", "-f", "-", stdin="kind: Secret\nmetadata: {name: db}\nstringData: {password: pw-1234}\n")
    assert result.exit_code == 0, result.output
    table = await corral("get", "secrets")
    assert "db" in table.stdout and "Opaque" in table.stdout and "password" in table.stdout
    assert "pw-1234" not in table.stdout and "cHctMTIzNA" not in table.stdout
    hidden = await corral("get", "secret", "db", "-o", "yaml")
    assert "cHctMTIzNA" not in hidden.stdout and "hidden" in hidden.stdout
    shown = await corral("get", "secret", "db", "-o", "yaml", "--show-secrets")
    assert "cHctMTIzNA==" in shown.stdout
    rotated = await run(control_plane, secrets, "rotate-key")
    assert rotated.exit_code == 0 and "re-encrypted" in rotated.stdout
    assert "cHctMTIzNA==" in (await corral("get", "secret", "db", "-o", "json", "--show-secrets")).stdout


async def test_describe_a_secret_shows_its_keys_and_sizes_not_its_values(corral: Corral) -> None:
    await corral("apply", "-f", "-", stdin="kind: Secret\nmetadata: {name: described}\nstringData: {token: abcdef}\n")
    result = await corral("describe", "secret", "described")
    assert result.exit_code == 0, result.output
    assert "token: 6 bytes" in result.stdout and "abcdef" not in result.stdout and "YWJjZGVm" not in result.stdout
