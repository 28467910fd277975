"""How a corral container is named in the world: containerd ids, labels, netns, directories.

Everything the agent creates carries the container's uid, so the agent can always tell, from the
world alone, which desired container a leftover belonged to.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from corral.model.resources import Container

LABEL_UID = "corral/uid"
LABEL_NAMESPACE = "corral/namespace"
LABEL_NAME = "corral/name"
LABEL_GENERATION = "corral/generation"
LABEL_NODE = "corral/node"
# why the task's last run ended, written on the containerd record when it happens and cleared
# before the next start: the record outlives the agent, so a restarted agent still says it
LABEL_OOM_KILLED = "corral/oom-killed"  # "true": the kernel's OOM killer ended the last run
LABEL_KILLED_BY = "corral/killed-by"  # the agent killed the last run, and why ("LivenessProbeFailed: …")
ENDED_LABELS = (LABEL_OOM_KILLED, LABEL_KILLED_BY)


def containerd_id(obj: Container) -> str:
    """One containerd container per (uid, generation): a spec change is a new containerd container."""
    return f"{obj.metadata.namespace}.{obj.metadata.name}.{obj.metadata.uid[:8]}.{obj.metadata.generation}"


def labels(obj: Container, *, node: str) -> dict[str, str]:
    return {
        LABEL_UID: obj.metadata.uid,
        LABEL_NAMESPACE: obj.metadata.namespace,
        LABEL_NAME: obj.metadata.name,
        LABEL_GENERATION: str(obj.metadata.generation),
        LABEL_NODE: node,
    }


def netns_prefix(data_dir: Path) -> str:
    """The agent's own netns name prefix, from its data dir: agents sharing a host never see, nor
    sweep, each other's namespaces."""
    return "corral-" + hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:8] + "-"
