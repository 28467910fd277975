"""Node condition types and the taints they stand for: the agent reports the condition in its Node's
status (roles/agenthygiene.py), the control plane's controller taints the Node by it
(controllers/nodeconditions.py). Here, apart from both, so a worker need not import a controller
(and with it the control plane's object store, strategies and validation: 18 modules, ~0.9 MiB).
"""

from __future__ import annotations

DISK_PRESSURE = "DiskPressure"
DISK_PRESSURE_TAINT = "corral.io/disk-pressure"
