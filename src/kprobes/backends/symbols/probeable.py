"""Can this kernel function be kprobed, and if not, why and what instead?

The verdict mirrors what the kernel checks when a kprobe event is created
(kernel/kprobes.c ``check_kprobe_address_safe()`` / ``within_kprobe_blacklist()``
and kernel/trace/trace_kprobe.c ``__register_trace_kprobe()``):

1. the symbol must exist in kallsyms, as code;
2. it must not be in the kprobe blacklist: ``NOKPROBE_SYMBOL()`` functions and
   everything in the ``.kprobes.text`` (``__kprobes``), ``.noinstr.text``
   (``noinstr``) and, on x86, ``.entry.text`` sections.  A renamed copy
   ``foo.isra.0`` is refused when ``foo`` is blacklisted: the kernel strips the
   ``.suffix`` and checks the original too;
3. kprobe *events* (tracefs ``kprobe_events`` and perf/BPF kprobes, which go
   through the same trace_kprobe code) refuse functions ftrace cannot hook
   ("Could not probe notrace function") when the kernel has
   CONFIG_DYNAMIC_FTRACE and not CONFIG_KPROBE_EVENTS_ON_NOTRACE — the
   default.  ftrace-hookable means "listed in available_filter_functions"; a
   renamed copy passes when its original is listed.  The in-kernel
   ``register_kprobe()`` API has no such rule; pass ``notrace_ok=True`` for a
   kernel built with CONFIG_KPROBE_EVENTS_ON_NOTRACE=y.

Everything here is pure: it takes the parsed lists from
:mod:`kprobes.backends.symbols.kallsyms`.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Iterable

from kprobes.backends.symbols.kallsyms import (
    FTRACE_INVALID_PREFIX,
    Blacklist,
    FilterFunctions,
    Kallsyms,
    KSym,
    strip_suffix,
    type_word,
)
from kprobes.backends.symbols.renames import describe_rename, known_rename, shape_matches
from kprobes.errors import NotTraceableError

from ..._record import dataclass

__all__ = [
    "Verdict",
    "probeability",
    "expand_glob",
    "split_module",
    "close_names",
    "BLACKLISTED_SECTIONS",
    "WILDCARD_EXCLUDED",
]

#: Marker symbols of the sections whose every function the kernel blacklists
#: (kernel/kprobes.c populate_kprobe_blacklist(); arch_populate_kprobe_blacklist()).
#: Used when the blacklist file is unreadable but kallsyms shows addresses.
BLACKLISTED_SECTIONS = (
    # __kprobes / .kprobes.text: the kprobe handlers themselves.
    ("__kprobes_text_start", "__kprobes_text_end", ".kprobes.text (__kprobes)"),
    # noinstr: code that runs before RCU/context tracking is safe (v5.8+).
    ("__noinstr_text_start", "__noinstr_text_end", ".noinstr.text (noinstr)"),
    # x86 and arm64 add the low-level entry code.
    ("__entry_text_start", "__entry_text_end", ".entry.text (entry code)"),
    # arm64, loongarch and riscv also blacklist the irq-entry section.
    ("__irqentry_text_start", "__irqentry_text_end", ".irqentry.text"),
)

#: Compiler suffixes: IPA scalar-replacement, constant-propagated clone,
#: partially-inlined outline, cold split, LTO-local (``.llvm.N``), ``.lto_priv``.
_RENAMED = re.compile(
    r"^(?P<base>[^.]+)\.(?:isra|constprop|part|cold|llvm|lto_priv|"
    r"localalias)\b"
)
_COLD = re.compile(r"\.cold(?:\.\d+)?$")

#: Symbols that are not functions although kallsyms types them as code:
#: ``__pfx_`` is the padding before a function (-fpatchable-function-entry,
#: CONFIG_CALL_PADDING), ``__cfi_`` the kCFI type-hash preamble.
_NOT_FUNCTIONS = ("__pfx_", "__cfi_", FTRACE_INVALID_PREFIX)

#: Never produced by a wildcard, although the kernel might accept them one by one.
#: Each is (glob, why).  Checked against the name without its ``.suffix``.
WILDCARD_EXCLUDED: tuple[tuple[str, str], ...] = (
    # The kprobe machinery itself.  The handlers that run during a hit are
    # NOKPROBE/__kprobes, but helpers reached from them (get_kprobe,
    # kprobe_running, kprobe_busy_begin...) differ between versions and
    # architectures; a hit there is a recursion the kernel only survives by
    # counting it as "missed".  A user who means one of them can name it.
    ("*kprobe*", "kprobes machinery: recursive hits are dropped as missed"),
    # ftrace's own callbacks run on entry of every hooked function and, with
    # KPROBES_ON_FTRACE, at every kprobe hit; kernel/trace and the arch ftrace
    # code are built without -pg, so they are notrace anyway, but that is only
    # visible when available_filter_functions can be read.
    ("*ftrace*", "ftrace machinery: runs at every kprobe hit"),
    # The event-writing path of a kprobe event: trace_event_buffer_reserve,
    # ring_buffer_lock_reserve, trace_buffer_*, tracing_*.  All of kernel/trace
    # is built without -pg (its Makefile strips CC_FLAGS_FTRACE); excluding by
    # name covers the case where the ftrace list is unreadable.
    # trace_event_raw_event_* (per-subsystem tracepoint bodies) are caught too:
    # they only run when their tracepoint is on and are better traced as
    # tracepoints.
    ("trace_*", "tracing core: writes every event"),
    ("__trace_*", "tracing core: writes every event"),
    ("tracing_*", "tracing core: writes every event"),
    ("ring_buffer_*", "ring buffer: every event goes through it"),
    ("rb_*_event*", "ring buffer internals"),
    ("perf_trace_*", "perf side of tracepoints"),
    # Not excluded, on purpose: rcu_* (kernel/rcu is built with -pg and is
    # safe to probe; its dangerous entry/exit hooks ct_* / rcu_nmi_* are
    # noinstr and therefore already in the blacklist), preempt_count_* and
    # lockdep (likewise noinstr or NOKPROBE where it matters), rb_* in general
    # (lib/rbtree.c: rb_insert_color, rb_erase... are ordinary functions).
)


@dataclass(frozen=True)
class Verdict:
    """Whether a kprobe on a kernel function can be created.

    ``reason`` is one sentence for a person; ``suggestions`` names to try
    instead; ``code`` a stable word for programs: ``ok``, ``unchecked`` (no
    ftrace list to check against), ``notrace``, ``blacklisted``, ``not-found``,
    ``renamed``, ``data``, ``not-function``, ``module-not-loaded``, ``init-text``.
    """

    ok: bool
    reason: str
    suggestions: tuple[str, ...] = ()
    code: str = "ok"

    def raise_for(self, name: str) -> None:
        """Raise :class:`NotTraceableError` when not ``ok``."""
        if not self.ok:
            raise NotTraceableError(
                name, self.reason, suggestions=self.suggestions, hint=_HINTS.get(self.code)
            )


_HINTS = {
    "notrace": "probe a caller or callee listed in available_filter_functions, or use "
    "a kernel built with CONFIG_KPROBE_EVENTS_ON_NOTRACE=y",
    "blacklisted": "probe its caller instead; the kernel will refuse this one",
    "not-found": "check the spelling with: kprobes list 'PATTERN*'",
    "renamed": "probe the new name (see 'kprobes list NEW'); its arguments may differ "
    "from the old function's (a rename, or a compiler copy that dropped or split them)",
    "module-not-loaded": "load the module first (modprobe), then probe it",
}


def split_module(name: str) -> tuple[str | None, str]:
    """``ext4:ext4_sync_fs`` -> (``ext4``, ``ext4_sync_fs``); no colon -> (None, name).

    This is the ``MOD:SYM`` form of kprobe_events.
    """
    if ":" in name:
        mod, _, sym = name.partition(":")
        return (mod or None), sym
    return None, name


def close_names(name: str, candidates: Iterable[str], n: int = 5) -> tuple[str, ...]:
    """Up to ``n`` candidates similar to ``name`` (difflib ratio >= 0.6),
    ignoring padding/CFI pseudo-symbols."""
    pool = sorted({c for c in candidates if not c.startswith(_NOT_FUNCTIONS)})
    return tuple(difflib.get_close_matches(name, pool, n=n, cutoff=0.6))


def _renamed_variants(kallsyms: Kallsyms, base: str, module: str | None) -> list[str]:
    out = []
    for cand in kallsyms.function_names(module):
        if cand.startswith(base + ".") and _RENAMED.match(cand):
            out.append(cand)
    # entry points first: a .cold part is not where the function starts
    return sorted(out, key=lambda c: (bool(_COLD.search(c)), c))


def _protected_ranges(kallsyms: Kallsyms) -> list[tuple[int, int, str]]:
    """Address ranges of :data:`BLACKLISTED_SECTIONS` visible in kallsyms."""
    out = []
    for start, end, what in BLACKLISTED_SECTIONS:
        rng = kallsyms.section_range(start, end)
        if rng is not None and rng[0] < rng[1]:
            out.append((rng[0], rng[1], what))
    return out


def _in_init_text(syms: tuple[KSym, ...], rng: tuple[int, int] | None) -> bool:
    """All of ``syms`` lie in vmlinux's ``rng = [_sinittext, _einittext)``.

    check_kprobe_address_safe() wants core_kernel_text(), which stops covering
    init text at SYSTEM_FREEING_INITMEM.
    """
    if rng is None:
        return False
    return all(s.module is None and rng[0] <= s.addr < rng[1] for s in syms)


def _blacklist_hit(
    name: str,
    syms: tuple[KSym, ...],
    ranges: list[tuple[int, int, str]],
    blacklist: Blacklist | None,
) -> str | None:
    """Why the kernel would refuse ``name`` as blacklisted, or None."""
    base = strip_suffix(name)
    if blacklist is not None:
        if blacklist.has_name(name):
            return "it is in the kprobe blacklist (NOKPROBE_SYMBOL or a protected section)"
        if base != name and blacklist.has_name(base):
            return (
                f"its original {base!r} is in the kprobe blacklist; the kernel "
                "refuses renamed copies of blacklisted functions too"
            )
        for s in syms:
            hit = blacklist.covers(s.addr)
            if hit is not None:
                return f"its address is inside blacklisted {hit.name!r}"
    for lo, hi, what in ranges:
        for s in syms:
            if s.module is None and lo <= s.addr < hi:
                return f"it is in the {what} section, which kprobes never probe"
    return None


def probeability(
    name: str,
    kallsyms: Kallsyms | None,
    filter_functions: FilterFunctions | None = None,
    blacklist: Blacklist | None = None,
    *,
    notrace_ok: bool = False,
) -> Verdict:
    """The verdict for a kprobe on kernel function ``name`` (``SYM`` or ``MOD:SYM``).

    Any of the lists may be None (unreadable): the checks that need it are
    skipped and the reason says so.
    """
    module, sym = split_module(name)
    if not sym:
        return Verdict(False, "empty function name", code="not-found")
    if kallsyms is None:
        return Verdict(True, "not checked: /proc/kallsyms could not be read", code="unchecked")
    if module is not None and module != "vmlinux" and module not in kallsyms.modules:
        return Verdict(
            False,
            f"module {module!r} is not loaded (no symbols of it in kallsyms); a "
            "MOD:SYM kprobe event may still be defined and is armed when the module loads, "
            "but the name cannot be checked now",
            close_names(module, kallsyms.modules),
            code="module-not-loaded",
        )
    if sym.startswith(_NOT_FUNCTIONS):
        real = sym.split("_", 3)[-1] if not sym.startswith(FTRACE_INVALID_PREFIX) else ""
        return Verdict(
            False,
            "is padding or a CFI preamble placed before a function, not a function",
            (real,) if real in kallsyms else (),
            code="not-function",
        )
    syms = kallsyms.lookup(sym, module)
    if not syms:
        functions = kallsyms.function_names(module)
        renamed = known_rename(sym, functions)
        if renamed is not None:
            return Verdict(
                False,
                f"no function {sym} in this kernel; {describe_rename(renamed)}",
                (renamed.new,) + tuple(
                    c for c in shape_matches(sym, functions, n=4) if c != renamed.new
                ),
                code="renamed",
            )
        variants = _renamed_variants(kallsyms, sym, module)
        if variants:
            return Verdict(
                False,
                "not in kallsyms under this name: the compiler kept only "
                "specialised copies (.isra: arguments rewritten, .constprop: "
                "constants folded in, .part: split out, .cold: unlikely path)",
                tuple(variants[:8]),
                code="renamed",
            )
        where = f" in module {module!r}" if module else ""
        shaped = shape_matches(sym, functions)
        if shaped:
            return Verdict(
                False,
                f"no function {sym} in this kernel{where}; it may have been renamed: "
                f"{shaped[0]} has the name with a prefix or suffix",
                shaped,
                code="renamed",
            )
        return Verdict(
            False,
            f"not in kallsyms{where}: no such function in the running "
            "kernel, or it was inlined into its callers / optimised away "
            "(common for static functions), or its module is not loaded",
            close_names(sym, functions),
            code="not-found",
        )
    text = tuple(s for s in syms if s.is_text)
    if not text:
        kind = type_word(syms[0].type)
        return Verdict(
            False,
            f"is a data symbol ({kind}, kallsyms type {syms[0].type!r}), not a function",
            close_names(sym, kallsyms.function_names(module)),
            code="data",
        )
    why = _blacklist_hit(sym, text, _protected_ranges(kallsyms), blacklist)
    if why is not None:
        return Verdict(False, why, code="blacklisted")
    if _in_init_text(text, kallsyms.section_range("_sinittext", "_einittext")):
        return Verdict(
            False,
            "is __init code, freed once the kernel has booted (the "
            "kernel only accepts probes in live text)",
            code="init-text",
        )
    notes = []
    if len(text) > 1:
        notes.append(
            f"{len(text)} functions share this name (static functions in "
            "different files); a probe by name attaches to the first one"
        )
    if _COLD.search(sym):
        notes.append(
            "it is the cold (unlikely) part split out of "
            f"{strip_suffix(sym)!r}, not a function entry: arguments are "
            "meaningless there and a return probe must not be used"
        )
    if blacklist is None:
        notes.append("the kprobe blacklist could not be read (debugfs), so it was not checked")
    note = ("; " + "; ".join(notes)) if notes else ""
    if filter_functions is None:
        return Verdict(
            True,
            "in kallsyms; not checked against available_filter_functions "
            "(unreadable), so a notrace function would only fail at creation" + note,
            code="unchecked",
        )
    base = strip_suffix(sym)
    if filter_functions.has(sym, module) or (base != sym and filter_functions.has(base, module)):
        return Verdict(True, "in kallsyms and ftrace-able" + note, code="ok")
    if notrace_ok:
        return Verdict(
            True,
            "notrace (not in available_filter_functions): allowed because "
            "the kernel has CONFIG_KPROBE_EVENTS_ON_NOTRACE=y; the probe uses an "
            "int3 breakpoint, not an ftrace hook" + note,
            code="notrace",
        )
    return Verdict(
        False,
        "in kallsyms but not in available_filter_functions (notrace or "
        "not ftrace-able): the kernel refuses kprobe events on it ('Could not "
        "probe notrace function') unless built with "
        "CONFIG_KPROBE_EVENTS_ON_NOTRACE=y" + note,
        close_names(sym, filter_functions.names, n=3),
        code="notrace",
    )


_EXCLUDED_RE = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p, _ in WILDCARD_EXCLUDED))


def _wildcard_excluded(name: str) -> bool:
    return _EXCLUDED_RE.match(strip_suffix(name)) is not None


def expand_glob(
    pattern: str,
    kallsyms: Kallsyms | None,
    filter_functions: FilterFunctions | None = None,
    blacklist: Blacklist | None = None,
    *,
    notrace_ok: bool = False,
) -> list[str]:
    """Sorted function names matching the shell glob ``pattern`` that a kprobe may use.

    ``pattern`` may carry a module (``ext4:ext4_*``).  The pool is the ftrace
    list (what the kernel accepts for kprobe events) or, when it is unreadable
    or ``notrace_ok``, the code symbols of kallsyms.  Removed: blacklisted names
    and the blacklisted sections (see :data:`BLACKLISTED_SECTIONS`), padding and
    CFI pseudo-symbols, ``.cold`` parts (not function entries: a return probe
    there would take a jump for a call), and :data:`WILDCARD_EXCLUDED`.
    """
    module, pat = split_module(pattern)
    if filter_functions is not None and not notrace_ok:
        want = None if module == "vmlinux" else module
        pool = {n for n, m in filter_functions.entries if module is None or m == want}
    elif kallsyms is not None:
        pool = set(kallsyms.function_names(module))
    else:
        return []
    ranges = _protected_ranges(kallsyms) if kallsyms is not None else []
    init_rng = kallsyms.section_range("_sinittext", "_einittext") if kallsyms else None
    match = re.compile(fnmatch.translate(pat)).match
    out = []
    for name in pool:
        if not match(name):
            continue
        if name.startswith(_NOT_FUNCTIONS) or _COLD.search(name) or _wildcard_excluded(name):
            continue
        if blacklist is not None and (
            blacklist.has_name(name) or blacklist.has_name(strip_suffix(name))
        ):
            continue
        if kallsyms is not None:
            syms = tuple(s for s in kallsyms.lookup(name, module) if s.is_text)
            if not syms and not notrace_ok and filter_functions is not None:
                continue  # listed by ftrace but gone from kallsyms (module unloading)
            if syms and (
                _blacklist_hit(name, syms, ranges, blacklist) is not None
                or _in_init_text(syms, init_rng)
            ):
                continue
        out.append(name)
    return sorted(out)
