"""The create-container flow end to end: API → etcd → scheduler → agent → containerd/CNI → status."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp
from click.testing import CliRunner

from corral.cli.main import cli
from corral.model import errors
from corral.model.resources import (
    Container,
    ContainerPort,
    ContainerSpec,
    EmptyDirSource,
    Event,
    ObjectMeta,
    ResourceList,
    ResourceRequirements,
    Volume,
    VolumeMount,
    VolumeSource,
)
from corral.runtime.client import Client
from corral.runtime.containers import list_containers
from corral.store.embedded import free_port
from tests.fixtures.cluster import TEST_CLUSTER_CIDR, Cluster, eventually


def running(c: Container) -> bool:
    return c.status.phase == "Running" and bool(c.status.ip) and not c.status.reason


async def http_get(url: str) -> str:
    async with aiohttp.ClientSession() as s, s.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
        assert r.status == 200
        return await r.text()


async def delete_and_wait(cluster: Cluster, name: str, *, namespace: str = "default") -> None:
    with contextlib.suppress(errors.NotFound):
        await cluster.api.delete(Container, name, namespace=namespace, grace_period=1)

    async def gone() -> None:
        try:
            await cluster.api.get(Container, name, namespace=namespace)
        except errors.NotFound:
            return
        raise AssertionError("still there")

    await eventually(gone, timeout=30, what=f"{name} is deleted")


async def test_a_posted_container_runs_with_an_ip_that_answers_on_its_port_and_host_port(cluster: Cluster) -> None:
    host_port = free_port()
    web = Container(
        metadata=ObjectMeta(name="web", labels={"app": "web"}),
        spec=ContainerSpec(image=cluster.image, command=["httpd", "-f", "-p", "8080", "-h", "/var/www"],
                           ports=[ContainerPort(container_port=8080, host_port=host_port)],
                           resources=ResourceRequirements(requests=ResourceList(cpu="50m", memory="16Mi"),
                                                          limits=ResourceList(memory="64Mi"))),
    )
    await cluster.api.create(web)
    obj = await cluster.wait_for("web", running, timeout=60)
    worker = cluster.worker
    assert obj.spec.node == "node-1" and obj.status.container_id and obj.status.started_at
    body = await eventually(lambda: http_get(f"http://{obj.status.ip}:8080/"), what="the container's IP answers")
    assert "hello from corral" in body
    body = await eventually(lambda: http_get(f"http://127.0.0.1:{host_port}/"), what="the host port answers")
    assert "hello from corral" in body

    uid = obj.metadata.uid
    # the node masquerades its subnet with one rule, not a chain per container
    check = await asyncio.create_subprocess_exec(
        "iptables", "-w", "-t", "nat", "-C", "POSTROUTING", "-s", worker.pod_cidr, "!", "-d", TEST_CLUSTER_CIDR,
        "-m", "comment", "--comment", f"corral {worker.bridge}", "-j", "MASQUERADE")
    assert await check.wait() == 0
    # while it runs, its traces are where the checks below look for them
    assert (worker.agent_dir / "network" / f"{uid}.json").exists()
    assert [p for p in Path("/var/run/netns").glob(f"corral-*{uid}")]
    assert [p for p in (worker.agent_dir / "ipam").rglob("*") if p.is_file() and uid in p.read_text(errors="ignore")]
    assert (worker.agent_dir / "containers" / uid).is_dir()
    await delete_and_wait(cluster, "web")
    async with Client(worker.containerd.socket) as client:
        assert await list_containers(client, {"corral/uid": uid}) == []
    assert not [p for p in Path("/var/run/netns").glob(f"corral-*{uid}")]
    assert not (worker.agent_dir / "network" / f"{uid}.json").exists()
    ipam = worker.agent_dir / "ipam"
    held = [p for p in ipam.rglob("*") if p.is_file() and uid in p.read_text(errors="ignore")] if ipam.exists() else []
    assert held == []
    assert not (worker.agent_dir / "containers" / uid).exists()


async def test_restart_policies_decide_what_happens_after_an_exit(cluster: Cluster) -> None:
    def make(name: str, policy: str, code: int) -> Container:
        return Container(metadata=ObjectMeta(name=name),
                         spec=ContainerSpec(image=cluster.image, command=["sh", "-c", f"exit {code}"],
                                            restart_policy=policy))  # type: ignore[arg-type]

    await cluster.api.create(make("never-fails", "Never", 3))
    await cluster.api.create(make("onfailure-ok", "OnFailure", 0))
    await cluster.api.create(make("always-crashes", "Always", 1))
    failed = await cluster.wait_for("never-fails", lambda c: c.status.phase == "Failed", timeout=60)
    assert failed.status.exit_code == 3 and failed.status.restart_count == 0 and failed.status.reason == "Error"
    ok = await cluster.wait_for("onfailure-ok", lambda c: c.status.phase == "Succeeded", timeout=60)
    assert ok.status.exit_code == 0 and ok.status.restart_count == 0
    crash = await cluster.wait_for("always-crashes", lambda c: c.status.restart_count >= 2, timeout=60)
    assert crash.status.exit_code == 1
    backing_off = await cluster.wait_for("always-crashes", lambda c: c.status.reason == "CrashLoopBackOff", timeout=30)
    assert "back-off" in backing_off.status.message
    for name in ("never-fails", "onfailure-ok", "always-crashes"):
        await delete_and_wait(cluster, name)


async def test_a_container_that_fits_nowhere_stays_pending_with_the_reason(cluster: Cluster) -> None:
    huge = Container(metadata=ObjectMeta(name="huge"),
                     spec=ContainerSpec(image=cluster.image,
                                        resources=ResourceRequirements(requests=ResourceList(memory="100Ti"))))
    await cluster.api.create(huge)
    obj = await cluster.wait_for("huge", lambda c: c.status.reason == "Unschedulable")
    assert obj.status.phase == "Pending" and not obj.spec.node
    assert obj.status.message == "0/1 nodes available: 1 insufficient memory"

    async def said() -> None:
        events, _ = await cluster.api.list(Event, field_selector="reason=FailedScheduling")
        assert [(e.spec.type, e.spec.message) for e in events if e.spec.involved_object.uid == obj.metadata.uid] == [
            ("Warning", "0/1 nodes available: 1 insufficient memory")]

    await eventually(said, timeout=10, what="a FailedScheduling Event says so too")
    why = await asyncio.to_thread(
        CliRunner().invoke, cli,
        ["why-not", "huge", "--server", cluster.plane.url, "--token", cluster.plane.admin_token],
        env={"CORRAL_CA": str(cluster.plane.ca_file)},
    )
    assert why.exit_code == 0, why.output
    assert "node-1" in why.output and "insufficient memory" in why.output
    await delete_and_wait(cluster, "huge")


async def test_a_container_that_cannot_be_created_on_its_node_says_why_in_its_status_and_events(
        cluster: Cluster) -> None:
    await cluster.api.create(Container(metadata=ObjectMeta(name="nobody"),
                                       spec=ContainerSpec(image=cluster.image, command=["true"], user="nosuchuser")))
    try:
        obj = await cluster.wait_for("nobody", lambda c: c.status.reason == "CreateContainerError", timeout=30)
        assert obj.status.phase == "Pending" and obj.spec.node == cluster.worker.name
        assert obj.status.message.startswith("user 'nosuchuser' is not in the image's /etc/passwd"), obj.status.message

        async def said() -> None:
            events, _ = await cluster.api.list(Event, field_selector="reason=FailedSync")
            mine = [e for e in events if e.spec.involved_object.uid == obj.metadata.uid]
            assert [(e.spec.type, e.spec.message, e.spec.source.node) for e in mine] == [
                ("Warning", obj.status.message, cluster.worker.name)]

        await eventually(said, timeout=10, what="a FailedSync Event from the node")
    finally:
        await delete_and_wait(cluster, "nobody")


async def test_a_named_volume_keeps_its_data_when_its_container_is_replaced(cluster: Cluster) -> None:
    await cluster.api.create(Volume(metadata=ObjectMeta(name="data")))

    def writer(name: str, command: str) -> Container:
        return Container(metadata=ObjectMeta(name=name),
                         spec=ContainerSpec(image=cluster.image, command=["sh", "-c", command], restart_policy="Never",
                                            volumes=[VolumeSource(name="d", volume="data"),
                                                     VolumeSource(name="scratch", empty_dir=EmptyDirSource())],
                                            volume_mounts=[VolumeMount(name="d", mount_path="/data"),
                                                           VolumeMount(name="scratch", mount_path="/scratch")]))

    await cluster.api.create(writer("first", "echo kept > /data/file && echo gone > /scratch/file"))
    await cluster.wait_for("first", lambda c: c.status.phase == "Succeeded", timeout=60)
    await delete_and_wait(cluster, "first")
    await cluster.api.create(writer("second", "cat /data/file && test ! -e /scratch/file"))
    second = await cluster.wait_for("second", lambda c: c.status.phase in ("Succeeded", "Failed"), timeout=60)
    assert second.status.phase == "Succeeded", second.status
    body = await cluster.api.request("GET", "/namespaces/default/containers/second/logs")
    assert body.decode().strip() == "kept"
    await delete_and_wait(cluster, "second")
    volume_dir = cluster.worker.agent_dir / "volumes" / "named" / "default" / "data"
    assert volume_dir.is_dir()  # outlives its containers

    await cluster.api.delete(Volume, "data")

    async def gone() -> None:
        assert not volume_dir.exists()

    await eventually(gone, timeout=30, what="the volume's directory goes with the Volume")


async def test_logs_come_through_the_api_and_can_be_followed(cluster: Cluster) -> None:
    await cluster.api.create(Container(
        metadata=ObjectMeta(name="talker"),
        spec=ContainerSpec(image=cluster.image, command=["sh", "-c", "echo one; echo two >&2; sleep 1; echo three; sleep 600"]),
    ))
    await cluster.wait_for("talker", running, timeout=60)

    async def three_lines() -> list[str]:
        text = (await cluster.api.request("GET", "/namespaces/default/containers/talker/logs")).decode()
        lines = text.splitlines()
        # one stream keeps its order; stdout and stderr are two pipes, read as they come (as in the CRI)
        assert sorted(lines) == ["one", "three", "two"] and lines.index("one") < lines.index("three"), lines
        return lines

    await eventually(three_lines, timeout=15, what="logs")
    tail = (await cluster.api.request("GET", "/namespaces/default/containers/talker/logs", params={"tail": "1"})).decode()
    assert tail.splitlines() == ["three"]
    await delete_and_wait(cluster, "talker")


async def test_many_containers_created_at_once_all_run_once(cluster: Cluster) -> None:
    names = [f"burst-{i}" for i in range(10)]
    await asyncio.gather(*(cluster.api.create(Container(
        metadata=ObjectMeta(name=n), spec=ContainerSpec(image=cluster.image, command=["sleep", "600"]))) for n in names))
    for n in names:
        await cluster.wait_for(n, running, timeout=60)
    async with Client(cluster.worker.containerd.socket) as client:
        found = await list_containers(client, {"corral/node": "node-1"})
    assert sorted(c.labels["corral/name"] for c in found if c.labels["corral/name"].startswith("burst-")) == names
    await asyncio.gather(*(delete_and_wait(cluster, n) for n in names))


async def test_a_spec_change_replaces_the_running_process_with_the_new_generation(cluster: Cluster) -> None:
    await cluster.api.create(Container(
        metadata=ObjectMeta(name="changing"),
        spec=ContainerSpec(image=cluster.image, command=["sh", "-c", 'trap "exit 0" TERM; echo v1; sleep 600 & wait'],
                           termination_grace_period_seconds=5),
    ))
    first = await cluster.wait_for("changing", running, timeout=60)
    first.spec.command = ["sh", "-c", 'trap "exit 0" TERM; echo v2; sleep 600 & wait']
    await cluster.api.update(first)
    second = await cluster.wait_for(
        "changing", lambda c: running(c) and c.status.container_id != first.status.container_id, timeout=60)
    assert second.metadata.generation == 2 and second.status.container_id.endswith(".2")
    async with Client(cluster.worker.containerd.socket) as client:
        ids = [c.id for c in await list_containers(client, {"corral/uid": first.metadata.uid})]
    assert ids == [second.status.container_id]  # the old generation is gone, not left beside it
    await delete_and_wait(cluster, "changing")
