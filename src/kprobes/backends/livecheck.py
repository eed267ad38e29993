"""What the running kernel checks when a dynamic event is registered.

The offline validator (:mod:`kprobes.probes.validate`) knows the syntax; the
kernel then checks facts only it has.  This module reads those facts from the
running kernel and predicts the kernel's verdict, with its own message and
caret position (verified against 6.1 and 6.12 by
tests/kernel/test_check_agrees_kprobe.py):

* kprobes at all: no ``kprobe_events`` and no kprobe PMU means CONFIG_KPROBES
  is off (uprobes and tracepoints may still work);
* the probed symbol (trace_kprobe.c ``validate_probe_symbol()``, before the
  arguments are parsed): absent -> "Invalid probed address or symbol", several
  kallsyms entries -> "The symbol is not unique" (v6.7, in 6.1 and 6.6 stable);
  ``MOD:SYM`` of a module that is not loaded is accepted (armed on load);
* at registration: an event of the same group/name (same kind: "Probe type is
  different", "Argument type or name is different", "There is already the
  exact same probe event"; another kind: "Given group/event name is already
  used by another event"), ``@SYM`` fetch arguments that do not resolve, and
  functions the kprobe layer refuses (data, blacklisted, notrace) -> "Failed
  to register probe event";
* uprobe files (exist, regular): through the offline validator's
  ``file_check`` hook, see :func:`kprobes.probes.validate.local_file_check`.

Not predicted: kprobe offsets that are not instruction boundaries (the
kernel decodes its own text), and CONFIG_KPROBE_EVENTS_ON_NOTRACE kernels
(assumed off, Debian's and most distributions' default).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

from ..errors import FeatureMissing, KernelRefused, KprobesError, ProbeSyntaxError
from ..probes.kmsg import KERNEL_ERRORS, SILENT_E2BIG, SILENT_EINVAL
from ..probes.spec import Comm, Deref, ImmString, KprobePlace, ProbeSpec, SymbolAddr

if TYPE_CHECKING:
    from .symbols.kallsyms import KernelSymbols

__all__ = [
    "LiveKernel",
    "no_kprobes_error",
    "require_kprobes",
    "place_error",
    "registration_error",
    "live_verdict",
    "explain_refusal",
    "explain_write_refusal",
    "endbr_entry_line",
]

KPROBE_PMU = "/sys/bus/event_source/devices/kprobe"

#: /proc/kallsyms "modules" that are not modules: the kernel's uniqueness count
#: (module_kallsyms_on_each_symbol) never sees them.
_PSEUDO_MODULES = frozenset({"bpf", "__builtin__kprobes", "__builtin__ftrace"})

_TYPE_SUFFIX = re.compile(
    r":((?:[usx](?:8|16|32|64)|char|string|ustring|symbol|symstr|%pd|%pD|b\d+@\d+/\d+)(?:\[\d+\])?)$"
)
_HEAD = re.compile(r"^([pr])(\d*):([^/\s]+)/(\S+)$")


def no_kprobes_error() -> FeatureMissing:
    """The one message for a kernel built without CONFIG_KPROBES."""
    return FeatureMissing(
        "this kernel has no kprobes (CONFIG_KPROBES is not set): no kprobe_events in "
        "tracefs and no kprobe PMU",
        hint="'kprobes doctor' shows what this kernel supports; uprobes "
        "(p:NAME /PATH:SYMBOL) and tracepoints (t:SYS:EVENT) still work",
    )


class LiveKernel:
    """The running kernel's facts, read on first use and kept for this object's life."""

    def __init__(self, tracefs: Optional[str], *, pmu_dir: str = KPROBE_PMU) -> None:
        self.tracefs = tracefs
        self.pmu_dir = pmu_dir
        self._symbols: Optional["KernelSymbols"] = None

    # -- what exists ---------------------------------------------------------------

    def kprobes_supported(self) -> bool:
        """kprobe_events in tracefs or a kprobe PMU (either needs CONFIG_KPROBES)."""
        if self.tracefs and os.path.exists(os.path.join(self.tracefs, "kprobe_events")):
            return True
        return os.path.isdir(self.pmu_dir)

    def symbols(self) -> "KernelSymbols":
        if self._symbols is None:
            from .symbols.kallsyms import load_kernel_symbols

            self._symbols = load_kernel_symbols(tracefs=self.tracefs)
        return self._symbols

    def _read(self, rel: str) -> str:
        if not self.tracefs:
            return ""
        try:
            with open(os.path.join(self.tracefs, rel)) as f:
                return f.read()
        except OSError:
            return ""

    def text_bytes(self, addr: int, size: int, kcore: str = "/proc/kcore") -> Optional[bytes]:
        """``size`` bytes of kernel memory at ``addr`` through /proc/kcore (root), or None."""
        import struct

        try:
            with open(kcore, "rb") as f:
                ehdr = f.read(64)
                if ehdr[:4] != b"\x7fELF" or ehdr[4] != 2:
                    return None
                phoff, = struct.unpack_from("<Q", ehdr, 32)
                phentsize, phnum = struct.unpack_from("<HH", ehdr, 54)
                f.seek(phoff)
                table = f.read(phentsize * phnum)
                for i in range(phnum):
                    p_type, _fl, p_off, p_vaddr, _pa, p_filesz = struct.unpack_from(
                        "<IIQQQQ", table, i * phentsize)
                    if p_type == 1 and p_vaddr <= addr and addr + size <= p_vaddr + p_filesz:
                        f.seek(p_off + addr - p_vaddr)
                        data = f.read(size)
                        return data if len(data) == size else None
        except (OSError, struct.error):
            return None
        return None

    def starts_with_endbr(self, symbol: str) -> bool:
        """The function's first instruction is ENDBR64 (x86 IBT builds).

        The kernel (arch_adjust_kprobe_addr) then treats SYM+4 as the function
        entry: a return probe and $argN are allowed there.
        """
        ks = self.symbols().kallsyms
        if ks is None or ks.addresses_hidden:
            return False
        text = [s for s in ks.lookup(symbol) if s.is_text]
        if len(text) != 1:
            return False
        # ENDBR64, or the 4-byte NOP the kernel writes over it when the CPU has no IBT
        # (gen_endbr_poison(), which is_endbr() accepts too): seen on 6.12 under TCG.
        return self.text_bytes(text[0].addr, 4) in (b"\xf3\x0f\x1e\xfa", b"\x66\x0f\x1f\x00")

    def existing(self, kind: str) -> List[Tuple[bool, str, str, List[str]]]:
        """Events of ``kind`` (kprobe/uprobe): (is_return, group, event, words after the head)."""
        out = []
        for line in self._read(f"{kind}_events").splitlines():
            words = line.split()
            m = _HEAD.match(words[0]) if words else None
            if m:
                out.append((m.group(1) == "r", m.group(3), m.group(4), words[1:]))
        return out

    def event_exists(self, group: str, event: str) -> bool:
        return bool(self.tracefs) and os.path.isdir(
            os.path.join(self.tracefs or "", "events", group, event)
        )


def require_kprobes(kernel: LiveKernel) -> None:
    """Raise the clear no-kprobes error on a kernel without CONFIG_KPROBES."""
    if not kernel.kprobes_supported():
        raise no_kprobes_error()


# -- helpers ---------------------------------------------------------------------------


def _err(key: str, words: Sequence[str], index: int, hint: Optional[str] = None) -> ProbeSyntaxError:
    """The kernel's error ``key`` at argv[index] (trace_probe_log_err(0, ...))."""
    pos = sum(len(w) + 1 for w in words[:index])
    return ProbeSyntaxError(KERNEL_ERRORS[key], " ".join(words), pos, hint=hint)


