"""Every role's /metrics parses as Prometheus text and carries the series its operators need."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from corral.model.resources import Container, ContainerSpec, ObjectMeta
from tests.fixtures.cluster import Cluster, eventually
from tests.flow.test_deployments import corral_cli


def families(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """name → [(labels, value)] for every sample (the parser raises on anything malformed)."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


async def test_the_api_reports_requests_in_flight_group_commit_and_the_leaders_work(cluster: Cluster) -> None:
    made = await cluster.api.create(Container(metadata=ObjectMeta(name="metered"),
                                              spec=ContainerSpec(image=cluster.image, command=["sleep", "300"])))
    try:
        await cluster.wait_for("metered", lambda c: c.status.phase == "Running")
        got = families((await cluster.api.request("GET", "/metrics")).decode())
        routes = {labels["route"] for labels, _ in got["corral_api_requests_total"]}
        assert "/namespaces/{namespace}/containers" in routes
        assert got["corral_api_request_duration_seconds_count"], "a latency histogram per route"
        assert any(labels["kind"] == "watch" and value >= 1 for labels, value in got["corral_api_inflight_requests"])
        assert got["corral_etcd_group_commit_writes_total"][0][1] >= 1
        # the scheduler and controllers run in this control plane's process: their figures are here too
        assert got["corral_leader_is_leader"][0][1] == 1
        attempts = {labels["result"]: value for labels, value in got["corral_scheduler_attempts_total"]}
        assert attempts["bound"] >= 1
        assert {labels["controller"] for labels, _ in got["corral_controller_reconciles_total"]} >= {"deployments"}
        informed = {labels["prefix"]: value for labels, value in got["corral_informer_objects"]}
        assert informed["/corral/containers/"] >= 1 and "/corral/nodes/" in informed  # the leader's shared informers
    finally:
        await cluster.api.delete(Container, made.metadata.name)


async def test_the_agent_reports_its_syncs_fence_and_each_containers_cpu_and_memory(cluster: Cluster) -> None:
    await cluster.api.create(Container(metadata=ObjectMeta(name="sampled"),
                                       spec=ContainerSpec(image=cluster.image, command=["sleep", "300"])))
    url = f"http://127.0.0.1:{cluster.worker.metrics_port}/metrics"
    try:
        await cluster.wait_for("sampled", lambda c: c.status.phase == "Running")

        async def scraped() -> dict[str, list[tuple[dict[str, str], float]]]:
            async with aiohttp.ClientSession() as s, s.get(url) as r:
                assert r.status == 200
                got = families(await r.text())
            assert any(labels.get("name") == "sampled" and value > 0
                       for labels, value in got.get("corral_container_memory_bytes", []))
            return got

        got = await eventually(scraped, timeout=30, what="the agent samples the container's memory")
        assert got["corral_agent_fenced"][0][1] == 0
        assert {labels["result"] for labels, _ in got["corral_agent_syncs_total"]} == {"ok", "retry", "permanent",
                                                                                       "error"}
        assert any(labels == {"component": "agent", "outcome": "written"} and value >= 1  # Created, Started
                   for labels, value in got["corral_events_recorded_total"])
        assert got["corral_agent_sync_duration_seconds_count"][0][1] >= 1
    finally:
        await cluster.api.delete(Container, "sampled")


async def test_top_shows_a_busy_containers_cpu_and_memory_and_its_node_in_total(cluster: Cluster) -> None:
    await cluster.api.create(Container(metadata=ObjectMeta(name="busy"), spec=ContainerSpec(
        image=cluster.image, command=["sh", "-c", "while :; do :; done"])))
    try:
        await cluster.wait_for("busy", lambda c: c.status.phase == "Running")

        async def sampled() -> list[str]:
            code, out = await corral_cli(cluster, "top", "containers")
            assert code == 0, out
            row = next((line.split() for line in out.splitlines() if line.startswith("busy ")), None)
            assert row is not None, out
            assert row[1] == cluster.worker.name and int(row[2].rstrip("m")) >= 100, out  # a busy loop: ≥ 0.1 core
            assert row[3].endswith("Mi")
            return row

        await eventually(sampled, timeout=40, what="top shows the busy container's CPU")
        code, out = await corral_cli(cluster, "top", "nodes")
        assert code == 0, out
        node = next((line.split() for line in out.splitlines() if line.startswith(cluster.worker.name)), None)
        assert node is not None, out
        assert node[1].endswith("m") and node[2].endswith("%") and int(node[5]) >= 1, out
    finally:
        await cluster.api.delete(Container, "busy")
