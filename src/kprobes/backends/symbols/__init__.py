"""Symbol resolution: kernel functions (kallsyms, ftrace list, kprobe blacklist)
and user-space functions (ELF symbols -> uprobe file offsets).

* :mod:`.kallsyms`  -- parsers for /proc/kallsyms, available_filter_functions[_addrs],
  the kprobe blacklist, a loader that reads them under a root, and the one
  address -> symbol symbolizer (``%pS``, ``ksym()``, kernel stacks).
* :mod:`.probeable` -- the verdict "can this kernel function be kprobed", glob expansion.
* :mod:`.elf`       -- a small ELF reader: symbol -> ``PATH:OFFSET`` for uprobe_events.
* :mod:`.ldcache`   -- ``libc`` -> ``/lib/x86_64-linux-gnu/libc.so.6`` via ld.so.cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from kprobes.backends.symbols.ksym import KernelSymbolizer, shared_symbolizer
    from kprobes.backends.symbols.ldcache import parse_ld_so_cache, resolve_library
    from kprobes.backends.symbols.probeable import Verdict, expand_glob, probeability

# Names are imported on first use: a kprobe-only program reads kallsyms but never
# loads the ELF reader.
_LAZY = {
    **dict.fromkeys(("ELFFile", "Symbol", "UprobeLocation", "parse_symbol_spec", "resolve_uprobe",
                     "symbols_matching"), "elf"),
    **dict.fromkeys(("Blacklist", "FilterFunctions", "Kallsyms", "KernelSymbols", "KSym",
                     "load_kernel_symbols", "parse_filter_functions", "parse_kallsyms",
                     "parse_kprobe_blacklist"), "kallsyms"),
    **dict.fromkeys(("KernelSymbolizer", "shared_symbolizer"), "ksym"),
    **dict.fromkeys(("parse_ld_so_cache", "resolve_library"), "ldcache"),
    **dict.fromkeys(("Verdict", "expand_glob", "probeability"), "probeable"),
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'kprobes.backends.symbols' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value


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
    "KernelSymbolizer",
    "KernelSymbols",
    "KSym",
    "load_kernel_symbols",
    "parse_filter_functions",
    "parse_kallsyms",
    "parse_kprobe_blacklist",
    "shared_symbolizer",
    "parse_ld_so_cache",
    "resolve_library",
    "Verdict",
    "expand_glob",
    "probeability",
]