def _kprobe_symbol(place: str) -> Optional[Tuple[Optional[str], str]]:
    """(module, symbol) of a kprobe place word, None for an address or nothing to check."""
    if place.endswith("%return"):
        place = place[: -len("%return")]
    if "%" in place:
        return None  # a bad suffix: the kernel refuses it before looking the symbol up
    sym = re.split(r"[+-]", place, maxsplit=1)[0]
    if not sym or sym[0].isdigit():
        return None
    mod, sep, name = sym.partition(":")
    return (mod, name) if sep else (None, sym)


def _count(syms: "KernelSymbols", module: Optional[str], name: str) -> Optional[int]:
    """How many symbols the kernel's number_of_same_symbols() would count."""
    ks = syms.kallsyms
    if ks is None:
        return None
    found = ks.lookup(name)
    if module is not None:
        return sum(1 for s in found if s.module == module)
    return sum(1 for s in found if s.module not in _PSEUDO_MODULES)


def _not_found_hint(kernel: LiveKernel, module: Optional[str], name: str) -> str:
    from .symbols.probeable import probeability

    syms = kernel.symbols()
    full = f"{module}:{name}" if module else name
    v = probeability(full, syms.kallsyms, syms.filter_functions, syms.blacklist)
    hint = v.reason
    if v.suggestions:
        hint += "; try: " + ", ".join(v.suggestions)
    return hint


# -- the checks ------------------------------------------------------------------------


