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
    from ..runner import RunOptions
    from ..targets import SymbolSource
    from .plan import BpfOptions, BpfPlan
    from .unit import Caps

__all__ = ["BpfOptions", "prepare", "run"]


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
    from ...probes.arch import get_arch, host_arch
    from ..provider import KernelTypeProvider
    from ..targets import SymbolSource
    from ..tracefs_engine import _btf_or_none, check_program, tracefs_root
    from .plan import plan_checked
    from .unit import Caps

    arch = get_arch(opts.arch) if opts.arch else host_arch()
    root = tracefs_root()
    prov = provider if provider is not None else KernelTypeProvider(_btf_or_none, root)
    checked = check_program(text, filename, provider=prov, arch=arch)  # type: ignore[arg-type]
    if caps is None:
        from ...backends.bpf.features import probe_features

        caps = Caps.from_features(probe_features())
    return plan_checked(checked, arch=arch.name, types=prov,
                        symbols=symbols or SymbolSource(tracefs_root=root), caps=caps, opts=opts)


def run(plan: "BpfPlan", opts: "RunOptions", out: TextIO, err: TextIO) -> int:
    """Run a planned program to its end; returns the exit status."""
    from .lifecycle import run_plan

    return run_plan(plan, opts, out, err)
