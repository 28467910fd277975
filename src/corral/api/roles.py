"""What a user's token may do: ``admin`` everything, ``edit`` workloads in its namespaces, ``view`` read.

- ``edit`` — read, create, update and delete every namespaced kind (Containers, Deployments, Volumes,
  Secrets, NetworkPolicies, …) in its namespaces, and read Events there; read Nodes and Namespaces.
  Never writes cluster-scoped objects (Nodes, Namespaces), tokens, the encryption key; never joins.
  Privileged workload features (hostPath, privileged, hostPorts below 1024, extra capabilities) are
  refused by the namespace's security level (``api/admission.py``) unless the namespace allows them.
- ``view`` — reads the same things and writes nothing; Secrets are shown with their keys but every
  value blanked (``redact_secret``), and it may not watch Secrets.

A token made with ``--namespace`` (one or more) may touch only those namespaces: a list across all
namespaces is refused (``-n`` names one), as is anything elsewhere. Every refusal names the token,
the verb, the kind and the namespace.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from corral.api.auth import Identity
from corral.model.errors import Forbidden
from corral.model.kinds import EVENTS, SECRETS, KindInfo

USER_ROLES = frozenset({"edit", "view"})
READ_VERBS = frozenset({"get", "list", "watch"})
Verb = Literal["get", "list", "watch", "create", "update", "status", "delete"]


def check(identity: Identity, verb: Verb, info: KindInfo, namespace: str) -> None:
    """Raise Forbidden unless an ``edit``/``view`` identity may do ``verb`` on ``info`` in ``namespace``."""
    who = identity.name
    where = f' in namespace "{namespace}"' if namespace else " across all namespaces"
    if verb not in READ_VERBS:
        if identity.role == "view":
            raise Forbidden(f"{who} (view) may not {verb} {info.plural}: a view token only reads")
        if not info.namespaced:
            raise Forbidden(f"{who} (edit) may not {verb} {info.plural}: only an admin changes cluster-wide objects")
        if info is EVENTS:
            raise Forbidden(f"{who} (edit) may not {verb} events")
    if identity.role == "view" and info is SECRETS and verb == "watch":
        raise Forbidden(f"{who} (view) may not watch secrets")
    if info.namespaced and identity.namespaces and namespace not in identity.namespaces:
        allowed = ", ".join(identity.namespaces)
        raise Forbidden(f"{who} may not {verb} {info.plural}{where}: it may touch only namespace(s) {allowed}")


def redact_secret(raw: bytes) -> bytes:
    """A Secret's JSON with every ``data`` value blanked (keys kept): what a view token sees."""
    doc = msgspec.json.decode(raw)
    if isinstance(doc, dict) and isinstance(doc.get("data"), dict):
        doc["data"] = {k: "" for k in doc["data"]}
    return msgspec.json.encode(doc)
