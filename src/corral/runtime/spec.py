"""The OCI runtime spec of a container: a pure function from small typed inputs to the spec dict.

``build_spec`` owns what runc is told to run: the process (argv, env, cwd, user, capabilities,
rlimits), the mounts, the namespaces, the cgroup limits and the device rules. It does no I/O and
knows nothing of corral's resource types; the agent translates a Container into these inputs.

The defaults are containerd's own (``oci/spec.go``, ``oci/mounts.go``, ``WithDefaultUnixDevices``
in containerd 1.6): the same capability set, masked and read-only paths, ``RLIMIT_NOFILE`` 1024,
device cgroup deny-all plus the standard character devices, ``noNewPrivileges``; then
``runtime/security.py`` confines the process (hardened capabilities, RuntimeDefault seccomp, the
container's securityContext): ``confinement`` defaults to the hardened defaults.

Argument rules follow Kubernetes: ``command`` replaces the image's Entrypoint (and drops its Cmd),
``args`` replace the image's Cmd; with neither, the image's Entrypoint + Cmd run. CPU shares use
Kubernetes' conversion (``millis * 1024 / 1000``, at least 2); with no request but a limit, the
request is the limit; with neither, the container gets the minimum (2), as a BestEffort pod would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from corral.model.errors import FieldError, Invalid
from corral.runtime.security import Confinement, confine

OCI_VERSION = "1.0.2-dev"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CPU_PERIOD_US = 100_000
MIN_CPU_SHARES = 2
MAX_CPU_SHARES = 262_144
MIN_CPU_QUOTA_US = 1_000

DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
)

READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

# (major, minor or None for every minor): null, random, full, tty, zero, urandom, console, pts/*, ptmx.
ALLOWED_CHAR_DEVICES: tuple[tuple[int, int | None], ...] = (
    (1, 3),
    (1, 8),
    (1, 7),
    (5, 0),
    (1, 5),
    (1, 9),
    (5, 1),
    (136, None),
    (5, 2),
)

NAMESPACES: tuple[str, ...] = ("pid", "ipc", "uts", "mount", "network")


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The parts of an OCI image config that shape the process (``config`` in the image JSON)."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""

    @classmethod
    def from_oci(cls, config: Mapping[str, Any] | None) -> ImageConfig:
        """Read the image config's ``config`` object (``Entrypoint``, ``Cmd``, ``Env``, ...)."""
        config = config or {}
        return cls(
            entrypoint=tuple(config.get("Entrypoint") or ()),
            cmd=tuple(config.get("Cmd") or ()),
            env=tuple(config.get("Env") or ()),
            working_dir=str(config.get("WorkingDir") or ""),
            user=str(config.get("User") or ""),
        )


@dataclass(frozen=True, slots=True)
class BindMount:
    """A host path bound into the container."""

    source: str
    destination: str
    readonly: bool = False
    options: tuple[str, ...] = field(default=())


