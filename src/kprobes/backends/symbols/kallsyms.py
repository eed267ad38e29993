"""Kernel symbol lists: /proc/kallsyms, available_filter_functions, the kprobe blacklist.

Pure parsers take the text of a file and return frozen objects; the thin
:func:`load_kernel_symbols` reads the files under a ``root`` so that tests can
point it at a fake tree.  Formats (kernel/kallsyms.c, kernel/trace/ftrace.c,
kernel/kprobes.c):

* ``/proc/kallsyms``: ``%px %c %s`` plus ``\\t[%s]`` for module symbols, e.g.
  ``ffffffffc0a01000 t foo\\t[ext4]``.  Without CAP_SYSLOG (or with
  ``kptr_restrict``) every address reads as zero; names are still right.
* ``available_filter_functions``: one function per line, ``name`` or
  ``name [module]``.  Since v6.0 (commit b39181f7c690, "ftrace: Add
  FTRACE_MCOUNT_MAX_OFFSET to avoid adding weak function") entries whose
  address is not a function start appear as ``__ftrace_invalid_address___N``;
  they are dropped here.
* ``available_filter_functions_addrs`` (v6.5+): ``address name [module]``.
* ``<debugfs>/kprobes/blacklist``: ``0xSTART-0xEND\\tname`` (``%ps``, so module
  symbols read ``name [module]``); zero addresses when kallsyms hides them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import NamedTuple

from kprobes.backends.symbols.ksym import KernelSymbolizer, shared_symbolizer
from kprobes.errors import KprobesError

from ..._record import dataclass, field

__all__ = [
    "KSym",
    "Kallsyms",
    "FilterFunctions",
    "BlacklistEntry",
    "Blacklist",
    "KernelSymbols",
    "parse_kallsyms",
    "parse_filter_functions",
    "parse_kprobe_blacklist",
    "load_kernel_symbols",
    "TEXT_TYPES",
    "DATA_TYPES",
    "strip_suffix",
    "KernelSymbolizer",
    "shared_symbolizer",
]

#: kallsyms type letters of code: t/T text, w/W weak (the kernel's weak symbols
#: are functions; weak objects are v/V), i/I indirect functions.
TEXT_TYPES = frozenset("tTwWiI")
#: data: d/D data, b/B bss, r/R read-only data, g/G s/S small data/bss,
#: v/V weak objects, a/A absolute.
DATA_TYPES = frozenset("dDbBrRgGsSvVaA")

_TYPE_WORDS = {
    "d": "initialised data",
    "b": "zero-initialised data (bss)",
    "r": "read-only data",
    "g": "small data",
    "s": "small bss",
    "v": "weak object",
    "a": "absolute value",
}

#: Placeholder ftrace prints for an mcount site that is not a function start.
FTRACE_INVALID_PREFIX = "__ftrace_invalid_address___"


def strip_suffix(name: str) -> str:
    """``foo.isra.0`` -> ``foo``: the name before a compiler-added ``.suffix``.

    The kernel does the same (``strchr(symname, '.')``) when it checks the
    blacklist and notrace status of a renamed copy against its original.
    """
    return name.split(".", 1)[0] if "." in name[1:] else name


def type_word(letter: str) -> str:
    """A few words for a kallsyms type letter (``'D'`` -> ``'initialised data'``)."""
    if letter in TEXT_TYPES:
        return "code"
    return _TYPE_WORDS.get(letter.lower(), f"type {letter!r}")


class KSym(NamedTuple):
    """One /proc/kallsyms line: ``addr`` (0 when hidden), ``type`` letter,
    ``name`` and the module it belongs to (None for vmlinux).

    A NamedTuple rather than a frozen dataclass: kallsyms has 100k+ lines and
    tuples build several times faster; it is just as immutable.
    """

    addr: int
    type: str
    name: str
    module: str | None = None

    @property
    def is_text(self) -> bool:
        return self.type in TEXT_TYPES

    @property
    def is_data(self) -> bool:
        return self.type in DATA_TYPES


@dataclass(frozen=True)
class Kallsyms:
    """Parsed /proc/kallsyms.

    ``addresses_hidden`` is True when every address is zero: the reader lacks
    CAP_SYSLOG or ``kernel.kptr_restrict`` hides them.  Names are still valid;
    address checks (section ranges, blacklist ranges) are then skipped.
    """

    symbols: tuple[KSym, ...]
    addresses_hidden: bool = False
    # Built on first use (the name index costs as much as parsing itself).
    _by_name: dict[str, list[KSym]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _functions: dict[str, frozenset[str]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def _index(self) -> dict[str, list[KSym]]:
        if not self._by_name and self.symbols:
            idx = self._by_name
            for s in self.symbols:
                lst = idx.get(s.name)
                if lst is None:
                    idx[s.name] = [s]
                else:
                    lst.append(s)
        return self._by_name

    def lookup(self, name: str, module: str | None = None) -> tuple[KSym, ...]:
        """Every symbol called ``name`` (static functions may repeat), optionally
        only those of ``module`` (``"vmlinux"`` selects the core kernel)."""
        found = tuple(self._index.get(name, ()))
        if module is None:
            return found
        want = None if module == "vmlinux" else module
        return tuple(s for s in found if s.module == want)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def names(self) -> frozenset[str]:
        return frozenset(self._index)

    def function_names(self, module: str | None = None) -> frozenset[str]:
        """Names with at least one code symbol (in ``module`` when given)."""
        key = module or ""
        if key not in self._functions:
            want = None if module == "vmlinux" else module
            self._functions[key] = frozenset(
                s.name for s in self.symbols if s.is_text and (module is None or s.module == want)
            )
        return self._functions[key]

    @property
    def modules(self) -> frozenset[str]:
        """Names of loaded modules that have symbols (``[bpf]``, ``[__builtin__ftrace]``
        pseudo-modules included)."""
        return frozenset(s.module for s in self.symbols if s.module is not None)

    def section_range(self, start: str, end: str) -> tuple[int, int] | None:
        """``[start, end)`` address range between two vmlinux marker symbols
        (``__kprobes_text_start``/``__kprobes_text_end``), or None when absent
        or addresses are hidden."""
        if self.addresses_hidden:
            return None
        lo = [s.addr for s in self.lookup(start, "vmlinux")]
        hi = [s.addr for s in self.lookup(end, "vmlinux")]
        if not lo or not hi or hi[0] < lo[0]:
            return None
        return lo[0], hi[0]


@dataclass(frozen=True)
class FilterFunctions:
    """The functions ftrace can hook: parsed ``available_filter_functions``.

    ``entries`` keeps ``(name, module)`` pairs (module None for vmlinux);
    ``addrs`` maps names to addresses when read from the ``_addrs`` variant.
    """

    entries: frozenset[tuple[str, str | None]]
    addrs: dict[str, tuple[int, ...]] = field(default_factory=dict, compare=False)
    names: frozenset[str] = field(default=frozenset(), init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", frozenset(n for n, _ in self.entries))

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def has(self, name: str, module: str | None = None) -> bool:
        """``name`` is ftrace-able (in ``module`` when given; "vmlinux" = core)."""
        if module is None:
            return name in self.names
        want = None if module == "vmlinux" else module
        return (name, want) in self.entries


@dataclass(frozen=True)
class BlacklistEntry:
    """One kprobe blacklist line: ``[start, end)`` and the symbol at ``start``."""

    start: int
    end: int
    name: str
    module: str | None = None


@dataclass(frozen=True)
class Blacklist:
    """Parsed ``<debugfs>/kprobes/blacklist``: functions the kernel refuses to kprobe.

    The kernel matches by address range; with hidden addresses (all zero) only
    the names can be matched, which is what :meth:`has_name` does.
    """

    entries: tuple[BlacklistEntry, ...]
    names: frozenset[str] = field(default=frozenset(), init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", frozenset(e.name for e in self.entries))

    @property
    def addresses_hidden(self) -> bool:
        return all(e.start == 0 and e.end == 0 for e in self.entries)

    def has_name(self, name: str) -> bool:
        return name in self.names

    def covers(self, addr: int) -> BlacklistEntry | None:
        """The entry whose range holds ``addr``, or None (always None when hidden)."""
        if addr == 0:
            return None
        for e in self.entries:
            if e.start <= addr < e.end:
                return e
        return None


def _split_module(rest: list[str]) -> str | None:
    if rest and rest[0].startswith("[") and rest[0].endswith("]"):
        return rest[0][1:-1]
    return None


def _bad_line(what: str, lineno: int, line: str) -> KprobesError:
    return KprobesError(
        f"{what} line {lineno}: cannot parse {line!r}", hint="is this the right file?"
    )


def parse_kallsyms(text: str) -> Kallsyms:
    """Parse the text of /proc/kallsyms (or ``nm``-style ``ADDR TYPE NAME [MOD]``)."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        n = len(parts)
        if n == 3 and len(parts[1]) == 1:
            mod = None
        elif n == 4 and len(parts[1]) == 1 and parts[3][:1] == "[" and parts[3][-1:] == "]":
            mod = parts[3][1:-1]
        elif n == 0:
            continue
        else:
            raise _bad_line("kallsyms", lineno, line)
        try:
            addr = int(parts[0], 16)
        except ValueError:
            raise _bad_line("kallsyms", lineno, line) from None
        out.append(KSym(addr, parts[1], parts[2], mod))
    hidden = bool(out) and not any(s.addr for s in out)
    return Kallsyms(tuple(out), hidden)


