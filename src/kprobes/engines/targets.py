"""Attach points to concrete kernel places: wildcard expansion and the probe governor.

``kprobe:vfs_*`` becomes one kprobe per probeable function that matches
(:func:`kprobes.backends.symbols.expand_glob`: the ftrace list when readable,
else kallsyms code symbols; minus the kprobe blacklist, the blacklisted
sections and the kernel's own tracing code).  ``uprobe:PATH:glob`` expands over
the ELF's function symbols, ``tracepoint:SYS:glob`` over ``events/SYS/``.

The :class:`Governor` refuses to arm more than ``budget`` kernel probes unless
the user said ``--unsafe``: every kprobe is a breakpoint, and tens of
thousands of them on hot paths slow a machine down to a crawl.
"""

from __future__ import annotations

import fnmatch
import os
from typing import TYPE_CHECKING, Callable, List, Optional

from .._record import dataclass
from ..errors import KprobesError, NotTraceableError
from ..lang import ast

if TYPE_CHECKING:
    from ..backends.symbols.placement import Placement
    from ..backends.symbols.usdt import UsdtProbe

__all__ = ["Target", "SymbolSource", "expand", "explain_refusal", "Governor", "DEFAULT_BUDGET",
           "misplaced_uprobe", "btf_targets"]

#: Kernel probes armed without --unsafe.
DEFAULT_BUDGET = 1000


@dataclass(frozen=True)
class Target:
    """One concrete place: ``place`` as the kernel wants it, ``name`` as ``probe`` shows it.

    * kprobe/kretprobe: ``place`` is ``FUNC``, ``MOD:FUNC`` or ``FUNC+OFFS``;
    * uprobe/uretprobe: ``PATH:SYMBOL`` or ``PATH:0xOFFSET``;
    * tracepoint: ``SYS:EVENT``.
    * usdt: ``PATH:0xOFFSET`` or, with a semaphore, ``PATH:0xOFFSET(0xSEMAPHORE)``.

    ``func`` is what the ``func`` builtin gives.
    """

    provider: str
    place: str
    name: str
    func: str
    #: usdt: the probe site (its arguments and semaphore); None for other providers
    usdt: Optional["UsdtProbe"] = None


class SymbolSource:
    """Lazily loaded kernel symbol lists and tracefs root (tests pass their own).

    ``loader`` returns a :class:`~kprobes.backends.symbols.KernelSymbols`.
    """

    def __init__(
        self,
        loader: Optional[Callable[[], object]] = None,
        tracefs_root: Optional[str] = None,
    ) -> None:
        self._loader = loader
        self._symbols: Optional[object] = None
        self.tracefs_root = tracefs_root

    @property
    def symbols(self) -> object:
        if self._symbols is None:
            if self._loader is None:
                from ..backends.symbols import load_kernel_symbols

                self._symbols = load_kernel_symbols(tracefs=self.tracefs_root)
            else:
                self._symbols = self._loader()
        return self._symbols


def _kprobe_targets(ap: ast.AttachPoint, src: SymbolSource, narrow: Optional[str]) -> List[Target]:
    """Places of a kprobe attach point.  A plain name is not looked up here (reading
    the symbol lists costs seconds on a slow machine): the kernel's refusal is
    explained by :func:`explain_refusal` instead."""
    from ..backends.symbols import KernelSymbols, expand_glob

    if not ap.is_pattern:
        pattern = f"{ap.module}:{ap.func}" if ap.module else ap.func
        place = pattern + (f"+{ap.offset}" if ap.offset else "")
        return [Target(ap.provider, place, ap.name, ap.func)]
    syms = src.symbols
    assert isinstance(syms, KernelSymbols)
    glob = narrow if narrow else ap.func
    pattern = f"{ap.module}:{glob}" if ap.module else glob
    names = expand_glob(pattern, syms.kallsyms, syms.filter_functions, syms.blacklist)
    if narrow:
        names = [n for n in names if fnmatch.fnmatchcase(n, ap.func)]
    prefix = f"{ap.module}:" if ap.module else ""
    return [Target(ap.provider, prefix + n, f"{ap.provider}:{prefix}{n}", n) for n in names]


def explain_refusal(target: Target, src: SymbolSource) -> Optional[NotTraceableError]:
    """Why the kernel refused a kprobe on ``target`` (with close names), or None if unknown."""
    from ..backends.symbols import KernelSymbols, probeability

    syms = src.symbols
    assert isinstance(syms, KernelSymbols)
    name = target.place.split("+", 1)[0]
    verdict = probeability(name, syms.kallsyms, syms.filter_functions, syms.blacklist)
    if verdict.ok:
        return None
    try:
        verdict.raise_for(name)
    except NotTraceableError as e:
        return e
    return None  # pragma: no cover - raise_for always raises when not ok


