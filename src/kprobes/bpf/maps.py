"""BPF map definitions and the uapi enums a backend needs (pure data, no I/O).

- ``MapType``, ``ProgType``, ``AttachType``: ``enum bpf_map_type`` /
  ``bpf_prog_type`` / ``bpf_attach_type`` values from uapi ``bpf.h`` as plain
  ``int`` class attributes (``MapType.RINGBUF == 27``, ``ProgType.KPROBE == 2``,
  ``AttachType.TRACE_KPROBE_MULTI == 42``).  ``enum_name(MapType, 27)`` -> ``"RINGBUF"``.
- Map flags (``BPF_F_*`` for BPF_MAP_CREATE) and update flags (``ANY``, ``NOEXIST``, ``EXIST``).
- :class:`MapSpec` describes a map to create: ``MapSpec("counts", MapType.HASH,
  key_size=8, value_size=8, max_entries=10240)``.  The name is sanitized to what
  the kernel accepts (``[A-Za-z0-9_.]``, at most 15 bytes); sizes are checked per
  type (ringbuf: power-of-two pages, key/value 0; arrays: 4-byte keys...).  A
  ``MapSpec`` is hashable, so it can be the map reference given to
  ``Assembler.ld_map_fd``.
"""

from __future__ import annotations

import re
from typing import Optional, Tuple

from .insn import BPFError

__all__ = [
    "MapType", "ProgType", "AttachType", "MapSpec", "enum_name", "sanitize_name",
    "OBJ_NAME_LEN", "PAGE_SIZE",
]

OBJ_NAME_LEN = 16  # BPF_OBJ_NAME_LEN, including the NUL
PAGE_SIZE = 4096

# BPF_MAP_CREATE flags
F_NO_PREALLOC = 1 << 0
F_NO_COMMON_LRU = 1 << 1
F_NUMA_NODE = 1 << 2
F_RDONLY = 1 << 3
F_WRONLY = 1 << 4
F_STACK_BUILD_ID = 1 << 5
F_ZERO_SEED = 1 << 6
F_RDONLY_PROG = 1 << 7
F_WRONLY_PROG = 1 << 8
F_CLONE = 1 << 9
F_MMAPABLE = 1 << 10
# BPF_MAP_UPDATE_ELEM flags
ANY, NOEXIST, EXIST, F_LOCK = 0, 1, 2, 4
# BPF_PROG_LOAD / link flags
F_SLEEPABLE = 1 << 4
F_KPROBE_MULTI_RETURN = 1 << 0
F_UPROBE_MULTI_RETURN = 1 << 0
# get_stackid / get_stack flags
F_USER_STACK = 1 << 8
F_FAST_STACK_CMP = 1 << 9
F_REUSE_STACKID = 1 << 10
F_CURRENT_CPU = 0xFFFFFFFF


class MapType:
    """``enum bpf_map_type``."""

    UNSPEC = 0
    HASH = 1
    ARRAY = 2
    PROG_ARRAY = 3
    PERF_EVENT_ARRAY = 4
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    STACK_TRACE = 7
    CGROUP_ARRAY = 8
    LRU_HASH = 9
    LRU_PERCPU_HASH = 10
    LPM_TRIE = 11
    ARRAY_OF_MAPS = 12
    HASH_OF_MAPS = 13
    DEVMAP = 14
    SOCKMAP = 15
    CPUMAP = 16
    XSKMAP = 17
    SOCKHASH = 18
    CGROUP_STORAGE = 19
    REUSEPORT_SOCKARRAY = 20
    PERCPU_CGROUP_STORAGE = 21
    QUEUE = 22
    STACK = 23
    SK_STORAGE = 24
    DEVMAP_HASH = 25
    STRUCT_OPS = 26
    RINGBUF = 27
    INODE_STORAGE = 28
    TASK_STORAGE = 29
    BLOOM_FILTER = 30
    USER_RINGBUF = 31
    CGRP_STORAGE = 32
    ARENA = 33


class ProgType:
    """``enum bpf_prog_type``."""

    UNSPEC = 0
    SOCKET_FILTER = 1
    KPROBE = 2
    SCHED_CLS = 3
    SCHED_ACT = 4
    TRACEPOINT = 5
    XDP = 6
    PERF_EVENT = 7
    CGROUP_SKB = 8
    CGROUP_SOCK = 9
    LWT_IN = 10
    LWT_OUT = 11
    LWT_XMIT = 12
    SOCK_OPS = 13
    SK_SKB = 14
    CGROUP_DEVICE = 15
    SK_MSG = 16
    RAW_TRACEPOINT = 17
    CGROUP_SOCK_ADDR = 18
    LWT_SEG6LOCAL = 19
    LIRC_MODE2 = 20
    SK_REUSEPORT = 21
    FLOW_DISSECTOR = 22
    CGROUP_SYSCTL = 23
    RAW_TRACEPOINT_WRITABLE = 24
    CGROUP_SOCKOPT = 25
    TRACING = 26
    STRUCT_OPS = 27
    EXT = 28
    LSM = 29
    SK_LOOKUP = 30
    SYSCALL = 31
    NETFILTER = 32


