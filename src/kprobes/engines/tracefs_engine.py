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

import os
from typing import TYPE_CHECKING, Optional, Sequence, TextIO

from .._record import dataclass
from ..lang import check, parse_program
from ..lang.checked import CheckedProgram
from ..probes.arch import Arch, get_arch, host_arch
from .plan import ProgramPlan, plan_program
from .provider import KernelTypeProvider
from .runner import RunOptions, run_plan
from .targets import DEFAULT_BUDGET, Governor, SymbolSource

if TYPE_CHECKING:
    from ..btf import BTF
    from .base import Checked, Plan, PlanOptions

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
    """The running kernel's tracefs directory, or None (see :class:`~kprobes.backends.kernel.Kernel`)."""
    from ..backends.kernel import running_kernel

    return running_kernel().tracefs_root


def eprobes_available(root: Optional[str]) -> bool:
    """Whether the running kernel has event probes (``e:`` dynamic events) under ``root``."""
    from ..backends.kernel import running_kernel

    k = running_kernel()
    if root is None:
        return False
    return k.eprobes if root == k.tracefs_root else os.path.exists(os.path.join(root, "dynamic_events"))


def _arch(opts: EngineOptions) -> Arch:
    return get_arch(opts.arch) if opts.arch else host_arch()


def check_program(
    text: str,
    filename: str = "stdin",
    *,
    provider: Optional[KernelTypeProvider] = None,
    arch: Optional[Arch] = None,
    params: Sequence[str] = (),
) -> CheckedProgram:
    """Parse and type-check ``text`` (raises :class:`~kprobes.lang.LangError`);
    ``params``: the positional parameters ``$1``..."""
    a = arch or host_arch()
    prov = provider if provider is not None else KernelTypeProvider(_btf_or_none, tracefs_root())
    program = parse_program(text, filename)
    return check(program, prov, max_args=len(a.arg_regs), arch_name=a.name, params=params)


def _btf_or_none() -> Optional[BTF]:
    from ..backends.kernel import running_kernel

    return running_kernel().btf


def prepare(
    text: str,
    filename: str,
    opts: EngineOptions,
    *,
    provider: Optional[KernelTypeProvider] = None,
    symbols: Optional[SymbolSource] = None,
    params: Sequence[str] = (),
) -> ProgramPlan:
    """Parse, check and plan a program (no tracefs writes; see :mod:`.plan`)."""
    arch = _arch(opts)
    root = tracefs_root() if provider is None or symbols is None else None
    prov = provider if provider is not None else KernelTypeProvider(_btf_or_none, root)
    checked = check_program(text, filename, provider=prov, arch=arch, params=params)
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


class TracefsEngine:
    """The :class:`~kprobes.engines.base.Engine` of kernel dynamic events and Python."""

    name = "tracefs"

    def refusal(self, prog: "Checked") -> Optional[str]:
        return None  # its own errors say what is missing (no tracefs, no kprobes)

    def plan(self, prog: "Checked", opts: "PlanOptions") -> ProgramPlan:
        k = prog.kernel
        eprobes = opts.eprobes if opts.eprobes is not None else k.eprobes
        return plan_program(
            prog.checked,
            arch=prog.arch,
            provider=prog.provider,
            symbols=prog.symbols,
            eprobes=eprobes,
            governor=Governor(opts.budget if opts.budget is not None else DEFAULT_BUDGET, opts.unsafe),
            wildcard_filter=opts.wildcard_filter,
        )

    def run(self, plan: "Plan", opts: RunOptions, out: TextIO, err: TextIO) -> int:
        assert isinstance(plan, ProgramPlan)
        return run_plan(plan, opts, out, err)


ENGINE = TracefsEngine()
