"""The BPF engine: bpftrace programs compiled to eBPF in Python, run with in-kernel maps.

    from kprobes.engines.bpf import BpfOptions, prepare, run
    plan = prepare('tracepoint:syscalls:sys_enter_getppid { @[comm] = count(); }', "stdin",
                   BpfOptions())
    print(plan.describe())                       # --dry-run: maps, records, listings
    run(plan, RunOptions(duration=5), sys.stdout, sys.stderr)

* :mod:`.unit`    maps, output records and targets shared by a program's probes;
* :mod:`.layout`  key/value/record byte layouts, decoded into :mod:`kprobes.agg` values;
* :mod:`.codegen` one probe -> one eBPF program (:class:`~kprobes.bpf.asm.Assembler`);
* :mod:`.memory`  its struct members, pointers and strings;
* :mod:`.plan`    targets, programs, the ``--dry-run`` text;
* :mod:`.kmaps`   kernel maps seen as :class:`~kprobes.agg.BpfMap` (printing, clear, zero);
* :mod:`.lifecycle` create, load, attach, read the ring, BEGIN/interval/END, print at exit.

Entry points: :func:`prepare` (parse, check, plan; no kernel object is made) and
:func:`run` (needs root and a kernel with BPF).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, TextIO

if TYPE_CHECKING:
    from ..base import Checked, Plan, PlanOptions
    from ..lifecycle import RunOptions
    from ..targets import SymbolSource
    from .plan import BpfOptions, BpfPlan
    from .unit import Caps

__all__ = ["BpfOptions", "prepare", "run", "ENGINE"]


def __getattr__(name: str) -> object:
    if name == "BpfOptions":
        from .plan import BpfOptions

        return BpfOptions
    raise AttributeError(name)


def prepare(
    text: str,
    filename: str,
    opts: "BpfOptions",
    *,
    provider: Optional[object] = None,
    symbols: Optional["SymbolSource"] = None,
    caps: Optional["Caps"] = None,
) -> "BpfPlan":
    """Parse, check and compile ``text`` for the BPF engine (no kernel objects made).

    ``caps`` (None: probed from the running kernel) says which BPF features the
    generated code may use.
    """
    from ..base import check_program

    prog = check_program(text, filename, arch=opts.arch, provider=provider,  # type: ignore[arg-type]
                         symbols=symbols)
    return _plan(prog, opts, caps)


def _plan(prog: "Checked", opts: "BpfOptions", caps: Optional["Caps"]) -> "BpfPlan":
    from .plan import plan_checked
    from .unit import Caps

    if caps is None:
        caps = Caps.from_features(prog.kernel.bpf_features)
    return plan_checked(prog.checked, arch=prog.arch.name, types=prog.provider,
                        symbols=prog.symbols, caps=caps, opts=opts)


def run(plan: "BpfPlan", opts: "RunOptions", out: TextIO, err: TextIO) -> int:
    """Run a planned program to its end; returns the exit status."""
    from .lifecycle import run_plan

    return run_plan(plan, opts, out, err)


def _providers(prog: "Checked") -> "set[str]":
    return {ap.provider for probe in prog.checked.program.probes for ap in probe.attach_points}


#: Aggregations whose per-CPU state a BEGIN/END/interval probe (run in Python) cannot update.
_KERNEL_ONLY_AGGS = frozenset(["hist", "lhist", "min", "max", "avg", "stats"])


def _refuse_user_space_aggregations(prog: "Checked") -> None:
    """``BEGIN { @h = hist(1); }``: BEGIN/END/interval run in Python here, and the kernel's
    per-CPU hist/min/max/avg/stats values cannot be updated from there (``--engine auto``
    then plans the program on tracefs, where every map lives in Python)."""
    from ...lang import ast
    from ..variant import plan_error

    program = prog.checked.program
    for probe in program.probes:
        if not all(ap.provider in ("BEGIN", "END", "interval") for ap in probe.attach_points):
            continue
        for node in ast.walk(probe.body):
            if isinstance(node, ast.AssignMap) and isinstance(node.value, ast.Call) \
                    and node.value.name in _KERNEL_ONLY_AGGS:
                raise plan_error(program, f"the BPF engine cannot update a {node.value.name}() "
                                 f"map from a {probe.attach_points[0].provider} probe (it runs in "
                                 "user space); --engine tracefs can", node.span)


class BpfEngine:
    """The :class:`~kprobes.engines.base.Engine` of eBPF programs compiled in Python."""

    name = "bpf"

    def refusal(self, prog: "Checked") -> Optional[str]:
        from ...backends.kernel import bpf_refusal

        providers = _providers(prog) - {"BEGIN", "END", "interval"}
        if not providers:
            return None
        return bpf_refusal(prog.kernel.bpf_features, providers)

    def plan(self, prog: "Checked", opts: "PlanOptions") -> "Plan":
        from .plan import BpfOptions

        if not opts.unsafe:  # a uprobe inside an instruction corrupts the process: as tracefs
            from ..plan import _check_placement

            for probe in prog.checked.program.probes:
                for ap in probe.attach_points:
                    if ap.provider in ("uprobe", "uretprobe"):
                        _check_placement(prog.checked, ap)

        _refuse_user_space_aggregations(prog)
        o = BpfOptions(unsafe=opts.unsafe, wildcard_filter=opts.wildcard_filter, arch=opts.arch,
                       pid=opts.pid)
        if opts.budget is not None:
            o.budget = opts.budget
        return _plan(prog, o, None)

    def run(self, plan: "Plan", opts: "RunOptions", out: TextIO, err: TextIO) -> int:
        from .plan import BpfPlan

        assert isinstance(plan, BpfPlan)
        return run(plan, opts, out, err)


ENGINE = BpfEngine()
