"""The tracefs mount: finding it, reading it, and writing it the way the kernel wants.

Every kernel-facing write goes through :class:`TraceFS`, which translates errno
once, here, and turns a refused dynamic-event definition into the same
:class:`~kprobes.errors.ProbeSyntaxError` the offline validator raises, using the
kernel's own ``error_log`` entry (message and caret position).
"""

from __future__ import annotations

import errno
import os
import re
from typing import Iterator, List, Optional

from ..._record import dataclass
from ...errors import (
    FeatureMissing,
    KernelRefused,
    KprobesError,
    PermissionProblem,
    TracefsUnavailable,
)

__all__ = ["TraceFS", "ErrorLogEntry", "parse_error_log", "find_tracefs"]

_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
_PERM_HINT = (
    "run as root, or give the user CAP_PERFMON and access to tracefs "
    "(mount -t tracefs -o gid=GROUP nodev /sys/kernel/tracing)"
)


@dataclass(frozen=True)
class ErrorLogEntry:
    """One entry of tracefs ``error_log``.

    ``position`` is the 0-based offset of the caret within ``command``.
    """

    timestamp: float
    subsystem: str
    message: str
    command: str
    position: int


_ERR_HEAD = re.compile(r"^\[\s*(\d+\.\d+)\]\s+(\S+):\s+error:\s+(.*)$")
_CMD = "  Command: "


def parse_error_log(text: str) -> List[ErrorLogEntry]:
    """Parse the whole ``error_log`` text into entries (oldest first)."""
    out: List[ErrorLogEntry] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = _ERR_HEAD.match(lines[i])
        if m and i + 2 < len(lines) + 1 and i + 1 < len(lines) and lines[i + 1].startswith(_CMD):
            cmd = lines[i + 1][len(_CMD) :]
            caret = lines[i + 2] if i + 2 < len(lines) else ""
            col = caret.find("^")
            pos = max(0, col - len(_CMD)) if col >= 0 else 0
            out.append(ErrorLogEntry(float(m.group(1)), m.group(2), m.group(3).strip(), cmd, pos))
            i += 3
            continue
        i += 1
    return out


def new_entries(before: List[ErrorLogEntry], after: List[ErrorLogEntry]) -> List[ErrorLogEntry]:
    """Entries of ``after`` that were not in ``before`` (the log drops its oldest entries)."""
    for m in range(min(len(before), len(after)), 0, -1):
        if before[-m:] == after[:m]:
            return after[m:]
    return after if after != before else []


def _mounted_tracefs() -> Optional[str]:
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == "tracefs":
                    return parts[1].replace("\\040", " ")
    except OSError:
        pass
    return None


def find_tracefs(mount: bool = True) -> str:
    """Return the tracefs mount point, mounting it when root and it is missing."""
    for cand in _CANDIDATES:
        if os.path.exists(os.path.join(cand, "README")):
            return cand
    m = _mounted_tracefs()
    if m and os.path.exists(os.path.join(m, "README")):
        return m
    if os.path.isdir(_CANDIDATES[0]) and mount and os.geteuid() == 0:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        if libc.mount(b"nodev", _CANDIDATES[0].encode(), b"tracefs", 0, None) == 0:
            return _CANDIDATES[0]
        err = ctypes.get_errno()
        raise TracefsUnavailable(
            f"tracefs is not mounted and mounting it failed: {os.strerror(err)}",
            hint="mount -t tracefs nodev /sys/kernel/tracing (needs CONFIG_TRACING)",
        )
    if os.geteuid() != 0 and os.path.isdir(_CANDIDATES[0]):
        raise PermissionProblem(
            "tracefs is not visible: /sys/kernel/tracing is empty or unreadable for this user",
            hint=_PERM_HINT,
        )
    raise TracefsUnavailable(
        "tracefs is not available on this system",
        hint="the kernel needs CONFIG_TRACING; mount it with: mount -t tracefs nodev /sys/kernel/tracing",
    )


