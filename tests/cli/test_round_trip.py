"""The user commands against a real control plane: apply, get, describe, delete, run, and their errors."""

from __future__ import annotations

import asyncio
import contextlib
import json

from corral.api.client import ApiClient
from corral.cli import tables
from corral.cli.get import Printer, follow
from corral.model.kinds import BY_KIND, KINDS
from corral.model.resources import Container, ContainerSpec, ObjectMeta
from tests.cli.conftest import Corral
from tests.fixtures.control import RunningControl

MANIFEST = """\
apiVersion: corral/v1
kind: Container
metadata: {name: web, namespace: cli-rt, labels: {app: web}}
spec:
  image: 127.0.0.1:5000/busybox:1
  command: [httpd, -f, -p, "8080"]
  ports: [{containerPort: 8080, hostPort: 18080}]
---
kind: Container
metadata: {name: db, namespace: cli-rt}
spec: {image: "127.0.0.1:5000/busybox:1", resources: {limits: {memory: 64Mi}}}
---
kind: Namespace
metadata: {name: cli-rt}
"""


async def test_a_file_of_a_namespace_and_two_containers_goes_through_apply_get_describe_and_delete(
        corral: Corral) -> None:
    first = await corral("apply", "-f", "-", stdin=MANIFEST)
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines() == ["namespace/cli-rt created", "container/web created", "container/db created"]

    table = await corral("get", "containers", "-n", "cli-rt")
    assert table.exit_code == 0, table.output
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["NAME", "STATUS", "NODE", "IP", "RESTARTS", "AGE"]
    assert [r.split()[0] for r in rows] == ["db", "web"]
    assert {r.split()[1] for r in rows} <= {"Pending", "Unschedulable"}  # no nodes: nothing can run them

    listed = await corral("get", "ctr", "-n", "cli-rt", "-o", "json")
    doc = json.loads(listed.stdout)
    assert doc["kind"] == "ContainerList"
    assert {i["metadata"]["name"]: i["spec"]["image"] for i in doc["items"]} == {
        "web": "127.0.0.1:5000/busybox:1", "db": "127.0.0.1:5000/busybox:1"}

    again = await corral("apply", "-f", "-", stdin=MANIFEST)
    assert again.stdout.splitlines() == ["namespace/cli-rt unchanged", "container/web unchanged",
                                         "container/db unchanged"]

    changed = await corral("apply", "-f", "-", stdin=MANIFEST.replace("memory: 64Mi", "memory: 128Mi"))
    assert changed.exit_code == 0, changed.output
    assert "container/db configured" in changed.stdout.splitlines()
    assert "container/web unchanged" in changed.stdout.splitlines()

    described = await corral("describe", "container", "db", "-n", "cli-rt")
    assert described.exit_code == 0, described.output
    text = described.stdout
    assert "Name:               db" in text and "Namespace:          cli-rt" in text
    assert "memory: 128Mi" in text and "phase: Pending" in text and "Generation:         2" in text
    assert "Events:" in text

    deleted = await corral("delete", "containers", "db", "web", "-n", "cli-rt")
    assert deleted.exit_code == 0, deleted.output
    assert deleted.stdout.splitlines() == ["container/db deleted", "container/web deleted"]

    gone = await corral("get", "container", "db", "-n", "cli-rt")
    assert gone.exit_code == 1
    assert gone.stderr.strip() == 'error: container "db" in namespace "cli-rt" not found'

    empty = await corral("get", "containers", "-n", "cli-rt")
    assert empty.exit_code == 0 and empty.stdout == ""
    assert 'No containers found in namespace "cli-rt".' in empty.stderr


async def test_bad_yaml_is_one_sentence_with_its_line_and_exit_code_1(corral: Corral) -> None:
    result = await corral("apply", "-f", "-", stdin="kind: Container\nmetadata: {name: x\nspec: [\n")
    assert result.exit_code == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: standard input is not valid YAML or JSON at line 3")