def _uprobe_targets(ap: ast.AttachPoint) -> List[Target]:
    path = ap.target
    if ap.address is not None:
        where = f"0x{ap.address:x}"
        return [Target(ap.provider, f"{path}:{where}", ap.name, where)]
    if not ap.is_pattern:
        off = f"+{ap.offset}" if ap.offset else ""
        return [Target(ap.provider, f"{path}:{ap.func}{off}", ap.name, ap.func)]
    from ..backends.symbols import resolve_library, symbols_matching

    real = path if "/" in path else resolve_library(path)
    names = symbols_matching(real, [ap.func])
    return [Target(ap.provider, f"{real}:{n}", f"{ap.provider}:{path}:{n}", n) for n in names]


def _usdt_targets(ap: ast.AttachPoint) -> List[Target]:
    """One target per USDT probe site matching ``[PROVIDER:]NAME`` (globs allowed)."""
    from ..backends.symbols.usdt import find_usdt, kernel_ref_ctr, usdt_listing

    sites = find_usdt(ap.target, ap.module, ap.func)
    if not sites:
        known = usdt_listing(ap.target)
        what = f"{ap.module}:{ap.func}" if ap.module else ap.func
        hint = ("probes there: " + ", ".join(k.split(":", 2)[2] for k in known[:8])
                + (" ..." if len(known) > 8 else "")) if known else \
            "it has no USDT notes (.note.stapsdt); it was built without <sys/sdt.h> probes"
        raise NotTraceableError(ap.raw, f"no USDT probe {what} in {ap.target}", hint=hint)
    ref = kernel_ref_ctr()  # the kernel counts semaphores (4.20+); else -p and /proc/PID/mem
    return [Target("usdt", s.place(ref), f"usdt:{ap.target}:{s.provider}:{s.name}", s.name, usdt=s)
            for s in sites]


def misplaced_uprobe(ap: ast.AttachPoint) -> Optional["Placement"]:
    """The refusal of a uprobe attach point whose offset is not an instruction start, or None.

    ``uprobe:PATH:FUNC`` (offset 0) is always fine and reads nothing;
    ``FUNC+OFFS`` and ``PATH:0xOFF`` are decoded (:mod:`kprobes.backends.symbols.placement`).
    """
    if ap.address is None and not ap.offset:
        return None
    from ..backends.symbols import resolve_library, resolve_uprobe
    from ..backends.symbols.placement import check_offset

    path = ap.target if "/" in ap.target else resolve_library(ap.target)
    if ap.address is not None:
        offset = ap.address
    else:
        offset = resolve_uprobe(path, f"{ap.func}+{ap.offset}").offset
    verdict = check_offset(path, offset)
    return None if verdict.ok else verdict


def _tracepoint_targets(ap: ast.AttachPoint, src: SymbolSource) -> List[Target]:
    if not ap.is_pattern:
        return [Target("tracepoint", f"{ap.target}:{ap.func}", ap.name, "")]
    root = src.tracefs_root
    if root is None:
        raise KprobesError("tracepoint wildcards need tracefs", hint="mount tracefs or run as root")
    events = os.path.join(root, "events")
    out: List[Target] = []
    for sys_ in sorted(os.listdir(events)):
        if not fnmatch.fnmatchcase(sys_, ap.target) or not os.path.isdir(os.path.join(events, sys_)):
            continue
        for ev in sorted(os.listdir(os.path.join(events, sys_))):
            if fnmatch.fnmatchcase(ev, ap.func) and os.path.isdir(os.path.join(events, sys_, ev)):
                out.append(Target("tracepoint", f"{sys_}:{ev}", f"tracepoint:{sys_}:{ev}", ""))
    return out


def expand(ap: ast.AttachPoint, src: SymbolSource, narrow: Optional[str] = None) -> List[Target]:
    """The kernel places of one attach point (several for a wildcard, maybe none).

    ``narrow`` (ours, ``--wildcard-filter``) is a second glob kprobe wildcards
    must also match; it is expanded instead of the (maybe huge) original.
    """
    if ap.provider in ("kprobe", "kretprobe"):
        return _kprobe_targets(ap, src, narrow)
    if ap.provider in ("uprobe", "uretprobe"):
        return _uprobe_targets(ap)
    if ap.provider == "usdt":
        return _usdt_targets(ap)
    if ap.provider == "tracepoint":
        return _tracepoint_targets(ap, src)
    return []