class TraceFS:
    """A tracefs tree (the real mount, or a fake tree in tests).

    Paths given to methods are relative to ``root``.  Constructing one touches
    nothing; :meth:`discover` finds (and if needed mounts) the real one.
    """

    def __init__(self, root: str) -> None:
        self.root = root

    @classmethod
    def discover(cls) -> TraceFS:
        return cls(find_tracefs())

    def path(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def exists(self, rel: str) -> bool:
        return os.path.exists(self.path(rel))

    def read(self, rel: str) -> str:
        try:
            with open(self.path(rel), encoding="utf-8", errors="replace") as f:
                return f.read()
        except PermissionError as e:
            raise PermissionProblem(f"cannot read {self.path(rel)}: permission denied", hint=_PERM_HINT) from e
        except FileNotFoundError as e:
            raise FeatureMissing(f"{self.path(rel)} does not exist on this kernel") from e

    def listdir(self, rel: str) -> List[str]:
        try:
            return sorted(os.listdir(self.path(rel)))
        except FileNotFoundError:
            return []

    def write(self, rel: str, text: str, *, append: bool = False) -> None:
        """Write ``text`` in one ``write(2)``.

        ``append`` opens with ``O_APPEND`` (dynamic-event files: adding must not
        clear the other definitions; Python's ``open(..., "a")`` seeks and tracefs
        refuses that).  Otherwise the file is truncated first (enable, filter...).
        """
        flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
        path = self.path(rel)
        try:
            fd = os.open(path, flags)
        except PermissionError as e:
            raise PermissionProblem(f"cannot write {path}: permission denied", hint=_PERM_HINT) from e
        except FileNotFoundError as e:
            raise FeatureMissing(f"{path} does not exist on this kernel") from e
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def error_log_entries(self) -> List[ErrorLogEntry]:
        try:
            return parse_error_log(self.read("error_log"))
        except KprobesError:
            return []

    def write_definition(self, rel: str, definition: str) -> None:
        """Append one dynamic-event definition; on refusal raise what ``error_log`` says.

        Only an entry that the refused write itself added counts: the log keeps
        just its last 8 entries, and some refusals log nothing at all.
        """
        before = self.error_log_entries()
        try:
            self.write(rel, definition + "\n", append=True)
        except OSError as e:
            raise self._refusal(definition, e, new_entries(before, self.error_log_entries())) from None

    def _refusal(self, definition: str, err: OSError, new: List[ErrorLogEntry]) -> KprobesError:
        match = [en for en in new if en.command.strip() == definition.strip()] or new
        if err.errno == errno.EEXIST:
            return KprobesError(
                f"the kernel refused {definition!r}: an event with that name already exists",
                hint="choose another event name, or remove the old one first",
            )
        if err.errno in (errno.EPERM, errno.EACCES):
            return PermissionProblem(f"the kernel refused {definition!r}: permission denied", hint=_PERM_HINT)
        if err.errno == errno.EBUSY:
            return KprobesError(
                f"the kernel refused {definition!r}: the event is busy (enabled or used by another tracer)",
                hint="disable it first (its enable file, or the tool that uses it)",
            )
        if err.errno == errno.EILSEQ and not match:
            return KprobesError(
                f"the kernel refused {definition!r}: the probe point is not an instruction "
                "boundary (FUNC+OFFS must be the first byte of an instruction)",
                hint=_INSN_HINT,
            )
        if match:
            en = match[-1]
            return KernelRefused(
                en.message,
                en.command,
                en.position,
                from_kernel=True,
                hint=_hint_for(en.message),
            )
        return KprobesError(
            f"the kernel refused {definition!r}: {os.strerror(err.errno or 0)} "
            "(without an error_log entry)",
            hint="'kprobes check DEF' explains most refusals offline; "
            "check the function exists with 'kprobes list NAME'",
        )

    def iter_lines(self, rel: str) -> Iterator[str]:
        for line in self.read(rel).splitlines():
            if line and not line.startswith("#"):
                yield line


_INSN_HINT = ("a kprobe must start an instruction: take FUNC+OFFS from the disassembly "
              "(objdump -d vmlinux, or gdb 'disassemble FUNC'), or probe FUNC itself")


def _hint_for(message: str) -> Optional[str]:
    low = message.lower()
    if "instruction boundary" in low:
        return _INSN_HINT
    if "symbol" in low or "probe point" in low:
        return "check the name with 'kprobes list NAME': it may be inlined, static, or renamed (.isra/.constprop)"
    if "register" in low:
        return "register names are the arch's pt_regs names, e.g. %di %si %dx %cx on x86_64"
    if "type" in low:
        return "types: u8..u64 s8..s64 x8..x64 char string ustring symbol symstr b<W>@<O>/<C> TYPE[N]"
    return "see Documentation/trace/kprobetrace.rst for the syntax; 'kprobes check DEF' explains offline"