class AttachType:
    """``enum bpf_attach_type`` (without the ``BPF_`` prefix)."""

    CGROUP_INET_INGRESS = 0
    CGROUP_INET_EGRESS = 1
    CGROUP_INET_SOCK_CREATE = 2
    CGROUP_SOCK_OPS = 3
    SK_SKB_STREAM_PARSER = 4
    SK_SKB_STREAM_VERDICT = 5
    CGROUP_DEVICE = 6
    SK_MSG_VERDICT = 7
    CGROUP_INET4_BIND = 8
    CGROUP_INET6_BIND = 9
    CGROUP_INET4_CONNECT = 10
    CGROUP_INET6_CONNECT = 11
    CGROUP_INET4_POST_BIND = 12
    CGROUP_INET6_POST_BIND = 13
    CGROUP_UDP4_SENDMSG = 14
    CGROUP_UDP6_SENDMSG = 15
    LIRC_MODE2 = 16
    FLOW_DISSECTOR = 17
    CGROUP_SYSCTL = 18
    CGROUP_UDP4_RECVMSG = 19
    CGROUP_UDP6_RECVMSG = 20
    CGROUP_GETSOCKOPT = 21
    CGROUP_SETSOCKOPT = 22
    TRACE_RAW_TP = 23
    TRACE_FENTRY = 24
    TRACE_FEXIT = 25
    MODIFY_RETURN = 26
    LSM_MAC = 27
    TRACE_ITER = 28
    CGROUP_INET4_GETPEERNAME = 29
    CGROUP_INET6_GETPEERNAME = 30
    CGROUP_INET4_GETSOCKNAME = 31
    CGROUP_INET6_GETSOCKNAME = 32
    XDP_DEVMAP = 33
    CGROUP_INET_SOCK_RELEASE = 34
    XDP_CPUMAP = 35
    SK_LOOKUP = 36
    XDP = 37
    SK_SKB_VERDICT = 38
    SK_REUSEPORT_SELECT = 39
    SK_REUSEPORT_SELECT_OR_MIGRATE = 40
    PERF_EVENT = 41
    TRACE_KPROBE_MULTI = 42
    LSM_CGROUP = 43
    STRUCT_OPS = 44
    NETFILTER = 45
    TCX_INGRESS = 46
    TCX_EGRESS = 47
    TRACE_UPROBE_MULTI = 48


def enum_name(enum: type, value: int) -> Optional[str]:
    """The attribute name of ``value`` in one of the enum classes above."""
    for k, v in vars(enum).items():
        if v == value and not k.startswith("_") and isinstance(v, int):
            return k
    return None


_BAD = re.compile(r"[^A-Za-z0-9_.]")


def sanitize_name(name: str) -> str:
    """A kernel-acceptable object name: ``[A-Za-z0-9_.]`` only, at most 15 bytes."""
    return _BAD.sub("_", name)[: OBJ_NAME_LEN - 1]


_ARRAYS = (MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY,
           MapType.CGROUP_ARRAY, MapType.ARRAY_OF_MAPS)
_FD_ARRAYS = (MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY, MapType.CGROUP_ARRAY,
              MapType.ARRAY_OF_MAPS)


class MapSpec:
    """What BPF_MAP_CREATE needs for one map (immutable, hashable).

    ``name`` is the sanitized kernel name; ``label`` keeps the caller's
    original spelling (e.g. ``"@counts"``) for messages and listings.
    """

    __slots__ = ("name", "type", "key_size", "value_size", "max_entries", "flags", "label")

    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    label: str

    def __init__(
        self,
        name: str,
        type: int,
        key_size: int,
        value_size: int,
        max_entries: int,
        flags: int = 0,
    ) -> None:
        label = name
        s = sanitize_name(name)
        for attr, v in (("key_size", key_size), ("value_size", value_size),
                        ("max_entries", max_entries), ("flags", flags)):
            if not isinstance(v, int) or not (0 <= v <= 0xFFFFFFFF):
                raise BPFError(f"map {label!r}: {attr} {v!r} is not an unsigned 32-bit value")
        if enum_name(MapType, type) is None or type == MapType.UNSPEC:
            raise BPFError(f"map {label!r}: unknown map type {type!r}")
        self._check(label, type, key_size, value_size, max_entries)
        object.__setattr__(self, "name", s)
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "key_size", key_size)
        object.__setattr__(self, "value_size", value_size)
        object.__setattr__(self, "max_entries", max_entries)
        object.__setattr__(self, "flags", flags)
        object.__setattr__(self, "label", label)

    @staticmethod
    def _check(label: str, t: int, ks: int, vs: int, n: int) -> None:
        def bad(msg: str, hint: Optional[str] = None) -> BPFError:
            return BPFError(f"map {label!r} ({enum_name(MapType, t)}): {msg}", hint=hint)

        if t in (MapType.RINGBUF, MapType.USER_RINGBUF):
            if ks or vs:
                raise bad("key_size and value_size must be 0")
            if n < PAGE_SIZE or n & (n - 1):
                raise bad(f"size {n} must be a power of two and at least one page",
                          hint="max_entries of a ring buffer is its size in bytes")
            return
        if n == 0:
            raise bad("max_entries must be positive")
        if t in _ARRAYS and ks != 4:
            raise bad("array maps have 4-byte keys")
        if t in _FD_ARRAYS and vs != 4:
            raise bad("value_size must be 4 (a file descriptor)")
        if t == MapType.STACK_TRACE and (vs == 0 or vs % 8):
            raise bad("value_size must be a multiple of 8 (u64 addresses)")
        if t in (MapType.QUEUE, MapType.STACK, MapType.BLOOM_FILTER):
            if ks:
                raise bad("key_size must be 0")
        elif ks == 0:
            raise bad("key_size must be positive")
        if vs == 0 and t not in _FD_ARRAYS:
            raise bad("value_size must be positive")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("MapSpec is immutable")

    def _key(self) -> Tuple[str, int, int, int, int, int, str]:
        return (self.name, self.type, self.key_size, self.value_size, self.max_entries,
                self.flags, self.label)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MapSpec) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"MapSpec({self.label!r}, {enum_name(MapType, self.type)}, "
                f"key_size={self.key_size}, value_size={self.value_size}, "
                f"max_entries={self.max_entries}, flags={self.flags:#x})")
