"""``status.pull`` (the agent's pull progress) through the real API: kept as written, bad values refused
with a 422 naming the field."""

from __future__ import annotations

from tests.api.conftest import Api
from tests.api.test_contract import C, call, container, unique


async def test_a_pull_status_is_stored_as_written_and_a_negative_byte_count_is_refused_by_field(api: Api) -> None:
    name = unique("pull")
    status, created = await call(api, "POST", C, container(name))
    assert status == 201
    pull = {"image": "reg/app:1", "layers": [{"digest": "sha256:ab", "size": 10, "done": 4}],
            "bytesDone": 4, "bytesTotal": 10}
    status, written = await call(api, "PUT", f"{C}/{name}/status",
                                 {**created, "status": {"phase": "Pending", "pull": pull}})
    assert status == 200, written
    status, got = await call(api, "GET", f"{C}/{name}")
    assert got["status"]["pull"] == pull
    bad = {**pull, "layers": [{"digest": "sha256:ab", "size": 10, "done": -1}]}
    status, body = await call(api, "PUT", f"{C}/{name}/status", {**got, "status": {"pull": bad}})
    assert status == 422, body
    assert [d["field"] for d in body["error"]["details"]] == ["status.pull.layers[0].done"], body