def build_spec(
    *,
    container_id: str,
    image_config: ImageConfig,
    command: Sequence[str] = (),
    args: Sequence[str] = (),
    env: Mapping[str, str] | Sequence[tuple[str, str]] = (),
    working_dir: str = "",
    user: str = "",
    hostname: str = "",
    cpu_limit_millis: int | None = None,
    cpu_request_millis: int | None = None,
    memory_limit_bytes: int | None = None,
    pids_limit: int | None = None,
    netns_path: str | None = None,
    mounts: Sequence[BindMount] = (),
    readonly_rootfs: bool = False,
    cgroups_path: str | None = None,
    passwd: str | None = None,
    group: str | None = None,
    confinement: Confinement | None = None,
) -> dict[str, Any]:
    """Return the OCI runtime spec (as a JSON-ready dict) for one container.

    ``passwd``/``group`` are the texts of the rootfs's ``/etc/passwd`` and ``/etc/group``, used only
    when the user is given by name. Raises ``Invalid`` when the process cannot be built.
    """
    argv = process_args(image_config, command=command, args=args)
    uid, gid = resolve_user(user or image_config.user, passwd=passwd, group=group)
    cwd = working_dir or image_config.working_dir or "/"
    if not cwd.startswith("/"):
        raise Invalid(
            f"working directory {cwd!r} is not absolute",
            details=[FieldError("workingDir", "must be an absolute path")],
        )
    caps = list(DEFAULT_CAPABILITIES)
    linux_namespaces: list[dict[str, str]] = []
    for kind in NAMESPACES:
        ns: dict[str, str] = {"type": kind}
        if kind == "network" and netns_path:
            ns["path"] = netns_path
        linux_namespaces.append(ns)
    spec = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": gid},
            "args": argv,
            "env": merge_env(image_config.env, env),
            "cwd": cwd,
            "capabilities": {
                "bounding": caps,
                "effective": list(caps),
                "permitted": list(caps),
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": readonly_rootfs},
        "hostname": hostname or container_id[:63],
        "mounts": default_mounts() + [_bind(m) for m in mounts],
        "linux": {
            "resources": resources(
                cpu_limit_millis=cpu_limit_millis,
                cpu_request_millis=cpu_request_millis,
                memory_limit_bytes=memory_limit_bytes,
                pids_limit=pids_limit,
            ),
            "cgroupsPath": cgroups_path or f"/corral/{container_id}",
            "namespaces": linux_namespaces,
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }
    return confine(spec, confinement or Confinement())


def process_args(image: ImageConfig, *, command: Sequence[str], args: Sequence[str]) -> list[str]:
    """Kubernetes semantics: command replaces Entrypoint (and Cmd); args replace Cmd."""
    if command:
        argv = [*command, *args]
    elif args:
        argv = [*image.entrypoint, *args]
    else:
        argv = [*image.entrypoint, *image.cmd]
    if not argv:
        raise Invalid(
            "no command to run: the image has no Entrypoint or Cmd and the container gives none",
            details=[FieldError("command", "required because the image defines no command")],
        )
    return argv


def merge_env(image_env: Sequence[str], env: Mapping[str, str] | Sequence[tuple[str, str]]) -> list[str]:
    """The image's ``KEY=value`` list, overridden and extended by ``env``, order kept; PATH defaulted."""
    merged: dict[str, str] = {}
    for item in image_env:
        key, _, value = item.partition("=")
        merged[key] = value
    pairs = env.items() if isinstance(env, Mapping) else env
    for key, value in pairs:
        merged[key] = value
    if "PATH" not in merged:
        merged = {"PATH": DEFAULT_PATH.partition("=")[2], **merged}
    return [f"{k}={v}" for k, v in merged.items()]


def resolve_user(user: str, *, passwd: str | None = None, group: str | None = None) -> tuple[int, int]:
    """``uid[:gid]`` to numbers. Names are looked up in the given passwd/group texts; "" is 0:0."""
    if not user:
        return 0, 0
    name, _, gname = user.partition(":")
    uid, default_gid = _lookup_user(name, passwd)
    gid = _lookup_group(gname, group) if gname else default_gid
    return uid, gid


def _lookup_user(name: str, passwd: str | None) -> tuple[int, int]:
    if name.isdigit():
        uid = int(name)
        for fields in _entries(passwd):
            if len(fields) >= 4 and fields[2] == name and fields[3].isdigit():
                return uid, int(fields[3])
        return uid, 0
    for fields in _entries(passwd):
        if len(fields) >= 4 and fields[0] == name and fields[2].isdigit() and fields[3].isdigit():
            return int(fields[2]), int(fields[3])
    if name == "root":
        return 0, 0
    raise Invalid(
        f"user {name!r} is not in the image's /etc/passwd",
        details=[FieldError("user", "use a numeric uid[:gid] or a user the image defines")],
    )


def _lookup_group(name: str, group: str | None) -> int:
    if name.isdigit():
        return int(name)
    for fields in _entries(group):
        if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    if name == "root":
        return 0
    raise Invalid(
        f"group {name!r} is not in the image's /etc/group",
        details=[FieldError("user", "use a numeric gid or a group the image defines")],
    )


def _entries(text: str | None) -> list[list[str]]:
    if not text:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resources(
    *,
    cpu_limit_millis: int | None,
    cpu_request_millis: int | None,
    memory_limit_bytes: int | None,
    pids_limit: int | None = None,
) -> dict[str, Any]:
    """``linux.resources``: device rules, memory limit, CPU shares and quota, pids limit."""
    devices: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
    for major, minor in ALLOWED_CHAR_DEVICES:
        rule: dict[str, Any] = {"allow": True, "type": "c", "major": major, "access": "rwm"}
        if minor is not None:
            rule["minor"] = minor
        devices.append(rule)
    out: dict[str, Any] = {"devices": devices}
    request = cpu_request_millis if cpu_request_millis is not None else cpu_limit_millis
    cpu: dict[str, Any] = {"shares": cpu_shares(request)}
    if cpu_limit_millis is not None and cpu_limit_millis > 0:
        cpu["quota"] = max(MIN_CPU_QUOTA_US, cpu_limit_millis * CPU_PERIOD_US // 1000)
        cpu["period"] = CPU_PERIOD_US
    out["cpu"] = cpu
    if memory_limit_bytes is not None and memory_limit_bytes > 0:
        out["memory"] = {"limit": memory_limit_bytes}
    if pids_limit is not None and pids_limit > 0:
        out["pids"] = {"limit": pids_limit}
    return out


def cpu_shares(request_millis: int | None) -> int:
    """Kubernetes' MilliCPUToShares: ``millis * 1024 / 1000`` clamped to [2, 262144]."""
    if not request_millis:
        return MIN_CPU_SHARES
    return min(MAX_CPU_SHARES, max(MIN_CPU_SHARES, request_millis * 1024 // 1000))


def default_mounts() -> list[dict[str, Any]]:
    """containerd's default mounts, plus a read-only /sys/fs/cgroup."""
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
        {
            "destination": "/run",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
    ]


def _bind(mount: BindMount) -> dict[str, Any]:
    options = ["rbind", "ro" if mount.readonly else "rw", *mount.options]
    return {"destination": mount.destination, "type": "bind", "source": mount.source, "options": options}
