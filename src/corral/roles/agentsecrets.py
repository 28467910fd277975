"""The agent's side of Secrets: read them through the API, and keep secret volumes current.

``ApiSecrets`` is the reconciler's ``SecretSource``: a GET of one Secret by name (the API allows a
node only the Secrets its containers use), None when there is none. ``follow_secret_volumes`` runs
beside the reconcile workers: every ``period`` seconds it re-reads the Secrets of the running
containers that have secret volumes and rewrites the files that changed, in place (the container
sees the new content without a restart, as Kubernetes' kubelet does on its sync). A poll rather than
a watch: a node may not watch Secrets (it would see every one), and a GET per used Secret every
few seconds is cheap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from corral.api.client import ApiClient
from corral.model.errors import CorralError, NotFound
from corral.model.resources import Container, Secret
from corral.reconcile.pipeline import NodeReconciler

log = logging.getLogger(__name__)

FOLLOW_SECONDS = 2.0


class ApiSecrets:
    def __init__(self, api: ApiClient) -> None:
        self.api = api

    async def get_secret(self, namespace: str, name: str) -> Secret | None:
        try:
            return await self.api.get(Secret, name, namespace=namespace)
        except NotFound:
            return None


async def follow_secret_volumes(reconciler: NodeReconciler, containers: Callable[[], Iterable[Container]], *,
                                period: float = FOLLOW_SECONDS) -> None:
    """Until cancelled: rewrite changed secret files of the running containers (never logs values)."""
    while True:
        await asyncio.sleep(period)
        for obj in list(containers()):
            if obj.metadata.deletion_timestamp or not any(v.secret is not None for v in obj.spec.volumes):
                continue
            try:
                if await reconciler.refresh_secret_volumes(obj):
                    log.info("%s/%s: secret volume files updated", obj.metadata.namespace, obj.metadata.name)
            except CorralError as e:
                log.warning("%s/%s: refreshing secret volumes: %s", obj.metadata.namespace, obj.metadata.name, e.message)
