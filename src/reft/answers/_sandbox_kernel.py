"""Linux isolation primitives for the sandbox workers, through ctypes: namespaces, a minimal root
file system, Landlock and seccomp. Standalone (standard library only), imported by
`_sandbox_worker.py`, which runs as a script; see that module and docs/grading.md.

Every function either works or raises OSError: the worker decides what a failure costs and reports
it. Numbers are Linux's (x86_64 where they differ per architecture).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import signal
import struct
import sys
from collections.abc import Callable

HEAVY_PACKAGES = ("sympy", "mpmath")
"""Packages whose directories programs may read (a light worker imports them on demand)."""

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
CLONE_THREAD = 0x00010000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, PR_SET_CHILD_SUBREAPER = 1, 38, 22, 36
PR_SET_DUMPABLE = 4
SECCOMP_MODE_FILTER = 2
LANDLOCK_CREATE_RULESET, LANDLOCK_ADD_RULE, LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}


def check(result: int, what: str) -> int:
    """Raise OSError with errno for a failed libc call."""
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


# --------------------------------------------------------------------------------------------
# Namespaces and the minimal root (once per worker)
# --------------------------------------------------------------------------------------------


def enter_namespaces() -> None:
    """Unshare user/pid/net/mount/ipc/uts namespaces and map our uid/gid to root inside."""
    uid, gid = os.geteuid(), os.getegid()
    flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS
    check(libc.unshare(flags), "unshare")
    with open("/proc/self/setgroups", "w") as file:
        file.write("deny")
    with open("/proc/self/uid_map", "w") as file:
        file.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as file:
        file.write(f"0 {gid} 1")


def become_init(keep_out: tuple[int, ...]) -> None:
    """Fork so that the child is PID 1 of the new PID namespace; the parent waits and exits.

    The parent ("outer") stays outside the namespace and only relays the exit status; the child
    dies with it (PDEATHSIG), and when the child (init) dies the kernel kills the whole namespace.
    """
    pid = os.fork()
    if pid == 0:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        return
    for fd in keep_out:  # the protocol pipes belong to the child: EOF reaches the pool when it dies
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    encode = lambda text: None if text is None else text.encode()  # noqa: E731
    result = libc.mount(encode(source), target.encode(), encode(fstype), flags, data.encode())
    check(result, f"mount {source} on {target}")


def _locked_flags(path: str) -> int:
    """Mount flags of `path`'s mount that a bind-remount inside a user namespace must keep."""
    vfs = os.statvfs(path).f_flag
    flags = vfs & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME)
    return flags | (MS_RELATIME if vfs & 4096 else 0)


def build_root(root: str, read_paths: list[str], scratch_mb: int) -> None:
    """Pivot into a tmpfs root that holds only `read_paths` (read-only) and /scratch (tmpfs).

    Everything else of the host file system (data, home directories, /proc, /etc) is absent.
    """
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for path in read_paths:
        target = root + path
        os.makedirs(target, exist_ok=True)
        _mount(path, target, None, MS_BIND | MS_REC)
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | _locked_flags(path)
        _mount(None, target, None, flags)
    os.makedirs(root + "/scratch")
    scratch_options = f"size={scratch_mb}m,nr_inodes=4096,mode=777"
    _mount("tmpfs", root + "/scratch", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, scratch_options)
    _mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(root)
    number = PIVOT_ROOT[platform.machine()]
    check(libc.syscall(number, b".", b"."), "pivot_root")
    check(libc.umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")


def readable_paths() -> list[str]:
    """Directories a program may read: the standard library (compiled modules included) and the
    packages in HEAVY_PACKAGES. Nothing else of the installation (not a venv's site-packages)."""
    import importlib.util

    paths = {os.path.dirname(os.__file__)}  # the base interpreter's standard library
    paths.update(path for path in sys.path if path.endswith("lib-dynload"))
    for name in HEAVY_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is not None:
            paths.update(spec.submodule_search_locations or [])
    paths |= {os.path.realpath(path) for path in paths}
    existing = sorted(path for path in paths if os.path.isdir(path))
    # Keep only the outermost directories (a bind mount of a parent already contains its children).
    return [p for p in existing if not any(p.startswith(q + os.sep) for q in existing if q != p)]


PR_CAPBSET_DROP = 24
CAPABILITY_VERSION_3 = 0x20080522


def drop_capabilities() -> None:
    """Empty every capability set of this process, bounding set included, for it and its children.

    Inside the user namespace the worker is root with every capability of that namespace (it needed
    them to mount its root); a program must have none (no remounting, no new namespaces). Without a
    user namespace, as real root, this is what stands between a program and root's privileges.
    """
    for capability in range(64):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) < 0:
            if ctypes.get_errno() == errno.EINVAL:
                break  # past the kernel's last capability
            check(-1, "drop bounding capability")
    header = ctypes.create_string_buffer(struct.pack("Ii", CAPABILITY_VERSION_3, 0), 8)
    data = ctypes.create_string_buffer(
        bytes(24), 24
    )  # effective, permitted, inheritable: 2 x 3 x u32
    check(libc.capset(header, data), "capset")


