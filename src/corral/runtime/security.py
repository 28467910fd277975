"""How a container's process is confined: capabilities, privilege escalation, seccomp, user, root fs.

``Confinement`` is the runtime's view of a container's ``securityContext`` (plain fields, no model
types); ``confine(spec, confinement)`` edits an OCI spec that ``build_spec`` made. The defaults are
hardened beyond containerd's: the capability set is containerd's without ``CAP_NET_RAW`` (no raw
sockets: no ping floods, no ARP/DNS spoofing on the bridge) and ``CAP_MKNOD``; ``noNewPrivileges``
is on unless ``allowPrivilegeEscalation`` is asked for; the seccomp profile is ``RuntimeDefault``.

**RuntimeDefault** is corral's own allow-list, written from the syscall tables: default action
``SCMP_ACT_ERRNO`` (EPERM); allowed are the syscalls an ordinary program uses (files, memory,
signals, sockets, time, processes, polling, ...). Left out are the ones that reach past the
container: loading modules, ``kexec``, ``reboot``, ``mount``/``umount``/``pivot_root``,
``swapon``, clock and time setting, ``bpf``, ``perf_event_open``, ``ptrace`` and
``process_vm_*``, keyrings, ``userfaultfd``, ``open_by_handle_at``, ``setns``/``unshare``,
``quotactl``, ``acct``, ``ioperm``/``iopl``, ``personality`` changes other than the harmless ones.
``clone`` is allowed only without namespace flags (so no new user namespace from inside), and
``clone3`` answers ENOSYS so libc falls back to ``clone``. A few are allowed only with the capability
that already guards them in the kernel (``CAP_SYS_PTRACE`` → ``ptrace``, ``CAP_SYS_ADMIN`` → the
mount family, ``CAP_SYS_TIME`` → clock setting, ...), mirroring how a Kubernetes user who adds a
capability expects it to work. Syscall names the host's libseccomp does not know are skipped by runc.

``privileged: true`` drops all of it: every capability, no seccomp, no masked or read-only /proc
paths, every device allowed by the cgroup rule, privilege escalation allowed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from corral.model.errors import FieldError, Invalid

# containerd's default set without CAP_NET_RAW and CAP_MKNOD
HARDENED_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP",
    "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)

ALL_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)

# --- the RuntimeDefault seccomp profile, as data -----------------------------------------------------

_FILES = """
access faccessat faccessat2 chdir fchdir chmod fchmod fchmodat chown fchown fchownat lchown chown32 fchown32
lchown32 close close_range creat dup dup2 dup3 fadvise64 fadvise64_64 fallocate fcntl fcntl64 fdatasync flock
fsync ftruncate ftruncate64 truncate truncate64 getcwd getdents getdents64 link linkat lseek _llseek mkdir
mkdirat mknod mknodat open openat openat2 read readv pread64 preadv preadv2 readahead readlink readlinkat
rename renameat renameat2 rmdir stat stat64 fstat fstat64 lstat lstat64 newfstatat fstatat64 statx statfs
statfs64 fstatfs fstatfs64 symlink symlinkat sync sync_file_range syncfs umask unlink unlinkat utime utimes
utimensat utimensat_time64 futimesat write writev pwrite64 pwritev pwritev2 sendfile sendfile64 splice tee
vmsplice copy_file_range getxattr lgetxattr fgetxattr listxattr llistxattr flistxattr setxattr lsetxattr
fsetxattr removexattr lremovexattr fremovexattr inotify_init inotify_init1 inotify_add_watch inotify_rm_watch
fanotify_mark memfd_create io_setup io_destroy io_submit io_cancel io_getevents io_pgetevents
io_pgetevents_time64 io_uring_setup io_uring_enter io_uring_register ioctl name_to_handle_at
"""

_MEMORY = """
brk mmap mmap2 munmap mremap mprotect pkey_mprotect pkey_alloc pkey_free madvise mincore mlock mlock2 munlock
mlockall munlockall msync membarrier remap_file_pages get_mempolicy set_mempolicy mbind set_thread_area
get_thread_area arch_prctl set_tid_address rseq
"""

_PROCESSES = """
execve execveat exit exit_group fork vfork wait4 waitid waitpid getpid getppid gettid getpgid getpgrp setpgid
getsid setsid getuid getuid32 geteuid geteuid32 getgid getgid32 getegid getegid32 getresuid getresuid32
getresgid getresgid32 getgroups getgroups32 setuid setuid32 setgid setgid32 setreuid setreuid32 setregid
setregid32 setresuid setresuid32 setresgid setresgid32 setgroups setgroups32 setfsuid setfsuid32 setfsgid
setfsgid32 capget capset prctl getpriority setpriority sched_yield sched_getparam sched_setparam
sched_getscheduler sched_setscheduler sched_get_priority_max sched_get_priority_min sched_rr_get_interval
sched_rr_get_interval_time64 sched_getaffinity sched_setaffinity sched_getattr sched_setattr getrlimit
ugetrlimit setrlimit prlimit64 getrusage times uname olduname sysinfo syslog ioprio_get ioprio_set
set_robust_list get_robust_list futex futex_time64 futex_waitv restart_syscall pidfd_open pidfd_getfd
pidfd_send_signal getcpu personality
"""

_SIGNALS = """
kill tkill tgkill rt_sigaction rt_sigprocmask rt_sigpending rt_sigreturn rt_sigsuspend rt_sigqueueinfo
rt_tgsigqueueinfo rt_sigtimedwait rt_sigtimedwait_time64 sigaction sigaltstack signal signalfd signalfd4
sigpending sigprocmask sigreturn sigsuspend pause alarm
"""

_TIME = """
clock_getres clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep clock_nanosleep_time64
gettimeofday nanosleep time timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64
timer_settime timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
timerfd_settime64 getitimer setitimer
"""

_IO_WAIT = """
select _newselect pselect6 pselect6_time64 poll ppoll ppoll_time64 epoll_create epoll_create1 epoll_ctl
epoll_ctl_old epoll_wait epoll_wait_old epoll_pwait epoll_pwait2 eventfd eventfd2 pipe pipe2
"""

_NET = """
socket socketpair bind connect listen accept accept4 getsockname getpeername getsockopt setsockopt shutdown
send sendto sendmsg sendmmsg recv recvfrom recvmsg recvmmsg recvmmsg_time64 socketcall
"""

_IPC = """
mq_open mq_unlink mq_timedsend mq_timedsend_time64 mq_timedreceive mq_timedreceive_time64 mq_notify
mq_getsetattr msgget msgsnd msgrcv msgctl semget semop semtimedop semtimedop_time64 semctl shmget shmat shmdt
shmctl ipc
"""

# allowed only when the container holds the capability the kernel checks for them anyway
_BY_CAPABILITY: dict[str, str] = {
    "CAP_SYS_ADMIN": "mount umount umount2 pivot_root setns unshare quotactl lookup_dcookie fanotify_init "
                     "bpf perf_event_open open_by_handle_at setdomainname sethostname",
    "CAP_SYS_PTRACE": "ptrace process_vm_readv process_vm_writev kcmp",
    "CAP_SYS_TIME": "settimeofday stime clock_settime clock_settime64 adjtimex clock_adjtime clock_adjtime64",
    "CAP_SYS_MODULE": "init_module finit_module delete_module",
    "CAP_SYS_BOOT": "reboot kexec_load kexec_file_load",
    "CAP_SYS_PACCT": "acct",
    "CAP_SYS_RAWIO": "iopl ioperm",
    "CAP_SYS_NICE": "move_pages",
    "CAP_SYSLOG": "syslog",
}

CLONE_NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
ENOSYS = 38


def _names(*blocks: str) -> list[str]:
    return sorted({n for b in blocks for n in b.split()})


def runtime_default_seccomp(capabilities: Sequence[str] = ()) -> dict[str, Any]:
    """The RuntimeDefault profile for a process holding ``capabilities`` (OCI ``linux.seccomp``)."""
    allowed = _names(_FILES, _MEMORY, _PROCESSES, _SIGNALS, _TIME, _IO_WAIT, _NET, _IPC)
    for cap in capabilities:
        allowed.extend(_BY_CAPABILITY.get(cap, "").split())
    rules: list[dict[str, Any]] = [{"names": sorted(set(allowed)), "action": "SCMP_ACT_ALLOW"}]
    if "CAP_SYS_ADMIN" in capabilities:
        rules.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW"})
    else:  # clone(2) without namespace flags: flags are argument 0 (x86_64, arm64)
        rules.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]})
    rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "syscalls": rules,
    }


# --- confinement ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Confinement:
    """A container's securityContext, as the runtime applies it (defaults: hardened)."""

    privileged: bool = False
    add_capabilities: tuple[str, ...] = ()
    drop_capabilities: tuple[str, ...] = ()
    read_only_root: bool = False
    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool = False
    allow_privilege_escalation: bool = False
    seccomp: str = "RuntimeDefault"  # or "Unconfined"


