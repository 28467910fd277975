"""Secrets in real containers: env values, files on tmpfs that follow the Secret, registry credentials."""

from __future__ import annotations

import base64
import json

import pytest

from corral.model.resources import (
    Container,
    ContainerSpec,
    EnvVar,
    EnvVarSource,
    LocalObjectReference,
    ObjectMeta,
    Secret,
    SecretKeySelector,
    SecretVolumeSource,
    VolumeMount,
    VolumeSource,
)
from tests.fixtures.cluster import Cluster, eventually
from tests.fixtures.registry import Registry
from tests.flow.test_create_flow import delete_and_wait, running

PLAIN = "s3cr3t-flow-value"


async def logs(cluster: Cluster, name: str) -> str:
    return (await cluster.api.request("GET", f"/namespaces/default/containers/{name}/logs")).decode()


async def test_a_secret_reaches_env_and_a_read_only_file_and_the_file_follows_the_secret(cluster: Cluster) -> None:
    await cluster.api.create(Secret(metadata=ObjectMeta(name="app-creds"), string_data={"password": PLAIN}))
    script = ('echo "env=$PASSWORD"; stat -c "mode=%a" /etc/creds/password; mount | grep " /etc/creds " ; '
              'while true; do echo "file=$(cat /etc/creds/password)"; sleep 0.5; done')
    ctr = Container(
        metadata=ObjectMeta(name="uses-secret"),
        spec=ContainerSpec(
            image=cluster.image, command=["sh", "-c", script],
            env=[EnvVar("PASSWORD", value_from=EnvVarSource(secret_key_ref=SecretKeySelector("app-creds", "password")))],
            volumes=[VolumeSource("creds", secret=SecretVolumeSource(secret_name="app-creds"))],
            volume_mounts=[VolumeMount("creds", "/etc/creds")],
            termination_grace_period_seconds=1,
        ),
    )
    await cluster.api.create(ctr)
    try:
        await cluster.wait_for("uses-secret", running, timeout=60)

        async def seen() -> str:
            text = await logs(cluster, "uses-secret")
            assert f"env={PLAIN}" in text and f"file={PLAIN}" in text
            return text

        text = await eventually(seen, timeout=20, what="the secret in env and file")
        assert "mode=400" in text
        assert " ro" in text or "(ro" in text  # the volume is mounted read-only
        # the Secret changes: the file changes in place, without a restart
        secret = await cluster.api.get(Secret, "app-creds")
        secret.string_data = {"password": "rotated-value"}
        await cluster.api.update(secret)

        async def updated() -> None:
            assert "file=rotated-value" in await logs(cluster, "uses-secret")

        await eventually(updated, timeout=20, what="the file follows the Secret")
        assert (await cluster.api.get(Container, "uses-secret")).status.restart_count == 0
        # nothing of the value leaks into Events
        events = await cluster.api.request("GET", "/namespaces/default/events")
        assert PLAIN.encode() not in events and b"rotated-value" not in events
    finally:
        await delete_and_wait(cluster, "uses-secret")


async def test_a_missing_secret_makes_the_container_wait_with_a_clear_reason(cluster: Cluster) -> None:
    ctr = Container(
        metadata=ObjectMeta(name="waits-for-secret"),
        spec=ContainerSpec(
            image=cluster.image, command=["sh", "-c", "echo got=$TOKEN; sleep 3600"],
            env=[EnvVar("TOKEN", value_from=EnvVarSource(secret_key_ref=SecretKeySelector("later", "token")))],
            termination_grace_period_seconds=1,
        ),
    )
    await cluster.api.create(ctr)
    try:
        c = await cluster.wait_for("waits-for-secret", lambda c: c.status.reason == "CreateContainerConfigError",
                                   timeout=60)
        assert c.status.phase == "Pending" and '"later"' in c.status.message
        await cluster.api.create(Secret(metadata=ObjectMeta(name="later"), string_data={"token": "arrived"}))
        await cluster.wait_for("waits-for-secret", running, timeout=60)

        async def seen() -> None:
            assert "got=arrived" in await logs(cluster, "waits-for-secret")

        await eventually(seen, timeout=20, what="the env value once the Secret exists")
    finally:
        await delete_and_wait(cluster, "waits-for-secret")


def docker_config(registry: Registry, *, password: str) -> str:
    auth = base64.b64encode(f"{registry.username}:{password}".encode()).decode()
    return json.dumps({"auths": {registry.host: {"auth": auth}}})


@pytest.mark.timeout(240)
async def test_a_private_registry_pulls_with_an_image_pull_secret_and_fails_clearly_without(
        cluster: Cluster, auth_registry: Registry) -> None:
    assert auth_registry.password is not None
    spec = dict(image=auth_registry.ref, command=["sh", "-c", "echo pulled; sleep 3600"],
                termination_grace_period_seconds=1)
    await cluster.api.create(Container(metadata=ObjectMeta(name="no-pull-secret"), spec=ContainerSpec(**spec)))  # type: ignore[arg-type]
    try:
        c = await cluster.wait_for("no-pull-secret", lambda c: c.status.reason in ("ImagePullFailed", "ImagePullBackOff"),
                                   timeout=60)
        assert "unauthorized" in c.status.message and "imagePullSecrets" in c.status.message, c.status.message
    finally:
        await delete_and_wait(cluster, "no-pull-secret")
    await cluster.api.create(Secret(metadata=ObjectMeta(name="regcred"), type="corral.io/dockerconfigjson",
                                    string_data={".dockerconfigjson": docker_config(auth_registry,
                                                                                    password=auth_registry.password)}))
    await cluster.api.create(Container(metadata=ObjectMeta(name="with-pull-secret"),
                                       spec=ContainerSpec(**spec, image_pull_secrets=[LocalObjectReference("regcred")])))  # type: ignore[arg-type]
    try:
        await cluster.wait_for("with-pull-secret", running, timeout=90)
    finally:
        await delete_and_wait(cluster, "with-pull-secret")
