"""Symbol resolution: kernel functions (kallsyms, ftrace list, kprobe blacklist)
and user-space functions (ELF symbols -> uprobe file offsets).

* :mod:`.kallsyms`  -- parsers for /proc/kallsyms, available_filter_functions[_addrs],
  the kprobe blacklist, and a loader that reads them under a root.
* :mod:`.probeable` -- the verdict "can this kernel function be kprobed", glob expansion.
* :mod:`.elf`       -- a small ELF reader: symbol -> ``PATH:OFFSET`` for uprobe_events.
* :mod:`.ldcache`   -- ``libc`` -> ``/lib/x86_64-linux-gnu/libc.so.6`` via ld.so.cache.
"""

from __future__ import annotations

from kprobes.backends.symbols.elf import (
    ELFFile,
    Symbol,
    UprobeLocation,
    parse_symbol_spec,
    resolve_uprobe,
    symbols_matching,
)
from kprobes.backends.symbols.kallsyms import (
    Blacklist,
    FilterFunctions,
    Kallsyms,
    KernelSymbols,
    KSym,
    load_kernel_symbols,
    parse_filter_functions,
    parse_kallsyms,
    parse_kprobe_blacklist,
)
from kprobes.backends.symbols.ldcache import parse_ld_so_cache, resolve_library
from kprobes.backends.symbols.probeable import Verdict, expand_glob, probeability

__all__ = [
    "ELFFile",
    "Symbol",
    "UprobeLocation",
    "parse_symbol_spec",
    "resolve_uprobe",
    "symbols_matching",
    "Blacklist",
    "FilterFunctions",
    "Kallsyms",
    "KernelSymbols",
    "KSym",
    "load_kernel_symbols",
    "parse_filter_functions",
    "parse_kallsyms",
    "parse_kprobe_blacklist",
    "parse_ld_so_cache",
    "resolve_library",
    "Verdict",
    "expand_glob",
    "probeability",
]
