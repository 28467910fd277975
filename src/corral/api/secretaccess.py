"""Which Secrets a node may read: only those a container bound to it uses.

An agent reads a Secret by name (``GET``, never a list or a watch) when it starts a container that
uses it — an env ``secretKeyRef``, a ``secret`` volume or an ``imagePullSecrets`` entry — and again
while such a container runs (secret volumes follow the Secret). The API answers a node only for a
Secret some container bound to that node, in the Secret's namespace, names: the check reads the
container watch cache (``byNode``), so it costs no etcd read. A node that is compromised can thus
read the Secrets of its own containers, and no others.
"""

from __future__ import annotations

from corral.api.watchcache import WatchCache
from corral.model.errors import Forbidden
from corral.model.resources import Container, ContainerSpec


def secret_names(spec: ContainerSpec) -> set[str]:
    """Every Secret a container spec uses."""
    used = {e.value_from.secret_key_ref.name for e in spec.env
            if e.value_from is not None and e.value_from.secret_key_ref is not None}
    used.update(v.secret.secret_name for v in spec.volumes if v.secret is not None)
    used.update(r.name for r in spec.image_pull_secrets)
    return used


def node_may_read_secret(containers: WatchCache, *, node: str, namespace: str, name: str) -> None:
    for entry in containers.matching(lambda o: o.metadata.namespace == namespace, node=node):
        obj = entry.obj
        if isinstance(obj, Container) and name in secret_names(obj.spec):
            return
    raise Forbidden(f"node:{node} may not read secret {namespace}/{name}: no container bound to it uses it")