def parse_filter_functions(text: str) -> FilterFunctions:
    """Parse ``available_filter_functions`` or ``available_filter_functions_addrs``.

    Lines are ``name [module]`` or ``addr name [module]``; the variant is told
    per line by whether the first word is hex and a name follows.
    """
    entries: set[tuple[str, str | None]] = set()
    addrs: dict[str, list[int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        addr: int | None = None
        if len(parts) >= 2 and not parts[1].startswith("["):
            try:
                addr = int(parts[0], 16)
                parts = parts[1:]
            except ValueError:
                addr = None
        name = parts[0]
        if name.startswith(FTRACE_INVALID_PREFIX):
            continue
        entries.add((name, _split_module(parts[1:])))
        if addr is not None:
            addrs.setdefault(name, []).append(addr)
    return FilterFunctions(frozenset(entries), {k: tuple(v) for k, v in addrs.items()})


def parse_kprobe_blacklist(text: str) -> Blacklist:
    """Parse ``<debugfs>/kprobes/blacklist`` (``0xSTART-0xEND\\tname [module]``)."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        lo, dash, hi = parts[0].partition("-")
        if not dash or len(parts) < 2:
            raise _bad_line("kprobes blacklist", lineno, line)
        try:
            start, end = int(lo, 16), int(hi, 16)
        except ValueError:
            raise _bad_line("kprobes blacklist", lineno, line) from None
        out.append(BlacklistEntry(start, end, parts[1], _split_module(parts[2:])))
    return Blacklist(tuple(out))


@dataclass(frozen=True)
class KernelSymbols:
    """Whatever of the three lists could be read, and why the others could not."""

    kallsyms: Kallsyms | None
    filter_functions: FilterFunctions | None
    blacklist: Blacklist | None
    problems: tuple[str, ...] = ()


#: Where tracefs may be mounted, relative to the root (newest first).
TRACEFS_DIRS = ("sys/kernel/tracing", "sys/kernel/debug/tracing")
DEBUGFS_DIR = "sys/kernel/debug"


def _read(path: str, problems: list[str], why_missing: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except FileNotFoundError:
        problems.append(f"{path}: not found ({why_missing})")
    except PermissionError:
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            problems.append(
                f"{path}: permission denied even to root (kernel lockdown, an LSM or a container?)"
            )
        else:
            problems.append(f"{path}: permission denied (run as root)")
    except OSError as exc:
        problems.append(f"{path}: {exc.strerror or exc}")
    return None


def _first_existing(root: str, rels: Iterable[str], leaf: str) -> str:
    cands = [os.path.join(root, r, leaf) for r in rels]
    for c in cands:
        if os.path.exists(c):
            return c
    return cands[0]


def load_kernel_symbols(root: str = "/", *, tracefs: str | None = None) -> KernelSymbols:
    """Read kallsyms, ftrace's function list and the kprobe blacklist under ``root``.

    ``tracefs`` overrides the tracefs directory.  Each file that cannot be read
    leaves its field None and adds a line to ``problems``; nothing raises, so a
    caller can still give a partial verdict.
    """
    problems: list[str] = []
    text = _read(os.path.join(root, "proc/kallsyms"), problems, "no /proc?")
    kallsyms = parse_kallsyms(text) if text is not None else None
    if kallsyms is not None and kallsyms.addresses_hidden:
        problems.append(
            "/proc/kallsyms: addresses are hidden (all zero): need CAP_SYSLOG "
            "and kernel.kptr_restrict < 2; address checks skipped"
        )
    if tracefs is not None:
        addrs_path = os.path.join(tracefs, "available_filter_functions_addrs")
        plain_path = os.path.join(tracefs, "available_filter_functions")
    else:
        addrs_path = _first_existing(root, TRACEFS_DIRS, "available_filter_functions_addrs")
        plain_path = _first_existing(root, TRACEFS_DIRS, "available_filter_functions")
    ftext = None
    if os.path.exists(addrs_path):
        ftext = _read(addrs_path, problems, "kernel older than 6.5")
    if ftext is None:
        ftext = _read(plain_path, problems, "tracefs not mounted or no CONFIG_DYNAMIC_FTRACE")
    filt = parse_filter_functions(ftext) if ftext is not None else None
    btext = _read(
        os.path.join(root, DEBUGFS_DIR, "kprobes/blacklist"),
        problems,
        "debugfs not mounted or no CONFIG_KPROBES",
    )
    black = parse_kprobe_blacklist(btext) if btext is not None else None
    return KernelSymbols(kallsyms, filt, black, tuple(problems))
