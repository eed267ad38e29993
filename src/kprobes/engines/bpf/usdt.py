"""USDT arguments in eBPF: ``argN`` of a ``usdt`` probe read where its note says.

Each site is its own program (:mod:`.plan`), so the locations are constants of
the code.  ``r6`` is the uprobe's ``struct pt_regs``; the value ends in ``r0``
sign- or zero-extended from its size (bpftrace's semantics):

* register: one load from ``pt_regs`` (``%ah``: shifted right by 8);
* memory ``off(%base[,%index,scale])`` and globals (``sym(%rip)``, already
  made ``off(%ip)``): the address computed from ``pt_regs``, then
  ``probe_read_user`` of SIZE bytes into a zeroed stack slot;
* constant: an immediate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...bpf.insn import R0, R1, R2, R3, R6, R10
from ...lang.typesys import IntType

if TYPE_CHECKING:
    from ...backends.symbols.usdt import UsdtProbe
    from ...lang import ast
    from .codegen import ProbeCodegen

__all__ = ["emit_usdt_arg"]

_LOAD = {1: "b", 2: "h", 4: "w", 8: "dw"}
_SHIFT = {1: 0, 2: 1, 4: 2, 8: 3}


def emit_usdt_arg(gen: "ProbeCodegen", site: "UsdtProbe", idx: int, node: "ast.Builtin") -> None:
    """``r0`` = USDT argument ``idx`` of ``site`` (see the module docstring)."""
    from .codegen import PT_REGS

    if idx >= len(site.args):
        n = len(site.args)
        raise gen.error(f"usdt probe {site.provider}:{site.name} has {n} argument"
                        f"{'s' if n != 1 else ''} ({site.args_text or 'none'}): {node.name} "
                        "does not exist", node)
    arg = site.args[idx]
    regs = PT_REGS[gen.arch]
    for r in (arg.reg, arg.index):
        if r and r not in regs:
            raise gen.error(f"{node.name} ({arg.text}) is in %{r}, which a uprobe's pt_regs "
                            f"on {gen.arch} does not hold", node)
    a = gen.a
    if arg.kind == "const":
        gen.load_const(R0, arg.offset)
    elif arg.kind == "reg":
        a.ldx("dw", R0, R6, regs[arg.reg])
        if arg.shift:
            a.rsh64(R0, arg.shift)
    else:
        with a.stack.scope():
            buf = gen.alloc(8, node.name)
            a.st("dw", R10, buf, 0)
            a.ldx("dw", R3, R6, regs[arg.reg])
            if arg.index:
                a.ldx("dw", R1, R6, regs[arg.index])
                if arg.scale > 1:
                    a.lsh64(R1, _SHIFT[arg.scale])
                a.add64(R3, R1)
            if arg.offset:
                gen.load_const(R1, arg.offset)
                a.add64(R3, R1)
            gen.fp(R1, buf)
            a.mov64(R2, arg.size)
            a.call(gen.probe_read(True))
            a.ldx(_LOAD[arg.size], R0, R10, buf)
    gen.normalize(R0, IntType(arg.bits, arg.signed))