def place_error(words: Sequence[str], kind: str, kernel: LiveKernel) -> Optional[ProbeSyntaxError]:
    """The kprobe symbol checks the kernel makes before parsing the arguments."""
    if kind != "kprobe" or len(words) < 2 or words[0][:1] not in "pr":
        return None
    target = _kprobe_symbol(words[1])
    if target is None:
        return None
    module, name = target
    syms = kernel.symbols()
    if module is not None and (syms.kallsyms is None or module not in syms.kallsyms.modules):
        return None  # not loaded: the kernel defers the check to the module's load
    n = _count(syms, module, name)
    if n is None:
        return None
    if n == 0:
        return _err("BAD_PROBE_ADDR", words, 1, hint=_not_found_hint(kernel, module, name))
    if n > 1:
        return _err(
            "NON_UNIQ_SYMBOL", words, 1,
            hint=f"{n} kallsyms entries are called {name!r} (static functions in different "
            "files); probe one by address (p:NAME 0xADDR, see /proc/kallsyms) or as MOD:SYM "
            "when one of them is in a module",
        )  # fmt: skip
    return None


def _arg_key(name: str, body: str) -> Tuple[str, str]:
    m = _TYPE_SUFFIX.search(body)
    if m:
        return name, m.group(1)
    if body.startswith(("$comm", "$COMM", '\\"')):
        return name, "string"
    return name, "x64"


def _spec_keys(spec: ProbeSpec) -> List[Tuple[str, str]]:
    out = []
    for i, a in enumerate(spec.args):
        typ = a.type
        if typ is None:
            typ = "string" if isinstance(a.expr, (Comm, ImmString)) else "x64"
        out.append((a.name or f"arg{i + 1}", typ))
    return out


def _listed_keys(words: Sequence[str]) -> List[Tuple[str, str]]:
    out = []
    for i, w in enumerate(words):
        name, sep, body = w.partition("=")
        out.append(_arg_key(name, body) if sep else _arg_key(f"arg{i + 1}", w))
    return out


def _bodies(words: Sequence[str]) -> List[str]:
    return [w.partition("=")[2] if "=" in w.split(":", 1)[0] else w for w in words]


def _same_place(kind: str, a: str, b: str) -> bool:
    if kind == "uprobe":
        pa, _, oa = a.rpartition(":")
        pb, _, ob = b.rpartition(":")
        try:
            return pa == pb and int(oa.split("(")[0], 0) == int(ob.split("(")[0], 0)
        except ValueError:
            return a == b
    return _strip_return(a) == _strip_return(b)


def _strip_return(place: str) -> str:
    return place[: -len("%return")] if place.endswith("%return") else place


def _symbol_args(spec: ProbeSpec) -> List[str]:
    out = []
    for a in spec.args:
        e = a.expr
        while isinstance(e, Deref):
            e = e.inner
        if isinstance(e, SymbolAddr):
            out.append(e.symbol)
    return out


def registration_error(
    spec: ProbeSpec, words: Sequence[str], kernel: LiveKernel
) -> Optional[ProbeSyntaxError]:
    """What register_trace_{k,u}probe() refuses once the line has parsed."""
    group, event = spec.group_name, spec.event_name
    if event is not None:
        same = [e for e in kernel.existing(spec.kind) if e[1] == group and e[2] == event]
        if same:
            is_ret, _, _, old = same[0]
            if is_ret != spec.is_return:
                return _err("DIFF_PROBE_TYPE", words, 0,
                            hint=f"{group}/{event} exists as a {'return ' if is_ret else ''}probe; "
                            "choose another event name")  # fmt: skip
            new_keys, old_keys = _spec_keys(spec), _listed_keys(old[1:])
            diff = None
            if len(new_keys) != len(old_keys):
                diff = min(len(new_keys), len(old_keys)) + 1
            else:
                diff = next((i + 1 for i, (a, b) in enumerate(zip(new_keys, old_keys)) if a != b), None)
            if diff is not None:
                return _err("DIFF_ARG_TYPE", words, diff + 1,
                            hint=f"{group}/{event} exists with arguments {' '.join(old[1:]) or '(none)'}; "
                            "a second probe of one event needs the same argument names and types")  # fmt: skip
            for _ret, _grp, _ev, other in same:
                if _same_place(spec.kind, other[0], words[1]) and _bodies(other[1:]) == _bodies(words[2:]):
                    return _err("SAME_PROBE", words, 0, hint=f"{group}/{event} is already defined so")
        elif kernel.event_exists(group, event):
            return _err("EVENT_EXIST", words, 0,
                        hint=f"events/{group}/{event} exists (a tracepoint or another kind of "
                        "event); choose another group/event name")  # fmt: skip
    if spec.kind != "kprobe" or not isinstance(spec.place, KprobePlace):
        return None
    syms = kernel.symbols()
    if syms.kallsyms is None:
        return None
    for sym in _symbol_args(spec):
        if sym not in syms.kallsyms:
            return _err("BAD_PROBE_ADDR", words, 1,
                        hint=f"the memory argument @{sym} names no kernel symbol")  # fmt: skip
    place = spec.place
    if place.symbol is None:
        return None
    module = place.module
    if module is not None and module not in syms.kallsyms.modules:
        return None
    from .symbols.probeable import probeability

    full = f"{module}:{place.symbol}" if module else place.symbol
    v = probeability(full, syms.kallsyms, syms.filter_functions, syms.blacklist)
    if not v.ok and v.code in ("data", "blacklisted", "notrace", "init-text", "not-function"):
        hint = v.reason + ("; try: " + ", ".join(v.suggestions) if v.suggestions else "")
        return _err("FAIL_REG_PROBE", words, 1, hint=hint)
    return None


