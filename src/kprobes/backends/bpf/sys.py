"""The two system calls of the BPF layer, ``bpf(2)`` and ``perf_event_open(2)``, via ctypes.

Every ``union bpf_attr`` variant used here is packed with :mod:`struct` into a
buffer exactly as long as the fields the command needs: the kernel zero-fills
the rest, and an old kernel that does not know a trailing field refuses only a
*non-zero* tail (``bpf_check_uarg_tail_zero``, kernel/bpf/syscall.c), so a
short attr is the most portable one.

errno is translated here, once, into :mod:`kprobes.errors` exceptions:
EPERM/EACCES become :class:`~kprobes.errors.PermissionProblem` with a hint,
everything else :class:`~kprobes.errors.BPFError` carrying the errno and the
command.  Callers that must react to a particular errno (ENOSPC on a short
verifier log, ENOENT at the end of a map walk) read ``BPFError.errno``.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import struct
from typing import Dict, Optional, Tuple, TypeVar, Union

from ...errors import BPFError, PermissionProblem

_O = TypeVar("_O", bound="OwnedFd")

__all__ = [
    "Cmd",
    "SYSCALL_NUMBERS",
    "bpf",
    "bpf_errno",
    "perf_event_open",
    "ioctl",
    "close_fd",
    "Buffer",
    "addr",
    "cstr",
    "possible_cpus",
    "online_cpus",
    "parse_cpu_list",
    "kernel_version_code",
    "translate",
]


class Cmd:
    """``enum bpf_cmd`` (include/uapi/linux/bpf.h)."""

    MAP_CREATE = 0
    MAP_LOOKUP_ELEM = 1
    MAP_UPDATE_ELEM = 2
    MAP_DELETE_ELEM = 3
    MAP_GET_NEXT_KEY = 4
    PROG_LOAD = 5
    OBJ_PIN = 6
    OBJ_GET = 7
    PROG_ATTACH = 8
    PROG_DETACH = 9
    PROG_TEST_RUN = 10
    PROG_GET_NEXT_ID = 11
    MAP_GET_NEXT_ID = 12
    PROG_GET_FD_BY_ID = 13
    MAP_GET_FD_BY_ID = 14
    OBJ_GET_INFO_BY_FD = 15
    PROG_QUERY = 16
    RAW_TRACEPOINT_OPEN = 17
    BTF_LOAD = 18
    BTF_GET_FD_BY_ID = 19
    TASK_FD_QUERY = 20
    MAP_LOOKUP_AND_DELETE_ELEM = 21
    MAP_FREEZE = 22
    BTF_GET_NEXT_ID = 23
    MAP_LOOKUP_BATCH = 24
    MAP_LOOKUP_AND_DELETE_BATCH = 25
    MAP_UPDATE_BATCH = 26
    MAP_DELETE_BATCH = 27
    LINK_CREATE = 28
    LINK_UPDATE = 29
    LINK_GET_FD_BY_ID = 30
    LINK_GET_NEXT_ID = 31

    @classmethod
    def name(cls, cmd: int) -> str:
        for k, v in vars(cls).items():
            if k.isupper() and v == cmd:
                return "BPF_" + k
        return f"bpf cmd {cmd}"


#: (SYS_bpf, SYS_perf_event_open) per machine.
SYSCALL_NUMBERS: Dict[str, Tuple[int, int]] = {
    "x86_64": (321, 298),
    "aarch64": (280, 241),
    "arm64": (280, 241),
    "riscv64": (280, 241),
    "ppc64le": (361, 319),
    "s390x": (351, 331),
}

_libc: Optional[ctypes.CDLL] = None


def _syscall_fn() -> "ctypes._NamedFuncPointer":
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
        _libc.ioctl.restype = ctypes.c_int
    return _libc.syscall


def _numbers() -> Tuple[int, int]:
    m = os.uname().machine
    if m not in SYSCALL_NUMBERS:
        raise BPFError(f"BPF is not supported by kprobes on {m}",
                       hint="supported machines: " + ", ".join(sorted(SYSCALL_NUMBERS)))
    return SYSCALL_NUMBERS[m]


#: A buffer handed to the kernel: ctypes keeps the memory alive while the caller holds it.
Buffer = Union[ctypes.Array, "ctypes._CData"]  # type: ignore[type-arg]


def addr(buf: Optional[ctypes.Array]) -> int:  # type: ignore[type-arg]
    """The user address of ``buf`` (0 for None), for a ``__aligned_u64`` pointer field."""
    return 0 if buf is None else ctypes.addressof(buf)


def cstr(text: Union[str, bytes]) -> ctypes.Array:  # type: ignore[type-arg]
    """A NUL-terminated C string (keep the result alive while the kernel may read it)."""
    raw = text.encode() if isinstance(text, str) else text
    return ctypes.create_string_buffer(raw)


_PERM_HINT = (
    "run as root, or grant CAP_BPF and CAP_PERFMON (kernel.unprivileged_bpf_disabled "
    "forbids unprivileged bpf(); lockdown=confidentiality forbids reading kernel memory)"
)


def translate(err: int, what: str, *, detail: str = "") -> Exception:
    """The exception for ``errno`` ``err`` after ``what`` failed (never raised here)."""
    text = os.strerror(err)
    if err == _errno.EILSEQ:  # kprobe at FUNC+OFFS inside an instruction (the kernel's check)
        text = "the probe point is not an instruction boundary (FUNC+OFFS must be the first byte of an instruction)"
    msg = f"{what} failed: {text} ({_errno.errorcode.get(err, err)})"
    if detail:
        msg += f": {detail}"
    if err in (_errno.EPERM, _errno.EACCES):
        e: Exception = PermissionProblem(msg, hint=_PERM_HINT)
        e.errno = err  # type: ignore[attr-defined]
        return e
    hint = None
    if err == _errno.E2BIG:
        hint = "this kernel does not know a field kprobes set; it is older than the feature"
    elif err == _errno.EILSEQ:
        hint = ("a kprobe must start an instruction: take FUNC+OFFS from the disassembly "
                "(objdump -d vmlinux, or gdb 'disassemble FUNC'), or probe FUNC itself")
    elif err == _errno.ENOSYS:
        hint = "the kernel was built without CONFIG_BPF_SYSCALL"
    return BPFError(msg, errno=err, hint=hint)


def bpf_errno(cmd: int, attr: Union[bytes, bytearray, ctypes.Array]) -> Tuple[int, int]:  # type: ignore[type-arg]
    """``bpf(cmd, attr, len(attr))``: (result, 0) or (-1, errno); never raises.

    When ``attr`` is a ctypes buffer, the kernel's writes to it (ids, counts,
    out_batch) are visible to the caller afterwards.
    """
    sys_bpf, _ = _numbers()
    if isinstance(attr, (bytes, bytearray)):
        buf = ctypes.create_string_buffer(bytes(attr), len(attr))
    else:
        buf = attr
    ret = _syscall_fn()(ctypes.c_long(sys_bpf), ctypes.c_long(cmd), buf,
                        ctypes.c_long(ctypes.sizeof(buf)))
    if ret < 0:
        return -1, ctypes.get_errno()
    return int(ret), 0


def bpf(cmd: int, attr: Union[bytes, bytearray, ctypes.Array], *, what: str = "",  # type: ignore[type-arg]
        detail: str = "") -> int:
    """``bpf(2)``; raises the translated error."""
    ret, err = bpf_errno(cmd, attr)
    if ret < 0:
        raise translate(err, what or Cmd.name(cmd), detail=detail)
    return ret


def perf_event_open(attr: bytes, pid: int, cpu: int, group_fd: int = -1, flags: int = 8,
                    *, what: str = "perf_event_open", detail: str = "") -> int:
    """``perf_event_open(2)`` with ``PERF_FLAG_FD_CLOEXEC`` (8) by default; raises on error."""
    _, sys_perf = _numbers()
    buf = ctypes.create_string_buffer(attr, len(attr))
    ret = _syscall_fn()(ctypes.c_long(sys_perf), buf, ctypes.c_int(pid), ctypes.c_int(cpu),
                        ctypes.c_int(group_fd), ctypes.c_ulong(flags))
    if ret < 0:
        err = ctypes.get_errno()
        e = translate(err, what, detail=detail)
        if isinstance(e, PermissionProblem):
            e.hint = (
                "run as root or with CAP_PERFMON; for unprivileged users lower "
                "/proc/sys/kernel/perf_event_paranoid"
            )
        raise e
    return int(ret)


def ioctl(fd: int, request: int, arg: int = 0, *, what: str = "ioctl") -> int:
    """``ioctl(fd, request, arg)`` with an integer argument; raises on error."""
    _syscall_fn()
    assert _libc is not None
    ret = _libc.ioctl(ctypes.c_int(fd), ctypes.c_ulong(request), ctypes.c_ulong(arg))
    if ret < 0:
        raise translate(ctypes.get_errno(), what)
    return int(ret)


def close_fd(fd: int) -> None:
    """Close an fd we own; an already closed one is not an error."""
    try:
        os.close(fd)
    except OSError:
        pass


class OwnedFd:
    """One kernel fd owned by an object (map, program, perf event, link): ``fileno()``,
    ``closed``, an idempotent ``close()`` and ``with`` support.  Subclasses set ``fd``;
    one that owns more than its fd extends ``close``/``closed``."""

    fd: int

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            close_fd(self.fd)
            self.fd = -1

    def __enter__(self: _O) -> _O:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_cpu_list(text: str) -> Tuple[int, ...]:
    """``"0-3,5"`` (the sysfs cpu list format) -> (0, 1, 2, 3, 5)."""
    out: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return tuple(out)


def _cpus(kind: str) -> Tuple[int, ...]:
    try:
        with open(f"/sys/devices/system/cpu/{kind}") as f:
            return parse_cpu_list(f.read())
    except (OSError, ValueError):
        return tuple(range(os.cpu_count() or 1))


def possible_cpus() -> Tuple[int, ...]:
    """CPUs the kernel sizes per-CPU maps for (``/sys/devices/system/cpu/possible``)."""
    return _cpus("possible")


def online_cpus() -> Tuple[int, ...]:
    """CPUs a per-CPU perf event can be opened on now."""
    return _cpus("online")


def kernel_version_code(release: Optional[str] = None) -> int:
    """``LINUX_VERSION_CODE`` of ``release`` (uname -r): what pre-5.0 kernels wanted in
    ``kern_version`` for kprobe programs (ignored since v5.0, commit 6c4fc209fcf9
    "bpf: remove useless version check for prog load")."""
    rel = release or os.uname().release
    nums = []
    for part in rel.split("-", 1)[0].split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        nums.append(int(digits) if digits else 0)
    while len(nums) < 3:
        nums.append(0)
    return (nums[0] << 16) + (nums[1] << 8) + min(nums[2], 255)


def pack(fmt: str, *values: object) -> ctypes.Array:  # type: ignore[type-arg]
    """A writable attr buffer from a :mod:`struct` format (native order, explicit padding)."""
    raw = struct.pack("=" + fmt, *values)
    return ctypes.create_string_buffer(raw, len(raw))
