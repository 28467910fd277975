"""What a worker process loads: the agent's memory goal (≤ 60 MB, docs/benchmarks.md) is mostly modules.

Each module named here cost a worker megabytes it never used (measured with ``/proc/<pid>/smaps``):
cryptography (its Rust extension 8 MiB resident; node credentials are made in a child process),
pyroute2's NDB/IPDB and sqlite3 (its package ``__init__``), croniter and dateutil (cron schedules),
prometheus_client (~1 MiB; loaded only by a worker that serves its metrics, ``--metrics-listen``)."""

from __future__ import annotations

import subprocess
import sys

NEVER_IN_A_WORKER = ("cryptography", "bcrypt", "pyroute2.ndb.main", "pyroute2.ipdb", "sqlite3", "croniter",
                     "dateutil", "rich", "jsonpatch", "corral.api.server", "corral.scheduler", "corral.tls.pki",
                     "prometheus_client")


def test_the_worker_role_loads_none_of_the_libraries_only_the_control_plane_or_the_cli_uses() -> None:
    probe = ("import sys, corral.cli.serve, corral.roles.agent; "
             f"print(' '.join(m for m in {NEVER_IN_A_WORKER!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []
