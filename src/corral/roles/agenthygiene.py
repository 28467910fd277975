"""The agent's node hygiene: image garbage collection with an Event per removal, and the
``DiskPressure`` Node condition that keeps new containers away while the disk is full.

``reconcile/imagegc.py`` decides (fill level, which images, in what order); this module is where
its findings meet the API:

- each removed image is an Event on this Node (reason ``ImageGCRemoved``);
- disk pressure, when it changes, becomes the ``DiskPressure`` condition in the Node's status
  (``condition`` is also what the agent's own full status writes carry, so a heartbeat never drops
  it). A node may not change its own taints (NodeRestriction): the control plane's
  ``controllers/nodeconditions.py`` turns the condition into the ``corral.io/disk-pressure:NoSchedule``
  taint, as Kubernetes taints nodes by condition, so the scheduler's taint filter keeps new
  containers off the node. Running containers are not evicted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from corral.api.client import ApiClient
from corral.model import errors
from corral.model.conditions import DISK_PRESSURE, DISK_PRESSURE_TAINT
from corral.model.lifecycle import now_rfc3339
from corral.model.resources import Condition, Node, NodeStatus, ObjectMeta
from corral.reconcile.imagegc import Usage

log = logging.getLogger(__name__)
MIB = 1024 * 1024
__all__ = ["DISK_PRESSURE", "DISK_PRESSURE_TAINT", "DiskPressureReporter", "removal_message"]


def removal_message(name: str, size: int, usage: Usage, *, low: int) -> str:
    return (f"removed unused image {name} ({size / MIB:.1f} MiB): the image filesystem was "
            f"{usage.percent:.0f}% full, image GC frees space down to {low}%")


class DiskPressureReporter:
    """Writes the DiskPressure condition when the pressure changes (retried on the next pass when the
    API could not be reached)."""

    def __init__(self, api: ApiClient, node: str, *, threshold: int, status: Callable[[], NodeStatus]) -> None:
        self.api = api
        self.node = node
        self.threshold = threshold
        self.status = status
        self.condition: Condition | None = None
        self._reported: bool | None = None

    async def report(self, pressure: bool, usage: Usage) -> None:
        if pressure == self._reported:
            return
        message = f"the image filesystem is {usage.percent:.0f}% full (pressure from {self.threshold}%)"
        self.condition = Condition(type=DISK_PRESSURE, status="True" if pressure else "False",
                                   reason="DiskFull" if pressure else "DiskHasRoom", message=message,
                                   last_transition_time=now_rfc3339())
        try:
            await self.api.update_status(Node(metadata=ObjectMeta(name=self.node), status=self.status()))
        except errors.CorralError as e:
            log.warning("could not report disk pressure %s: %s", pressure, e)
            return
        if pressure or self._reported:
            log.warning("node %s disk pressure %s: %s", self.node, "on" if pressure else "off", message)
        self._reported = pressure
