"""The confinement of a container's process, as spec data (no I/O)."""

from __future__ import annotations

import pytest

from corral.model.errors import Invalid
from corral.runtime.security import Confinement, runtime_default_seccomp
from corral.runtime.spec import ImageConfig, build_spec


def spec(c: Confinement | None = None, **kw: object) -> dict:  # type: ignore[type-arg]
    return build_spec(container_id="c", image_config=ImageConfig(cmd=("sh",)), confinement=c, **kw)  # type: ignore[arg-type]


def test_the_defaults_drop_net_raw_and_mknod_forbid_escalation_and_filter_syscalls() -> None:
    s = spec(pids_limit=4096)
    caps = s["process"]["capabilities"]["bounding"]
    assert "CAP_NET_RAW" not in caps and "CAP_MKNOD" not in caps and "CAP_CHOWN" in caps
    assert s["process"]["noNewPrivileges"] is True
    seccomp = s["linux"]["seccomp"]
    assert seccomp["defaultAction"] == "SCMP_ACT_ERRNO"
    allowed = {n for r in seccomp["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and "args" not in r for n in r["names"]}
    assert {"read", "write", "execve", "socket", "futex"} <= allowed
    assert not {"mount", "reboot", "kexec_load", "init_module", "ptrace", "bpf", "unshare", "setns"} & allowed
    assert s["linux"]["resources"]["pids"] == {"limit": 4096}


def test_a_capability_opens_the_syscalls_it_guards() -> None:
    allowed = {n for r in runtime_default_seccomp(["CAP_SYS_PTRACE"])["syscalls"] for n in r["names"]}
    assert "ptrace" in allowed


def test_drop_all_and_add_leave_only_what_was_added() -> None:
    s = spec(Confinement(drop_capabilities=("ALL",), add_capabilities=("NET_BIND_SERVICE",)))
    assert s["process"]["capabilities"]["bounding"] == ["CAP_NET_BIND_SERVICE"]


def test_privileged_has_every_capability_no_seccomp_and_every_device() -> None:
    s = spec(Confinement(privileged=True))
    assert "CAP_SYS_ADMIN" in s["process"]["capabilities"]["bounding"]
    assert "seccomp" not in s["linux"] and s["linux"]["maskedPaths"] == []
    assert s["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert s["process"]["noNewPrivileges"] is False


def test_user_group_read_only_root_and_unconfined_are_applied() -> None:
    s = spec(Confinement(run_as_user=1000, run_as_group=2000, read_only_root=True, seccomp="Unconfined"))
    assert s["process"]["user"] == {"uid": 1000, "gid": 2000}
    assert s["root"]["readonly"] is True and "seccomp" not in s["linux"]


def test_run_as_non_root_refuses_uid_zero_naming_the_field() -> None:
    with pytest.raises(Invalid) as e:
        spec(Confinement(run_as_non_root=True))
    assert e.value.details[0].field == "spec.securityContext.runAsUser"
    assert spec(Confinement(run_as_non_root=True, run_as_user=1))["process"]["user"]["uid"] == 1
