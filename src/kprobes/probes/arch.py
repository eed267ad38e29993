"""Calling-convention facts per architecture, in tracefs register names.

The names are the ones ``kprobe_events`` accepts after ``%`` (they come from the
kernel's ``regs_query_register_offset()`` tables, arch/*/kernel/ptrace.c).
"""

from __future__ import annotations

import os

from .._record import dataclass
from ..errors import KprobesError

__all__ = ["Arch", "ARCHES", "get_arch", "host_arch"]


@dataclass(frozen=True)
class Arch:
    """One architecture's ABI as tracefs sees it.

    ``arg_regs[i]`` holds argument ``i+1`` (``arg1`` is the first C argument);
    ``retval_reg`` the return value; ``stack_reg`` the stack pointer.
    ``bits`` is the native word size.
    """

    name: str
    arg_regs: tuple[str, ...]
    retval_reg: str
    stack_reg: str
    bits: int
    registers: tuple[str, ...]

    def arg_register(self, n: int) -> str | None:
        """Register holding 1-based argument ``n``, or None when it is passed on the stack."""
        if 1 <= n <= len(self.arg_regs):
            return self.arg_regs[n - 1]
        return None


_X86_64_REGS = (
    "ax", "bx", "cx", "dx", "si", "di", "bp", "sp", "ip", "flags", "cs", "ss",
    "ds", "es", "fs", "gs", "orig_ax",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
)  # fmt: skip

_ARM64_REGS = tuple(f"x{i}" for i in range(31)) + ("sp", "pc", "pstate")

ARCHES = {
    "x86_64": Arch(
        name="x86_64",
        arg_regs=("di", "si", "dx", "cx", "r8", "r9"),
        retval_reg="ax",
        stack_reg="sp",
        bits=64,
        registers=_X86_64_REGS,
    ),
    "arm64": Arch(
        name="arm64",
        arg_regs=("x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7"),
        retval_reg="x0",
        stack_reg="sp",
        bits=64,
        registers=_ARM64_REGS,
    ),
}
_ALIASES = {"amd64": "x86_64", "x86-64": "x86_64", "aarch64": "arm64"}


def get_arch(name: str) -> Arch:
    """Look an architecture up by its ``uname -m`` or kernel name."""
    key = _ALIASES.get(name, name)
    try:
        return ARCHES[key]
    except KeyError:
        raise KprobesError(
            f"unsupported architecture {name!r}",
            hint="supported: " + ", ".join(sorted(ARCHES)),
        ) from None


def host_arch() -> Arch:
    """The architecture this Python runs on."""
    return get_arch(os.uname().machine)
