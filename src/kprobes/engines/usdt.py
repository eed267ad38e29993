"""USDT arguments on the tracefs engine: each site's locations as uprobe fetchargs.

The fetch finder (:mod:`.fetch`) writes ``argN`` of a ``usdt`` probe as the
placeholder ``{usdtN}`` (one fetch list for all the probe's sites, whose
arguments may live in different places).  :func:`usdt_fetches` replaces it
for one site:

=====================  ==================  =======================================
note                   location            fetcharg
=====================  ==================  =======================================
``-4@%edi``            register            ``%di:s32`` (the low 32 bits, signed)
``8@-16(%rbp)``        memory              ``-16(%bp):u64`` (user memory: a uprobe)
``-4@g_vol(%rip)``     a global            ``+OFF(%ip):s32`` (``ip`` is the probed
                                           address in a uprobe handler)
``-4@$5``              constant            ``\\5:s32`` (immediates: Linux 5.7+)
``-8@(%rdx,%rdi,8)``   base + index        refused: fetchargs cannot add registers
=====================  ==================  =======================================

``str(argN)`` becomes ``+0(LOCATION):ustring``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Iterable, Tuple

from ..errors import KprobesError
from .fetch import Fetch

if TYPE_CHECKING:
    import contextlib

    from ..probes.usdt import UsdtArg
    from .targets import Target

__all__ = ["usdt_fetches", "arg_location", "held_semaphores"]

_SLOT = re.compile(r"\{usdt(\d+)\}")


def arg_location(arg: "UsdtArg", where: str) -> str:
    """The fetcharg expression (no type) of one USDT argument; ``where`` names it in errors."""
    from ..probes.usdt import UsdtError

    try:
        return arg.fetcharg()
    except UsdtError as e:
        raise KprobesError(f"{where}: {e.message}", hint=e.hint) from None


def usdt_fetches(fetches: Tuple[Fetch, ...], target: "Target") -> Tuple[Fetch, ...]:
    """``fetches`` with every ``{usdtN}`` placeholder made this site's location and type."""
    site = target.usdt
    if site is None:
        return fetches
    out = []
    for f in fetches:
        if "{usdt" not in f.expr and "{usdt" not in f.type:
            out.append(f)
            continue
        expr, typ = f.expr, f.type
        for m in _SLOT.finditer(f.expr + f.type):
            n = int(m.group(1))
            if n >= len(site.args):
                raise KprobesError(
                    f"{target.name} has {len(site.args)} argument{'s' if len(site.args) != 1 else ''}"
                    f": arg{n} does not exist",
                    hint=f"its arguments: {site.args_text or '(none)'}")
            arg = site.args[n]
            where = f"arg{n} of {target.name}"
            slot = m.group(0)
            if typ == slot:
                typ = arg.fetch_type
            if slot in expr:
                if expr != slot and arg.kind == "const":
                    raise KprobesError(f"{where} is the constant {arg.offset}: it cannot be "
                                       "dereferenced")
                expr = expr.replace(slot, arg_location(arg, where))
        out.append(Fetch(f.name, expr, typ))
    return tuple(out)


def held_semaphores(targets: Iterable["Target"], pid: int) -> "contextlib.ExitStack":
    """Semaphores of the USDT ``targets`` counted up by hand for process ``pid`` when the
    kernel cannot count them (:func:`kprobes.backends.symbols.usdt.manual_semaphores`);
    closing the returned stack counts them down.  Nothing to do on Linux 4.20+."""
    from ..backends.symbols.usdt import manual_semaphores

    return manual_semaphores([t.usdt for t in targets if t.usdt is not None], pid)
