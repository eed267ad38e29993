"""The tracefs engine: bpftrace programs on kprobe/uprobe/tracepoint events and Python.

    from kprobes.engines.tracefs_engine import EngineOptions, prepare, run
    plan = prepare('kprobe:do_sys_openat2 { printf("%s\\n", str(arg1)); }', "stdin", EngineOptions())
    print(plan.describe())                  # what --dry-run prints
    run(plan, RunOptions(duration=5), sys.stdout, sys.stderr)

What runs where:

* in the kernel: one dynamic event per probed place, with a fetcharg for
  every value only the kernel can read (arguments, the return value, comm,
  strings, struct members through BTF, tracepoint fields through event
  probes), and the predicate's exact parts as the event's filter;
* in Python: everything else — the rest of the predicate, the action,
  maps, printf, BEGIN/END/interval probes, the output at exit.

``nsecs`` is the event's timestamp in the session instance's ``mono`` trace
clock, i.e. CLOCK_MONOTONIC, the clock of bpftrace 0.17's ``nsecs``
(``bpf_ktime_get_ns``).  Events read as text have microsecond resolution.
"""

from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, TextIO

from ..errors import BTFError
from ..lang import check, parse_program
from ..lang.checked import CheckedProgram
from ..probes.arch import Arch, get_arch, host_arch
from .plan import ProgramPlan, plan_program
from .provider import KernelTypeProvider
from .runner import RunOptions, run_plan
from .targets import DEFAULT_BUDGET, Governor, SymbolSource

if TYPE_CHECKING:
    from ..btf import BTF

__all__ = [
    "EngineOptions", "RunOptions", "prepare", "check_program", "run", "tracefs_root",
    "eprobes_available",
]  # fmt: skip


@dataclass
class EngineOptions:
    """Planning choices: ``unsafe``/``budget`` (governor), ``wildcard_filter`` (ours: a
    second glob every kprobe wildcard must also match), ``eprobes`` (None: detect),
    ``arch`` (None: this machine's)."""

    unsafe: bool = False
    budget: int = DEFAULT_BUDGET
    wildcard_filter: Optional[str] = None
    eprobes: Optional[bool] = None
    arch: Optional[str] = None


def tracefs_root() -> Optional[str]:
    """The mounted tracefs directory, or None (never mounts anything)."""
    from ..backends.tracefs.fs import find_tracefs

    try:
        return find_tracefs(mount=False)
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return None


def _kernel_config() -> Optional[str]:
    try:
        with gzip.open("/proc/config.gz", "rt", encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        pass
    try:
        with open(f"/boot/config-{os.uname().release}", encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def eprobes_available(root: Optional[str]) -> bool:
    """Whether the kernel has event probes (``e:`` dynamic events).

    They need ``dynamic_events``; kernels that made them optional say so in
    their config (CONFIG_EPROBE_EVENTS, Linux 6.1+ has the symbol only on some
    builds); without a readable config they are assumed present.
    """
    if root is None or not os.path.exists(os.path.join(root, "dynamic_events")):
        return False
    config = _kernel_config()
    if config is None:
        return True
    if "# CONFIG_EPROBE_EVENTS is not set" in config:
        return False
    return True


@functools.lru_cache(maxsize=1)
def _load_btf() -> BTF:
    from ..btf import load_vmlinux

    return load_vmlinux()


def _arch(opts: EngineOptions) -> Arch:
    return get_arch(opts.arch) if opts.arch else host_arch()


def check_program(
    text: str,
    filename: str = "stdin",
    *,
    provider: Optional[KernelTypeProvider] = None,
    arch: Optional[Arch] = None,
) -> CheckedProgram:
    """Parse and type-check ``text`` (raises :class:`~kprobes.lang.LangError`)."""
    a = arch or host_arch()
    prov = provider if provider is not None else KernelTypeProvider(_btf_or_none, tracefs_root())
    program = parse_program(text, filename)
    return check(program, prov, max_args=len(a.arg_regs), arch_name=a.name)


def _btf_or_none() -> Optional[BTF]:
    try:
        return _load_btf()
    except BTFError:
        return None


def prepare(
    text: str,
    filename: str,
    opts: EngineOptions,
    *,
    provider: Optional[KernelTypeProvider] = None,
    symbols: Optional[SymbolSource] = None,
) -> ProgramPlan:
    """Parse, check and plan a program (no tracefs writes; see :mod:`.plan`)."""
    arch = _arch(opts)
    root = tracefs_root() if provider is None or symbols is None else None
    prov = provider if provider is not None else KernelTypeProvider(_btf_or_none, root)
    checked = check_program(text, filename, provider=prov, arch=arch)
    eprobes = opts.eprobes if opts.eprobes is not None else eprobes_available(root)
    return plan_program(
        checked,
        arch=arch,
        provider=prov,
        symbols=symbols or SymbolSource(tracefs_root=root),
        eprobes=eprobes,
        governor=Governor(opts.budget, opts.unsafe),
        wildcard_filter=opts.wildcard_filter,
    )


def run(plan: ProgramPlan, opts: RunOptions, out: TextIO, err: TextIO) -> int:
    """Run a planned program to its end (see :mod:`.runner`); returns the exit status."""
    return run_plan(plan, opts, out, err)