# --------------------------------------------------------------------------------------------
# Landlock (built once, applied in every call's child)
# --------------------------------------------------------------------------------------------

FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_ALL_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1}
FS_ALL_BY_ABI.update({5: (1 << 16) - 1, 6: (1 << 16) - 1, 7: (1 << 16) - 1})
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is unavailable."""
    version = libc.syscall(LANDLOCK_CREATE_RULESET, None, 0, LANDLOCK_CREATE_RULESET_VERSION)
    return max(int(version), 0)


def landlock_ruleset(abi: int, read_paths: list[str], write_paths: list[str]) -> int:
    """A ruleset fd that allows reading `read_paths`, read/write in `write_paths`, nothing else.

    With ABI >= 4 all TCP bind/connect is denied too; with ABI >= 6 the sandbox can signal no
    process outside itself and cannot reach abstract unix sockets outside itself.
    """
    handled_fs = FS_ALL_BY_ABI[min(abi, 7)]
    handled_net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    attr = struct.pack("QQQ", handled_fs, handled_net, scoped)[
        : 8 if abi < 4 else 16 if abi < 6 else 24
    ]
    buffer = ctypes.create_string_buffer(attr, len(attr))
    ruleset = check(libc.syscall(LANDLOCK_CREATE_RULESET, buffer, len(attr), 0), "landlock")
    read = FS_READ_FILE | FS_READ_DIR
    rules = [(path, read) for path in read_paths]
    rules += [(path, handled_fs & ~FS_EXECUTE) for path in write_paths]
    for path, access in rules:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        try:
            rule = ctypes.create_string_buffer(struct.pack("=Qi", access, fd), 12)
            check(
                libc.syscall(LANDLOCK_ADD_RULE, ruleset, LANDLOCK_RULE_PATH_BENEATH, rule, 0),
                "landlock rule",
            )
        finally:
            os.close(fd)
    return ruleset


# --------------------------------------------------------------------------------------------
# seccomp (built once, applied in every call's child)
# --------------------------------------------------------------------------------------------

AUDIT_ARCH_X86_64 = 0xC000003E
# x86_64 system calls a math program has no business making: new processes and programs, sockets,
# signals, debugging other processes, namespaces and mounts, kernel-attack surface (bpf, io_uring,
# userfaultfd, perf, keyrings), and host administration. Each is a forbidden act: the filter ends
# the process (SIGSYS), so a program cannot catch the refusal and go on to return a value.
FORBIDDEN_SYSCALLS_X86_64 = (
    57, 58, 59, 322,  # fork vfork execve execveat
    41, 53,  # socket socketpair
    62, 200, 234, 129, 297, 424, 434, 438,  # kill tkill tgkill rt_(tg)sigqueueinfo pidfd_*
    101, 310, 311, 312,  # ptrace process_vm_readv/writev kcmp
    272, 308, 165, 166, 155, 161,  # unshare setns mount umount2 pivot_root chroot
    428, 429, 430, 431, 432, 433, 442,  # new mount API
    321, 298, 323, 425, 426, 427,  # bpf perf_event_open userfaultfd io_uring_*
    248, 249, 250,  # add_key request_key keyctl
    246, 320, 175, 313, 176, 169, 167, 168, 163,  # kexec modules reboot swap acct
    164, 227, 305, 159, 135, 172, 173, 179, 303, 304,  # clocks personality io ports quota handles
)  # fmt: skip
REFUSED_SYSCALLS_X86_64 = (160, 302)
"""setrlimit prlimit64: answered EPERM, not ended: glibc's getrlimit() is a prlimit64 call too, and
reading a limit is harmless (raising one is a forbidden act the audit hook sees)."""
SYS_CLONE_X86_64, SYS_CLONE3_X86_64, SYS_RT_SIGACTION_X86_64 = 56, 435, 13
RET_KILL_PROCESS, RET_ALLOW, RET_ERRNO = 0x80000000, 0x7FFF0000, 0x00050000
BPF_LD_W_ABS, BPF_JEQ_K, BPF_JGE_K, BPF_JSET_K, BPF_RET_K = 0x20, 0x15, 0x35, 0x45, 0x06


def seccomp_program() -> bytes:
    """A classic-BPF seccomp filter (x86_64) that ends the process at a forbidden call above.

    clone() is allowed only with CLONE_THREAD (threads, not processes); clone3() answers ENOSYS so
    that the C library falls back to clone(), whose flags a filter can inspect. SIGXFSZ's action
    cannot be changed: writing past the file-size limit must stay fatal (a forbidden act).
    """
    kill, eperm, enosys = RET_KILL_PROCESS, RET_ERRNO | errno.EPERM, RET_ERRNO | errno.ENOSYS
    program: list[tuple[int, int, int, int]] = [  # (code, jump if true, jump if false, k)
        (BPF_LD_W_ABS, 0, 0, 4),  # 0: seccomp_data.arch
        (BPF_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),  # 1
        (BPF_RET_K, 0, 0, kill),  # 2: another architecture's calling convention
        (BPF_LD_W_ABS, 0, 0, 0),  # 3: seccomp_data.nr
        (BPF_JGE_K, 0, 1, 0x40000000),  # 4: x32 ABI numbers
        (BPF_RET_K, 0, 0, kill),  # 5
        (BPF_JEQ_K, 0, 4, SYS_CLONE_X86_64),  # 6: not clone -> 11
        (BPF_LD_W_ABS, 0, 0, 16),  # 7: low 32 bits of args[0] = clone flags
        (BPF_JSET_K, 0, 1, CLONE_THREAD),  # 8
        (BPF_RET_K, 0, 0, RET_ALLOW),  # 9: a thread
        (BPF_RET_K, 0, 0, kill),  # 10: a process
        (BPF_JEQ_K, 0, 1, SYS_CLONE3_X86_64),  # 11
        (BPF_RET_K, 0, 0, enosys),  # 12
        (BPF_JEQ_K, 0, 4, SYS_RT_SIGACTION_X86_64),  # 13: not rt_sigaction -> 18
        (BPF_LD_W_ABS, 0, 0, 16),  # 14: args[0] = the signal
        (BPF_JEQ_K, 0, 1, signal.SIGXFSZ),  # 15
        (BPF_RET_K, 0, 0, kill),  # 16
        (BPF_RET_K, 0, 0, RET_ALLOW),  # 17: another signal's action
    ]
    for numbers, action in ((FORBIDDEN_SYSCALLS_X86_64, kill), (REFUSED_SYSCALLS_X86_64, eperm)):
        for number in numbers:
            program += [(BPF_JEQ_K, 0, 1, number), (BPF_RET_K, 0, 0, action)]
    program.append((BPF_RET_K, 0, 0, RET_ALLOW))
    return b"".join(struct.pack("HBBI", *instruction) for instruction in program)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class SeccompFilter:
    """A filter program built once in the zygote; `install()` in a child is then one prctl call.

    (Building the ctypes buffer in every child would create a new ctypes array type each time:
    ctypes caches those types only weakly.)
    """

    def __init__(self, program: bytes) -> None:
        self.buffer = ctypes.create_string_buffer(program, len(program))
        self.fprog = _SockFprog(len(program) // 8, ctypes.addressof(self.buffer))
        self.pointer = ctypes.byref(self.fprog)

    def install(self) -> None:
        """Install the filter for this process and its threads (needs no_new_privs, set before)."""
        check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, self.pointer, 0, 0), "seccomp")


# --------------------------------------------------------------------------------------------
# Probes: does a protection really work on this kernel?
# --------------------------------------------------------------------------------------------


def probe(test: Callable[[], bool]) -> bool:
    """Run `test()` in a throwaway child; True when it returns True there (the protection works)."""
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(0 if test() else 1)
        except BaseException:
            os._exit(2)
    return os.waitpid(pid, 0)[1] == 0


def landlock_works(ruleset: int, scratch: str) -> bool:
    """Restricted by `ruleset`, the scratch dir is readable and / is not."""
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    check(libc.syscall(LANDLOCK_RESTRICT_SELF, ruleset, 0), "landlock")
    os.listdir(scratch)
    try:
        os.listdir("/")
    except PermissionError:
        return True
    return False


def seccomp_works(seccomp: SeccompFilter) -> bool:
    """With the filter installed, fork() ends the process with SIGSYS (tried in a grandchild)."""
    pid = os.fork()
    if pid == 0:
        try:
            libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # no core dump of the expected death
            check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
            seccomp.install()
            os.fork()
        finally:
            os._exit(1)
    status = os.waitpid(pid, 0)[1]
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS
