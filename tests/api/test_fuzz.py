"""A property-based fuzz of the API from its own /openapi.json (schemathesis), against a real control
plane over HTTPS: no request it can make gets a 5xx, and every answer matches the schema the
document declares for it (4xx answers: the error shape). A short run here; a longer one is
``schemathesis run`` with ``--max-time`` (docs/api.md says how).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.fixtures.control import RunningControl

# streams and WebSockets: a fuzzer's request would hold them open until its timeout (and fuzz_hooks.py
# takes ?watch= out of every query, for the same reason)
ROOT = Path(__file__).resolve().parents[2]
STREAMING = r"(/heartbeats$|/exec$|/attach$|/portforward$|/logs$)"


async def test_the_fuzzer_finds_no_server_error_and_every_answer_matches_the_document(
        control_plane: RunningControl, tmp_path: Path) -> None:
    schemathesis = Path(sys.executable).parent / "schemathesis"
    assert schemathesis.exists(), "schemathesis is missing: run scripts/setup.sh (it is a dev dependency)"
    report = tmp_path / "junit.xml"
    proc = await asyncio.create_subprocess_exec(
        str(schemathesis), "run", f"{control_plane.url}/openapi.json",
        "-H", f"Authorization: Bearer {control_plane.admin_token}", "--tls-verify", str(control_plane.ca_file),
        "--checks", "not_a_server_error,response_schema_conformance", "--phases", "coverage,fuzzing",
        "--max-examples", "3", "--max-time", "45", "--request-timeout", "10", "--seed", "7", "--workers", "2",
        "--exclude-path-regex", STREAMING, "--report", "junit", "--report-junit-path", str(report),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false", "NO_COLOR": "1",
             "SCHEMATHESIS_HOOKS": "tests.api.fuzz_hooks", "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 240)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    assert " passed" in text and "generated" in text, text[-2000:]