def capability_name(name: str) -> str:
    """``NET_ADMIN``, ``net_admin`` or ``CAP_NET_ADMIN`` → ``CAP_NET_ADMIN``."""
    upper = name.upper()
    return upper if upper.startswith("CAP_") else f"CAP_{upper}"


def capabilities(c: Confinement) -> list[str]:
    if c.privileged:
        return list(ALL_CAPABILITIES)
    drops = {capability_name(d) for d in c.drop_capabilities}
    caps = [] if "CAP_ALL" in drops else [cap for cap in HARDENED_CAPABILITIES if cap not in drops]
    for add in c.add_capabilities:
        name = capability_name(add)
        if name == "CAP_ALL":
            caps = list(ALL_CAPABILITIES)
        elif name not in caps:
            caps.append(name)
    return caps


def confine(spec: dict[str, Any], c: Confinement) -> dict[str, Any]:
    """Apply ``c`` to an OCI spec from ``build_spec`` (in place; returned for chaining)."""
    process = spec["process"]
    user = process["user"]
    if c.run_as_user is not None:
        user["uid"] = c.run_as_user
    if c.run_as_group is not None:
        user["gid"] = c.run_as_group
    if c.run_as_non_root and user["uid"] == 0:
        raise Invalid("the container must run as a non-root user (runAsNonRoot) but would run as uid 0",
                      details=[FieldError("spec.securityContext.runAsUser",
                                          "set a non-zero uid (or use an image whose USER is not root)")])
    caps = capabilities(c)
    process["capabilities"] = {"bounding": caps, "effective": list(caps), "permitted": list(caps)}
    process["noNewPrivileges"] = not (c.allow_privilege_escalation or c.privileged)
    spec["root"]["readonly"] = spec["root"].get("readonly", False) or c.read_only_root
    linux = spec["linux"]
    if c.privileged:
        linux["maskedPaths"] = []
        linux["readonlyPaths"] = []
        linux["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
        for m in spec["mounts"]:  # a privileged container may write /sys and the cgroup tree
            if m["destination"] in ("/sys", "/sys/fs/cgroup"):
                m["options"] = [o for o in m["options"] if o != "ro"]
        linux.pop("seccomp", None)
    elif c.seccomp == "RuntimeDefault":
        linux["seccomp"] = runtime_default_seccomp(caps)
    else:
        linux.pop("seccomp", None)
    return spec