#: Offline verdicts at the place that the kernel only reaches after its symbol check.
_AFTER_SYMBOL = frozenset({KERNEL_ERRORS["BAD_RETPROBE"]})


def live_verdict(
    line: str,
    kind: str,
    spec: Optional[ProbeSpec],
    offline: Optional[ProbeSyntaxError],
    kernel: LiveKernel,
) -> Optional[KprobesError]:
    """The running kernel's verdict on ``line`` (None: it will accept it).

    ``spec`` is the offline parse, or None with ``offline`` its error: the
    kernel checks the probed symbol before the arguments, so a missing symbol
    wins over an argument error.
    """
    if kind == "kprobe":
        require_kprobes(kernel)
    words = line.split()
    early = place_error(words, kind, kernel)
    if offline is not None:
        place_pos = len(words[0]) + 1 if words else 0
        silent = offline.kernel_message in (SILENT_EINVAL, SILENT_E2BIG)
        if early is not None and not silent and (
            offline.position > place_pos
            or (offline.position == place_pos and offline.kernel_message in _AFTER_SYMBOL)
        ):
            return early
        return offline
    if early is not None:
        return early
    if spec is None:
        return None
    return registration_error(spec, words, kernel)


def explain_refusal(definition: str, kind: str, kernel: LiveKernel) -> Optional[KprobesError]:
    """Why the kernel refused ``definition`` without an error_log entry, from live facts.

    None when nothing known explains it.
    """
    if kind == "kprobe" and not kernel.kprobes_supported():
        return no_kprobes_error()
    from ..probes import validate

    try:
        spec = validate(definition, kind)
    except ProbeSyntaxError as e:
        return live_verdict(definition, kind, None, e, kernel)
    except KprobesError:
        return None
    if not isinstance(spec, ProbeSpec):
        return None
    try:
        return live_verdict(definition, kind, spec, None, kernel)
    except KprobesError as e:
        return e


def explain_write_refusal(
    err: KprobesError, definition: str, kind: str, tracefs: Optional[str]
) -> KprobesError:
    """A better error for a refused write of ``definition``, from live facts.

    A refusal without an error_log entry (a bare errno) is replaced by what the
    live facts say caused it; a logged refusal keeps the kernel's message and
    caret and gets the live hint (a renamed function, the duplicates of a
    non-unique symbol).  Anything else, or nothing known: ``err`` unchanged.
    """
    if type(err) is not KprobesError and not isinstance(err, KernelRefused):
        return err
    try:
        better = explain_refusal(definition, kind, LiveKernel(tracefs))
    except (KprobesError, OSError):
        return err
    if better is None:
        return err
    if isinstance(err, KernelRefused):
        if isinstance(better, ProbeSyntaxError) and better.kernel_message == err.kernel_message and better.hint:
            return KernelRefused(err.kernel_message, err.text, err.position, hint=better.hint,
                                 from_kernel=True)  # fmt: skip
        return err
    if isinstance(better, ProbeSyntaxError):
        better.message = (
            f"the kernel refused {definition!r} without an error_log entry; the live check "
            f"says: {better.message}"
        )
    return better


#: Offline verdicts that only hold when SYM+4 is not the function entry.
_NOT_ENTRY = frozenset({KERNEL_ERRORS["BAD_RETPROBE"], KERNEL_ERRORS["NOFENTRY_ARGS"]})


def endbr_entry_line(line: str, offline: ProbeSyntaxError, kernel: LiveKernel) -> Optional[str]:
    """``line`` with ``SYM+4`` written ``SYM`` when the kernel counts +4 as the entry.

    On x86 kernels built with IBT every function starts with ENDBR64 and the
    kernel moves an entry probe past it: ``SYM+4`` *is* the entry, so a return
    probe or ``$argN`` there is accepted.  None when that does not apply.
    """
    if offline.kernel_message not in _NOT_ENTRY:
        return None
    words = line.split()
    if len(words) < 2 or words[0][:1] not in "pr":
        return None
    place = words[1]
    suffix = "%return" if place.endswith("%return") else ""
    base = place[: len(place) - len(suffix)]
    m = re.match(r"^([A-Za-z_][\w.]*)\+(?:4|0x4)$", base)
    if not m or not kernel.kprobes_supported() or not kernel.starts_with_endbr(m.group(1)):
        return None
    return " ".join([words[0], m.group(1) + suffix] + words[2:])
