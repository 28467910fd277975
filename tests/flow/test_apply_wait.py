"""``corral apply --wait``, ``--dry-run=server`` and ``corral diff`` against a real cluster."""

from __future__ import annotations

import uuid

from corral.model import errors
from corral.model.resources import Deployment
from tests.fixtures.cluster import Cluster
from tests.flow.test_deployments import corral_cli, delete_deployment


def manifest(name: str, image: str, *, replicas: int = 1, deadline: int = 600, command: str = "sleep") -> str:
    return f"""\
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  progressDeadlineSeconds: {deadline}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec: {{image: "{image}", command: [{command}, "300"]}}
"""


async def write(cluster: Cluster, text: str) -> str:
    path = cluster.worker.data_dir.parent / f"m-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(text)
    return str(path)


async def test_apply_wait_returns_once_the_rollout_is_done_and_1_when_it_cannot_progress(cluster: Cluster) -> None:
    good, bad = f"aw-{uuid.uuid4().hex[:5]}", f"aw-{uuid.uuid4().hex[:5]}"
    try:
        code, out = await corral_cli(cluster, "apply", "--wait", "--timeout", "60", "-f",
                                     await write(cluster, manifest(good, cluster.image, replicas=2)))
        assert code == 0, out
        assert f'deployment "{good}" successfully rolled out' in out
        code, out = await corral_cli(cluster, "apply", "--wait", "--timeout", "60", "-f",
                                     await write(cluster, manifest(bad, "127.0.0.1:1/none:1", deadline=2)))
        assert code == 1, out
        assert "progress deadline" in out
    finally:
        await delete_deployment(cluster, good)
        await delete_deployment(cluster, bad)


async def test_a_server_dry_run_stores_nothing_and_diff_shows_what_apply_would_change(cluster: Cluster) -> None:
    name = f"dr-{uuid.uuid4().hex[:5]}"
    path = await write(cluster, manifest(name, cluster.image))
    try:
        code, out = await corral_cli(cluster, "apply", "--dry-run=server", "-f", path)
        assert code == 0 and f"deployment/{name} created (server dry run)" in out, out
        try:
            await cluster.api.get(Deployment, name)
            raise AssertionError("a dry run stored the deployment")
        except errors.NotFound:
            pass
        code, out = await corral_cli(cluster, "diff", "-f", path)
        assert code == 1 and f"+++ deployment/{name} (file)" in out, out
        assert (await corral_cli(cluster, "apply", "-f", path))[0] == 0
        code, out = await corral_cli(cluster, "diff", "-f", path)
        assert code == 0 and out == "", out
        changed = await write(cluster, manifest(name, cluster.image, replicas=3))
        code, out = await corral_cli(cluster, "diff", "-f", changed)
        assert code == 1 and "-  replicas: 1" not in out and "+  replicas: 3" in out, out
    finally:
        await delete_deployment(cluster, name)
