"""The user-space half of bpftrace's formatting and resolving functions, shared by both engines.

Values of a :class:`~kprobes.lang.typesys.FmtType` are carried as raw data
(BPF: in the ring record; tracefs: in the fetched fields) and turned into
text here, as bpftrace 0.17 does in its user-space printer:

* ``strftime(fmt, ns)``: ``ns`` counts from boot (bpftrace 0.17 adds the
  boot time, ``CLOCK_REALTIME - CLOCK_BOOTTIME`` read once); ``%f`` is the
  microseconds, bpftrace's extension;
* ``strerror(n)``: the C library's text for ``n``;
* ``ntop([af,] addr)``: ``inet_ntop`` (``af`` 2 is IPv4, 10 IPv6);
* ``macaddr(p)``: six bytes, ``%02X:`` separated;
* ``buf(p, n)``: printable ASCII as is, other bytes ``\\xNN``;
* ``username``: the uid's name from the password database (the uid itself
  when it has none).

``kaddr``/``uaddr``/``cgroupid`` are resolved once, when the program is
planned: the kernel symbol's address from ``/proc/kallsyms``, the ELF
symbol's address in the probed binary, the inode of the cgroup directory.
:func:`refuse_unsafe` makes ``signal``/``system``/``override`` need
``--unsafe`` as bpftrace does.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from ..errors import KprobesError
from ..lang import ast
from ..lang.builtins import UNSAFE_FUNCTIONS

if TYPE_CHECKING:
    from ..lang.checked import CheckedProgram

__all__ = [
    "format_strftime", "format_strerror", "format_ntop", "format_macaddr", "format_buf",
    "format_username", "format_fmt", "kernel_address", "user_address", "cgroup_id",
    "refuse_unsafe", "AF_INET", "AF_INET6", "uprobe_binary", "read_for_cat", "run_system",
    "refuse_override", "ERROR_INJECTION_LIST", "JOIN_ARGS",
]  # fmt: skip

#: ``join(argv)``: the arguments read (the BPF stack bounds the BPF engine's record).
JOIN_ARGS = 6
AF_INET = 2
AF_INET6 = 10
_boot_ns: Optional[int] = None
_users: Dict[int, str] = {}


def boot_realtime_ns() -> int:
    """Wall-clock time of boot in ns (``CLOCK_REALTIME - CLOCK_BOOTTIME``), read once."""
    global _boot_ns
    if _boot_ns is None:
        _boot_ns = time.clock_gettime_ns(time.CLOCK_REALTIME) - time.clock_gettime_ns(
            getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC))
    return _boot_ns


def format_strftime(fmt: str, nsecs: int, boot_ns: Optional[int] = None) -> str:
    """``strftime(fmt, nsecs)`` as bpftrace 0.17 prints it (local time, ``%f`` microseconds)."""
    total = (boot_realtime_ns() if boot_ns is None else boot_ns) + (nsecs & ((1 << 64) - 1))
    secs, rest = divmod(total, 1_000_000_000)
    if "%f" in fmt:
        parts = fmt.split("%%")
        fmt = "%%".join(p.replace("%f", f"{rest // 1000:06d}") for p in parts)
    try:
        return time.strftime(fmt, time.localtime(secs))
    except (ValueError, OverflowError, OSError):
        return ""


def format_strerror(errno: int) -> str:
    """``strerror(n)``: the C library's message."""
    try:
        return os.strerror(_s32(errno))
    except ValueError:
        return f"Unknown error {_s32(errno)}"


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def format_ntop(af: int, raw: bytes) -> str:
    """``ntop(af, addr)``: ``raw`` holds the address in network order (4 or 16 bytes used)."""
    import socket

    if af == AF_INET6:  # inet_ntop's text (::ffff:127.0.0.1 for a mapped IPv4 address)
        return socket.inet_ntop(socket.AF_INET6, bytes(raw[:16]).ljust(16, b"\0"))
    return socket.inet_ntop(socket.AF_INET, bytes(raw[:4]).ljust(4, b"\0"))


def format_macaddr(raw: bytes) -> str:
    """``macaddr(p)``: ``AA:BB:CC:DD:EE:FF``."""
    return ":".join(f"{b:02X}" for b in bytes(raw[:6]).ljust(6, b"\0"))


def format_buf(raw: bytes) -> str:
    """``buf(p, n)`` printed with ``%r``: printable ASCII kept, other bytes ``\\xNN``."""
    return "".join(chr(b) if 32 <= b < 127 else f"\\x{b:02x}" for b in raw)


def format_username(uid: int) -> str:
    """``username``: the name of ``uid`` (its number when it has none)."""
    uid &= 0xFFFFFFFF
    name = _users.get(uid)
    if name is None:
        try:
            import pwd

            name = pwd.getpwuid(uid).pw_name
        except (KeyError, ImportError):
            name = str(uid)
        _users[uid] = name
    return name


def format_fmt(kind: str, raw: bytes, fmt: str = "") -> str:
    """Format the raw kernel data of a FmtType value (the BPF engine's record parts)."""
    v = int.from_bytes(raw[:8].ljust(8, b"\0"), "little")
    if kind == "strftime":
        return format_strftime(fmt, v)
    if kind == "strerror":
        return format_strerror(v)
    if kind == "username":
        return format_username(v)
    if kind == "ntop":
        return format_ntop(v, raw[8:24])
    if kind == "macaddr":
        return format_macaddr(raw[:6])
    if kind == "buf":
        return format_buf(raw[8:8 + min(v, len(raw) - 8)])
    raise KprobesError(f"no formatter for {kind} values")  # pragma: no cover - FmtType kinds


