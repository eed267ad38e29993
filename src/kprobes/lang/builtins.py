"""Names the language knows: builtin variables, functions, integer types.

The tables say which probe providers make each builtin available, which is
what both the checker and the engine (deciding what to fetch) rely on.
"""

from __future__ import annotations

__all__ = [
    "INT_TYPES", "C_TYPE_ALIASES", "BUILTINS", "UNSUPPORTED_BUILTINS", "ARG_PROVIDERS",
    "FUNCTIONS", "AGGREGATIONS", "UNSUPPORTED_FUNCTIONS", "is_builtin_name", "ALL_PROVIDERS",
    "BPF_ONLY_BUILTINS", "BPF_ONLY_FUNCTIONS", "BPF_ONLY_PROVIDERS", "STACK_MODES", "MAX_STACK",
    "BPF_ONLY_PROVIDER_REASONS", "RAW_TP_MAX_ARGS", "CTX_ARG_PROVIDERS",
    "NOT_IN_BPFTRACE_017", "UNSAFE_FUNCTIONS", "REFUSED_REASONS", "REGISTERS", "SIGNALS",
]  # fmt: skip

#: Cast type name -> (bits, signed).
INT_TYPES: dict[str, tuple[int, bool]] = {
    "uint8": (8, False), "int8": (8, True), "uint16": (16, False), "int16": (16, True),
    "uint32": (32, False), "int32": (32, True), "uint64": (64, False), "int64": (64, True),
}  # fmt: skip
#: C type names bpftrace refuses in casts, with the name to suggest (None: no hint).
C_TYPE_ALIASES: dict[str, str | None] = {
    "char": "int8", "short": "int16", "int": "int32", "long": "int64",
    "unsigned": None, "signed": None, "void": None,
}  # fmt: skip

ALL_PROVIDERS: frozenset[str] = frozenset(
    ["kprobe", "kretprobe", "uprobe", "uretprobe", "tracepoint", "interval", "profile", "BEGIN",
     "END", "kfunc", "kretfunc", "rawtracepoint", "software", "hardware", "usdt"]
)
_ALL = ALL_PROVIDERS
#: Probes that run in the kernel with registers (a stack to walk).
_IN_KERNEL = frozenset(["kprobe", "kretprobe", "uprobe", "uretprobe", "tracepoint", "profile",
                        "kfunc", "kretfunc", "rawtracepoint", "software", "hardware", "usdt"])
#: Builtin variable -> providers where it is available.
BUILTINS: dict[str, frozenset[str]] = {
    "pid": _ALL, "tid": _ALL, "uid": _ALL, "gid": _ALL, "comm": _ALL, "nsecs": _ALL,
    "elapsed": _ALL, "cpu": _ALL, "probe": _ALL,
    "func": frozenset(["kprobe", "kretprobe", "uprobe", "uretprobe", "kfunc", "kretfunc"]),
    "retval": frozenset(["kretprobe", "uretprobe", "kretfunc"]),
    "args": frozenset(["tracepoint", "kfunc", "kretfunc"]),
    "kstack": _IN_KERNEL, "ustack": _IN_KERNEL, "curtask": _ALL, "rand": _ALL, "cgroup": _ALL, "cpid": _ALL,
    "numaid": _ALL, "username": _ALL,
}  # fmt: skip
#: Providers where ``arg0``..``argN`` are available.
ARG_PROVIDERS: frozenset[str] = frozenset(["kprobe", "uprobe", "usdt"])
#: Providers whose ``argN`` is slot N of a u64 context array (not a register), and
#: how many slots there can be (the kernel's MAX_BPF_FUNC_ARGS).
CTX_ARG_PROVIDERS: frozenset[str] = frozenset(["rawtracepoint"])
RAW_TP_MAX_ARGS = 12
#: bpftrace builtins this front end parses but refuses.
UNSUPPORTED_BUILTINS: frozenset[str] = frozenset(
    ["ctx", "jiffies"]
)  # fmt: skip