#: Parameters an x86-64/arm64 BPF trampoline of Linux 6.1 passes (6.6+ allow more, on
#: the stack); functions with more are left out of kfunc wildcards.
TRAMPOLINE_ARGS = 6


def _fentry_ok(btf: object, tid: int) -> bool:
    """Whether a trampoline can carry function ``tid``: at most TRAMPOLINE_ARGS parameters,
    each an integer, enum or pointer (structs by value are refused by older kernels)."""
    from ..btf import types as T

    assert hasattr(btf, "type") and hasattr(btf, "resolve")
    fn = btf.type(tid)
    proto = btf.type(fn.type) if isinstance(fn, T.Func) else None
    if not isinstance(proto, T.FuncProto) or proto.variadic or len(proto.params) > TRAMPOLINE_ARGS:
        return False
    for p in proto.params:
        t = btf.resolve(p.type)
        if not isinstance(t, (T.Int, T.Ptr, T.Enum)):
            return False
    return True


def btf_targets(ap: ast.AttachPoint, btf: Optional[object], src: SymbolSource,
                narrow: Optional[str] = None) -> List[Target]:
    """Places of a ``kfunc``/``kretfunc`` (functions with BTF and an ftrace entry) or a
    ``rawtracepoint`` (``btf_trace_NAME`` typedefs) attach point."""
    from ..btf import types as T

    if ap.module and ap.module != "vmlinux":
        raise NotTraceableError(ap.raw, f"{ap.provider} probes on module functions are not "
                                "supported yet (only vmlinux BTF is read)",
                                hint=f"drop the module: {ap.provider}:{ap.func}")
    raw = ap.provider == "rawtracepoint"
    if not ap.is_pattern:
        if btf is not None and not raw and not btf.ids_by_name(ap.func, T.KIND_FUNC):  # type: ignore[attr-defined]
            close = btf.suggest(ap.func, T.KIND_FUNC, 3)  # type: ignore[attr-defined]
            return_hint = f"did you mean: {', '.join(close)}?" if close else \
                "kprobes -l 'kfunc:PATTERN' lists them"
            raise NotTraceableError(ap.raw, f"the kernel's BTF has no function '{ap.func}'",
                                    hint=return_hint)
        return [Target(ap.provider, ap.func, ap.name, ap.func)]
    if btf is None:
        raise NotTraceableError(ap.raw, f"{ap.provider} wildcards need the kernel's BTF",
                                hint="/sys/kernel/btf/vmlinux is missing (CONFIG_DEBUG_INFO_BTF)")
    glob = narrow or ap.func
    out: List[Target] = []
    if raw:
        for name in btf.names(T.KIND_TYPEDEF):  # type: ignore[attr-defined]
            tp = name[len("btf_trace_"):]
            if name.startswith("btf_trace_") and fnmatch.fnmatchcase(tp, glob) \
                    and fnmatch.fnmatchcase(tp, ap.func):
                out.append(Target(ap.provider, tp, f"{ap.provider}:{tp}", tp))
        return out
    from ..backends.symbols import KernelSymbols

    syms = src.symbols
    traceable = syms.filter_functions if isinstance(syms, KernelSymbols) else None
    for name in btf.names(T.KIND_FUNC):  # type: ignore[attr-defined]
        if not (fnmatch.fnmatchcase(name, glob) and fnmatch.fnmatchcase(name, ap.func)):
            continue
        if traceable is not None and name not in traceable:
            continue
        ids = btf.ids_by_name(name, T.KIND_FUNC)  # type: ignore[attr-defined]
        if ids and _fentry_ok(btf, ids[0]):
            out.append(Target(ap.provider, name, f"{ap.provider}:vmlinux:{name}", name))
    return out


class Governor:
    """Refuses more than ``budget`` kernel probes unless ``unsafe`` (see module docstring)."""

    def __init__(self, budget: int = DEFAULT_BUDGET, unsafe: bool = False) -> None:
        self.budget = budget
        self.unsafe = unsafe

    def check(self, count: int, biggest: str = "") -> None:
        if count <= self.budget or self.unsafe:
            return
        where = f" ({biggest})" if biggest else ""
        raise KprobesError(
            f"refusing to attach {count} kernel probes{where}: more than {self.budget} "
            "probes can slow the whole machine down (every hit is a breakpoint, and probes "
            "on hot paths fire millions of times a second)",
            hint="narrow the wildcard, or pass --unsafe if you mean it",
        )


def not_found(ap: ast.AttachPoint) -> NotTraceableError:
    """The error for a wildcard that matched nothing."""
    return NotTraceableError(ap.raw, "the wildcard matches no probeable function",
                             hint="list candidates with: kprobes -l 'PATTERN'")