# -- resolved when the program is planned -------------------------------------------------
def kernel_address(name: str, kallsyms: str = "/proc/kallsyms") -> Optional[int]:
    """The address of kernel symbol ``name`` (None: not found, or addresses hidden)."""
    want = name.encode()
    try:
        with open(kallsyms, "rb") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == want:
                    addr = int(parts[0], 16)
                    return addr or None
    except OSError:
        return None
    return None


def user_address(path: str, name: str) -> int:
    """The address of ELF data symbol ``name`` in ``path`` (a non-PIE executable)."""
    from ..backends.symbols.elf import ELFFile

    try:
        with ELFFile(path) as elf:
            if elf.is_pie or elf.is_shared_object:
                raise KprobesError(
                    f"uaddr(\"{name}\"): {path} is position-independent, its symbols have no "
                    "fixed address", hint="uaddr() resolves symbols of non-PIE executables only")
            for table in (".symtab", ".dynsym"):
                for sym in elf.symbols(table):
                    # bpftrace 0.17 resolves variables only (a function: "Could not resolve")
                    if sym.name == name and sym.is_defined and sym.value and not sym.is_function:
                        return sym.value
    except OSError as exc:
        raise KprobesError(f"uaddr(\"{name}\"): cannot read {path}: {exc.strerror}") from None
    raise KprobesError(f"Could not resolve symbol: {path}:{name}")


def cgroup_id(path: str) -> int:
    """``cgroupid(path)``: the inode number of the cgroup2 directory (the kernel's cgroup id)."""
    try:
        return os.stat(path).st_ino
    except OSError as exc:
        raise KprobesError(f"Failed to get `cgroupid` for path: \"{path}\": {exc.strerror}") from None


def uprobe_binary(probe: ast.Probe) -> str:
    """The binary of a uprobe's first attach point (``uaddr()`` resolves symbols in it)."""
    for ap in probe.attach_points:
        if ap.provider in ("uprobe", "uretprobe", "usdt"):
            if ap.target.startswith("/"):
                return ap.target
            import shutil

            found = shutil.which(ap.target)
            if found:
                return found
            raise KprobesError(f"uaddr(): cannot find the binary {ap.target!r}",
                               hint="write the uprobe with an absolute path")
    raise KprobesError("uaddr() needs a uprobe")


#: Bytes ``cat()`` reads (bpftrace's BPFTRACE_CAT_BYTES_MAX, default 10 KiB; the CLI sets it).
CAT_BYTES_MAX = 10240


def read_for_cat(path: str, limit: Optional[int] = None) -> str:
    """``cat(path)``: the file's text (bpftrace prints it as is; an error goes to the output)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(CAT_BYTES_MAX if limit is None else limit).decode("utf-8", "replace")
    except OSError as exc:
        return f"ERROR: failed to open file '{path}': {exc.strerror}\n"


def run_system(command: str, timeout: float = 60.0) -> str:
    """``system(cmd)``: run through ``/bin/sh -c`` and return its standard output."""
    import subprocess

    try:
        done = subprocess.run(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"system(): {exc}\n"
    return done.stdout.decode("utf-8", "replace")


def refuse_unsafe(checked: CheckedProgram, unsafe: bool) -> None:
    """``signal()``, ``system()`` and ``override()`` need ``--unsafe`` (bpftrace's wording)."""
    if unsafe:
        return
    from .variant import plan_error

    found: List[Tuple[str, object]] = [
        (node.name, node.span) for probe in checked.program.probes
        for node in ast.walk((probe.predicate, probe.body))
        if isinstance(node, ast.Call) and node.name in UNSAFE_FUNCTIONS]
    if found:
        name, span = found[0]
        err = plan_error(checked.program, f"{name}() is an unsafe function being used in safe "
                         "mode", span)  # type: ignore[arg-type]
        err.hint = f"{name}() changes the traced system: pass --unsafe if you mean it"
        raise err


#: Functions the kernel lets ``bpf_override_return`` change (debugfs; CONFIG_FUNCTION_ERROR_INJECTION).
ERROR_INJECTION_LIST = "/sys/kernel/debug/error_injection/list"


def refuse_override(checked: CheckedProgram, index: int, funcs: List[str],
                    listing: str = ERROR_INJECTION_LIST) -> None:
    """``override()`` only on functions marked ``ALLOW_ERROR_INJECTION`` (when the kernel's
    list is readable; otherwise the kernel's attach refuses the others)."""
    from .variant import plan_error

    probe = checked.program.probes[index]
    found: List[object] = [node.span for node in ast.walk(probe.body)
                           if isinstance(node, ast.Call) and node.name == "override"]
    if not found:
        return
    try:
        with open(listing, encoding="ascii", errors="replace") as fh:
            allowed = {line.split()[0] for line in fh if line.strip()}
    except OSError:
        return
    bad = [f for f in funcs if f.split(":")[-1] not in allowed]
    if bad:
        err = plan_error(checked.program, f"override() needs a function marked "
                         f"ALLOW_ERROR_INJECTION; {bad[0]} is not one", found[0])  # type: ignore[arg-type]
        err.hint = f"the kernel lists the functions it allows in {listing}"
        raise err