async def test_an_unknown_kind_is_named_along_with_the_kinds_there_are(corral: Corral) -> None:
    result = await corral("apply", "-f", "-", stdin="kind: Gizmo\nmetadata: {name: x}\n")
    assert result.exit_code == 1
    assert result.stderr.strip() == ("error: document 1 of standard input: unknown kind 'Gizmo'; the kinds are: "
                                     + ", ".join(k.plural for k in KINDS))
    assert "namespaces, containers, nodes, deployments" in result.stderr
    listed = await corral("get", "gizmos")
    assert listed.exit_code == 1 and "unknown kind 'gizmos'" in listed.stderr


async def test_an_invalid_spec_names_every_bad_field_on_its_own_line(corral: Corral) -> None:
    manifest = "kind: Container\nmetadata: {name: bad}\nspec: {resources: {limits: {memory: lots}}}\n"
    result = await corral("apply", "-f", "-", stdin=manifest)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "error: container/bad is invalid (2 problems):"
    assert lines[1].startswith("  spec.image: is required")
    assert lines[2].startswith("  spec.resources.limits.memory: 'lots'")


async def test_run_creates_a_container_from_its_flags_and_the_command_after_the_dashes(corral: Corral) -> None:
    result = await corral("run", "sleeper", "--image", "127.0.0.1:5000/busybox:1", "--cpu", "250m",
                          "--memory", "64Mi", "-p", "18081:8080", "-e", "GREETING=hi", "-l", "app=sleepy",
                          "--restart", "Never", "--", "sleep", "100")
    assert result.exit_code == 0, result.output
    assert result.stdout == "container/sleeper created\n"
    shown = await corral("get", "containers", "sleeper", "-o", "yaml")
    assert "kind: Container" in shown.stdout
    got = await corral("get", "containers", "sleeper", "-o", "json")
    spec = json.loads(got.stdout)["spec"]
    assert spec["command"] == ["sleep", "100"]
    assert spec["env"] == [{"name": "GREETING", "value": "hi"}]
    assert spec["ports"] == [{"containerPort": 8080, "hostPort": 18081}]
    assert spec["resources"]["limits"] == {"cpu": "250m", "memory": "64Mi"}
    assert spec["restartPolicy"] == "Never"
    labelled = await corral("get", "containers", "-l", "app=sleepy", "-o", "name")
    assert labelled.stdout == "container/sleeper\n"
    assert (await corral("delete", "container", "sleeper")).exit_code == 0


async def test_creating_a_namespace_twice_says_it_already_exists(corral: Corral) -> None:
    first = await corral("create", "namespace", "cli-twice")
    assert first.stdout == "namespace/cli-twice created\n"
    second = await corral("create", "namespace", "cli-twice")
    assert second.exit_code == 1
    assert second.stderr == 'error: namespace/cli-twice: namespace "cli-twice" already exists\n'



async def test_get_watch_prints_the_table_then_a_row_for_each_change(control_plane: RunningControl) -> None:
    lines: list[str] = []
    three = asyncio.Event()

    def echo(line: str) -> None:
        lines.append(line)
        if len(lines) >= 3:
            three.set()

    only_w1 = "metadata.name=watched"
    async with ApiClient(control_plane.url, control_plane.admin_token, ssl_context=control_plane.ssl) as client:
        await client.create(Container(metadata=ObjectMeta(name="watched", namespace="default"),
                                      spec=ContainerSpec(image="127.0.0.1:5000/busybox:1")))
        items, rv = await client.list(Container, namespace="default", field_selector=only_w1)
        printer = Printer(BY_KIND["Container"], "table", all_namespaces=False, ctx=tables.Context(), echo=echo)
        printer.table(items)
        watching = asyncio.create_task(follow(client, printer, namespace="default", items=items, rv=rv,
                                              label_selector="", field_selector=only_w1))
        try:
            await client.delete(Container, "watched")
            await asyncio.wait_for(three.wait(), 10)
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
    assert lines[0].split()[:2] == ["NAME", "STATUS"]
    assert lines[1].split()[0] == "watched"
    assert lines[2].split()[0] == "watched"  # the DELETED event, a row of its own
    status_at = lines[0].index("STATUS")
    assert all(line.index(line.split()[1]) == status_at for line in lines)  # later rows keep the columns