#: Aggregation functions: only valid as ``@map[...] = agg(...)``.
AGGREGATIONS: frozenset[str] = frozenset(
    ["count", "sum", "avg", "min", "max", "stats", "hist", "lhist"]
)
#: Supported functions -> (min args, max args).
FUNCTIONS: dict[str, tuple[int, int]] = {
    "printf": (1, 128), "print": (1, 3), "time": (0, 1), "str": (1, 2), "ksym": (1, 1),
    "exit": (0, 1), "clear": (1, 1), "delete": (1, 2), "zero": (1, 1),
    "count": (0, 0), "sum": (1, 1), "avg": (1, 1), "min": (1, 1), "max": (1, 1),
    "stats": (1, 1), "hist": (1, 2), "lhist": (4, 4),
    "kstack": (0, 2), "ustack": (0, 2), "usym": (1, 1),
    "strftime": (2, 2), "strncmp": (3, 3), "bswap": (1, 1), "strerror": (1, 1),
    "kaddr": (1, 1), "uaddr": (1, 1), "cgroupid": (1, 1), "ntop": (1, 2), "pton": (1, 1),
    "macaddr": (1, 1), "buf": (1, 2), "reg": (1, 1), "kptr": (1, 1), "uptr": (1, 1),
    "join": (1, 2), "cat": (1, 128), "system": (1, 128), "signal": (1, 1), "override": (1, 1),
    "strcontains": (2, 2),
}  # fmt: skip
#: bpftrace functions this front end knows but refuses.
UNSUPPORTED_FUNCTIONS: frozenset[str] = frozenset(
    ["cgroup_path", "path", "offsetof", "unwatch", "skboutput",
     "debugf", "has_key", "len", "percpu_kaddr", "nsecs", "errorf", "warnf"]
)  # fmt: skip
#: Names people paste from newer bpftrace references that 0.17 does not have.
NOT_IN_BPFTRACE_017: frozenset[str] = frozenset(
    ["has_key", "len", "offsetof", "percpu_kaddr", "errorf", "warnf", "nsecs", "jiffies"]
)  # fmt: skip
#: Why a known function is refused (shown as the error's hint).
REFUSED_REASONS: dict[str, str] = {
    "cgroup_path": "cgroup_path() is not supported yet",
    "path": "path() calls bpf_d_path, which the kernel allows only in fentry/fexit (kfunc) "
            "programs; print a member instead, e.g. str($f->f_path.dentry->d_name.name)",
    "unwatch": "unwatch() needs watchpoint probes, which kprobes does not support",
    "skboutput": "skboutput() needs an sk_buff context (fentry/tc programs), which kprobes "
                 "does not attach",
    "debugf": "debugf() writes to the global trace_pipe, which kprobes never touches; use printf()",
}  # fmt: skip
#: Functions that change the traced system: refused without ``--unsafe`` (as bpftrace).
UNSAFE_FUNCTIONS: frozenset[str] = frozenset(["signal", "system", "override"])

#: What only an engine running code in the kernel (``--engine bpf``) can do:
#: the tracefs engine refuses these with that reason.
BPF_ONLY_BUILTINS: frozenset[str] = frozenset(
    ["kstack", "ustack", "curtask", "rand", "cgroup", "numaid"]
)  # fmt: skip
BPF_ONLY_FUNCTIONS: frozenset[str] = frozenset(
    ["kstack", "ustack", "usym", "signal", "override"]
)  # fmt: skip
BPF_ONLY_PROVIDERS: frozenset[str] = frozenset(
    ["profile", "kfunc", "kretfunc", "rawtracepoint", "software", "hardware"]
)  # fmt: skip
#: Why the tracefs engine cannot run each BPF-only provider.
BPF_ONLY_PROVIDER_REASONS: dict[str, str] = {
    "profile": "sampling every CPU runs a program on a perf event",
    "kfunc": "fentry programs are BPF trampolines; tracefs has no such event",
    "kretfunc": "fexit programs are BPF trampolines; tracefs has no such event",
    "rawtracepoint": "raw tracepoints are only reachable by BPF programs",
    "software": "a perf event's samples run a BPF program; tracefs cannot open perf events",
    "hardware": "a perf event's samples run a BPF program; tracefs cannot open perf events",
}  # fmt: skip
#: ``kstack(MODE)`` modes and the largest frame limit (``kstack(N)``).
STACK_MODES: tuple[str, ...] = ("bpftrace", "perf", "raw")
MAX_STACK = 1024


#: ``reg("NAME")``: the ``struct pt_regs`` register names bpftrace accepts, per arch.
REGISTERS: dict[str, tuple[str, ...]] = {
    "x86_64": ("r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx",
               "dx", "si", "di", "orig_ax", "ip", "cs", "flags", "sp", "ss"),
    "arm64": tuple(f"x{i}" for i in range(31)) + ("sp", "pc", "pstate"),
}  # fmt: skip
#: ``signal("NAME")``: Linux signal numbers (names with or without ``SIG``).
SIGNALS: dict[str, int] = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "BUS": 7, "FPE": 8,
    "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15,
    "STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22,
    "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29,
    "PWR": 30, "SYS": 31,
}  # fmt: skip


def is_builtin_name(name: str) -> bool:
    """True for builtin variables (supported or not), ``argN`` and ``sargN``."""
    if name in BUILTINS or name in UNSUPPORTED_BUILTINS:
        return True
    for prefix in ("arg", "sarg"):
        digits = name[len(prefix) :]
        if name.startswith(prefix) and digits.isdigit() and digits.isascii():
            return True
    return False
