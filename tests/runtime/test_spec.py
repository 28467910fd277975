"""The OCI spec builder, on plain data: argv rules, env, user, limits, mounts, namespaces, defaults."""

from __future__ import annotations

import json
from typing import Any

import pytest

from corral.model.errors import Invalid
from corral.runtime.spec import BindMount, ImageConfig, build_spec, cpu_shares, process_args, resolve_user

IMAGE = ImageConfig(
    entrypoint=("/bin/entry",),
    cmd=("--serve",),
    env=("PATH=/bin", "GREETING=hello"),
    working_dir="/app",
    user="",
)


def spec(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"container_id": "c1", "image_config": IMAGE}
    base.update(kw)
    return build_spec(**base)


def test_the_image_entrypoint_and_cmd_run_when_the_container_gives_neither() -> None:
    assert process_args(IMAGE, command=(), args=()) == ["/bin/entry", "--serve"]


def test_command_replaces_both_entrypoint_and_cmd() -> None:
    assert process_args(IMAGE, command=["sh", "-c"], args=()) == ["sh", "-c"]
    assert process_args(IMAGE, command=["sh", "-c"], args=["echo hi"]) == ["sh", "-c", "echo hi"]


def test_args_alone_replace_only_the_cmd() -> None:
    assert process_args(IMAGE, command=(), args=["--debug"]) == ["/bin/entry", "--debug"]


def test_a_container_with_nothing_to_run_is_invalid_and_names_the_field() -> None:
    with pytest.raises(Invalid) as caught:
        process_args(ImageConfig(), command=(), args=())
    assert caught.value.details[0].field == "command"


def test_container_env_overrides_and_extends_image_env_in_order() -> None:
    env = spec(env={"GREETING": "hi", "EXTRA": "1"})["process"]["env"]
    assert env == ["PATH=/bin", "GREETING=hi", "EXTRA=1"]


def test_path_is_defaulted_when_the_image_sets_none() -> None:
    env = build_spec(container_id="c", image_config=ImageConfig(cmd=("x",)))["process"]["env"]
    assert env[0].startswith("PATH=/usr/local/sbin")


def test_working_dir_comes_from_the_container_then_the_image_then_root() -> None:
    assert spec()["process"]["cwd"] == "/app"
    assert spec(working_dir="/tmp")["process"]["cwd"] == "/tmp"
    plain = build_spec(container_id="c", image_config=ImageConfig(cmd=("x",)))
    assert plain["process"]["cwd"] == "/"


def test_a_relative_working_dir_is_invalid() -> None:
    with pytest.raises(Invalid):
        spec(working_dir="relative")


def test_users_resolve_numeric_and_by_name_from_passwd() -> None:
    passwd = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:34::/var/www:/bin/false\n"
    group = "root:x:0:\nstaff:x:50:\n"
    assert resolve_user("") == (0, 0)
    assert resolve_user("1000") == (1000, 0)
    assert resolve_user("1000:2000") == (1000, 2000)
    assert resolve_user("www", passwd=passwd) == (33, 34)
    assert resolve_user("33", passwd=passwd) == (33, 34)
    assert resolve_user("www:staff", passwd=passwd, group=group) == (33, 50)
    assert resolve_user("root") == (0, 0)
    with pytest.raises(Invalid):
        resolve_user("nobody-here", passwd=passwd)


def test_cpu_shares_follow_the_kubernetes_conversion_with_a_minimum_of_two() -> None:
    assert cpu_shares(None) == 2
    assert cpu_shares(1) == 2
    assert cpu_shares(100) == 102
    assert cpu_shares(1000) == 1024


def test_limits_become_memory_limit_cpu_quota_and_shares() -> None:
    res = spec(cpu_limit_millis=500, cpu_request_millis=100, memory_limit_bytes=64 << 20)["linux"]["resources"]
    assert res["memory"] == {"limit": 64 << 20}
    assert res["cpu"] == {"shares": 102, "quota": 50_000, "period": 100_000}


def test_a_cpu_limit_without_a_request_sets_the_request_to_the_limit() -> None:
    res = spec(cpu_limit_millis=250)["linux"]["resources"]
    assert res["cpu"]["shares"] == 256
    assert res["cpu"]["quota"] == 25_000


def test_no_limits_means_no_memory_section_and_no_quota() -> None:
    res = spec()["linux"]["resources"]
    assert "memory" not in res
    assert "quota" not in res["cpu"]


def test_devices_are_denied_by_default_with_the_standard_char_devices_allowed() -> None:
    devices = spec()["linux"]["resources"]["devices"]
    assert devices[0] == {"allow": False, "access": "rwm"}
    allowed = {(d["major"], d.get("minor")) for d in devices[1:]}
    assert {(1, 3), (1, 5), (1, 9), (136, None)} <= allowed


def test_the_network_namespace_joins_the_given_path_and_the_others_are_new() -> None:
    nss = spec(netns_path="/var/run/netns/c1")["linux"]["namespaces"]
    assert {"type": "network", "path": "/var/run/netns/c1"} in nss
    assert {n["type"] for n in nss} == {"pid", "ipc", "uts", "mount", "network"}
    fresh = spec()["linux"]["namespaces"]
    assert {"type": "network"} in fresh


def test_bind_mounts_follow_the_defaults_and_carry_ro_or_rw() -> None:
    mounts = spec(
        mounts=[BindMount("/host/hosts", "/etc/hosts", readonly=True), BindMount("/data", "/data")]
    )["mounts"]
    destinations = [m["destination"] for m in mounts]
    assert destinations[:2] == ["/proc", "/dev"]
    assert "/sys/fs/cgroup" in destinations
    assert mounts[-2] == {
        "destination": "/etc/hosts",
        "type": "bind",
        "source": "/host/hosts",
        "options": ["rbind", "ro"],
    }
    assert mounts[-1]["options"] == ["rbind", "rw"]


def test_the_spec_carries_containerd_defaults_and_is_json() -> None:
    s = spec(hostname="web", readonly_rootfs=True)
    process = s["process"]
    assert process["noNewPrivileges"] is True
    assert "CAP_SYS_ADMIN" not in process["capabilities"]["bounding"]
    assert "CAP_NET_BIND_SERVICE" in process["capabilities"]["bounding"]
    assert process["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    assert s["hostname"] == "web"
    assert s["root"] == {"path": "rootfs", "readonly": True}
    assert "/proc/kcore" in s["linux"]["maskedPaths"]
    assert "/proc/sys" in s["linux"]["readonlyPaths"]
    assert s["linux"]["cgroupsPath"] == "/corral/c1"
    json.dumps(s)


def test_image_config_reads_the_oci_config_object() -> None:
    cfg = ImageConfig.from_oci({"Entrypoint": None, "Cmd": ["sh"], "Env": ["A=1"], "User": "1:2"})
    assert cfg == ImageConfig(cmd=("sh",), env=("A=1",), user="1:2")
