"""Where the commands find the API: flags, then environment, then the config files `serve` writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from corral.cli.connection import NOT_CONFIGURED, NotConfigured, resolve


def _config(path: Path, server: str, token: str) -> Path:
    token_file = path.parent / "admin.token"
    token_file.write_text(token + "\n")
    path.write_text(json.dumps({"server": server, "tokenFile": str(token_file)}))
    return path


def test_flags_win_over_the_environment_and_the_config(tmp_path: Path) -> None:
    cfg = _config(tmp_path / "config.json", "http://127.0.0.1:1", "from-config")
    env = {"CORRAL_SERVER": "http://127.0.0.1:2", "CORRAL_TOKEN": "from-env"}
    conn = resolve("http://127.0.0.1:3", "from-flag", env=env, config_paths=[cfg])
    assert (conn.server, conn.token) == ("http://127.0.0.1:3", "from-flag")


def test_the_environment_wins_over_the_config(tmp_path: Path) -> None:
    cfg = _config(tmp_path / "config.json", "http://127.0.0.1:1", "from-config")
    env = {"CORRAL_SERVER": "http://127.0.0.1:2", "CORRAL_TOKEN": "from-env"}
    assert resolve(None, None, env=env, config_paths=[cfg]).token == "from-env"


def test_the_first_config_found_gives_the_server_and_reads_its_token_file(tmp_path: Path) -> None:
    (tmp_path / "user").mkdir()
    (tmp_path / "system").mkdir()
    user = _config(tmp_path / "user" / "config.json", "http://127.0.0.1:1", "user-token")
    system = _config(tmp_path / "system" / "config.json", "http://127.0.0.1:2", "system-token")
    conn = resolve(None, None, env={}, config_paths=[tmp_path / "missing.json", user, system])
    assert (conn.server, conn.token, conn.source) == ("http://127.0.0.1:1", "user-token", str(user))


def test_a_config_token_is_never_sent_to_a_server_named_elsewhere(tmp_path: Path) -> None:
    cfg = _config(tmp_path / "config.json", "http://127.0.0.1:1", "secret")
    with pytest.raises(NotConfigured, match=re.escape("no token for http://127.0.0.1:9")):
        resolve("http://127.0.0.1:9", None, env={}, config_paths=[cfg])
    assert resolve("http://127.0.0.1:1/", None, env={}, config_paths=[cfg]).token == "secret"


def test_nothing_configured_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(NotConfigured) as e:
        resolve(None, None, env={}, config_paths=[tmp_path / "none.json"])
    assert e.value.message == NOT_CONFIGURED


def test_an_unreadable_token_file_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"server": "http://127.0.0.1:1", "tokenFile": str(tmp_path / "gone.token")}))
    with pytest.raises(NotConfigured, match=r"cannot read the token file .*gone\.token"):
        resolve(None, None, env={}, config_paths=[cfg])
