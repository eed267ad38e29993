"""What a missing kernel function became: known renames and name-shape matches.

Kernel functions get renamed between releases; a probe written for an older
kernel then names a function that no longer exists.  Two sources of answers:

* :data:`RENAMES`, a table of well-known renames, each with the release that
  made it.  Only entries checked against kernel history are listed; the
  source of each is in the comment next to it.
* :func:`shape_matches`, names in the running kernel that contain the missing
  one as a prefix or suffix (``__alloc_pages`` -> ``__alloc_pages_noprof``),
  for renames the table does not know.

Pure: it takes the set of function names (from kallsyms) and returns names.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import NamedTuple

__all__ = ["Rename", "RENAMES", "known_rename", "shape_matches", "describe_rename"]


class Rename(NamedTuple):
    """``old`` became ``new`` in kernel ``version`` (``why``: the change)."""

    old: str
    new: str
    version: str
    why: str


#: Well-known renames, oldest first.  A chain (``__alloc_pages_nodemask`` ->
#: ``__alloc_pages`` -> ``__alloc_pages_noprof``) is followed by known_rename().
RENAMES: tuple[Rename, ...] = (
    # v5.9, commit "block: rename generic_make_request to submit_bio_noacct".
    Rename("generic_make_request", "submit_bio_noacct", "5.9", "renamed in the block layer"),
    # v5.10, commit "fork: introduce kernel_clone()" (_do_fork renamed).
    Rename("_do_fork", "kernel_clone", "5.10", "fork's core renamed"),
    # v5.6, commit "open: introduce openat2(2) syscall": do_sys_open()
    # became a thin wrapper around do_sys_openat2(), usually inlined into its callers.
    Rename("do_sys_open", "do_sys_openat2", "5.6", "open's core moved (openat2)"),
    # v5.8, x86 IDTENTRY conversion (commit "x86/entry: Switch page fault
    # exception to IDTENTRY_RAW"): do_page_fault() became exc_page_fault() (noinstr:
    # probe handle_mm_fault or do_user_addr_fault instead).
    Rename("do_page_fault", "exc_page_fault", "5.8", "x86 page-fault entry renamed"),
    # v5.13, commit "mm/page_alloc: combine __alloc_pages and
    # __alloc_pages_nodemask".
    Rename("__alloc_pages_nodemask", "__alloc_pages", "5.13", "page allocator entry merged"),
    # v5.17, commit "net: skb: introduce kfree_skb_reason()": kfree_skb()
    # became an inline wrapper.
    Rename("kfree_skb", "kfree_skb_reason", "5.17", "kfree_skb() became an inline wrapper"),
    # v6.10, memory allocation profiling (CONFIG_MEM_ALLOC_PROFILING, commits
    # b951aaff5035 "mm: enable page allocation tagging" and 7bd230a26648 "mm/slab: enable
    # slab allocation tagging for kmalloc and friends"): the allocators got a _noprof
    # suffix and the old names became macros.
    Rename("__alloc_pages", "__alloc_pages_noprof", "6.10", "allocation profiling (_noprof)"),
    Rename("alloc_pages", "alloc_pages_noprof", "6.10", "allocation profiling (_noprof)"),
    Rename("__folio_alloc", "__folio_alloc_noprof", "6.10", "allocation profiling (_noprof)"),
    Rename("__kmalloc", "__kmalloc_noprof", "6.10", "allocation profiling (_noprof)"),
    Rename("__kmalloc_node", "__kmalloc_node_noprof", "6.10", "allocation profiling (_noprof)"),
    Rename("kmem_cache_alloc", "kmem_cache_alloc_noprof", "6.10", "allocation profiling (_noprof)"),
    Rename("kmem_cache_alloc_node", "kmem_cache_alloc_node_noprof", "6.10",
           "allocation profiling (_noprof)"),
    Rename("kmalloc_trace", "kmalloc_trace_noprof", "6.10", "allocation profiling (_noprof)"),
    Rename("__vmalloc_node_range", "__vmalloc_node_range_noprof", "6.10",
           "allocation profiling (_noprof)"),
    Rename("vmalloc", "vmalloc_noprof", "6.10", "allocation profiling (_noprof)"),
    Rename("vzalloc", "vzalloc_noprof", "6.10", "allocation profiling (_noprof)"),
    Rename("kvmalloc_node", "__kvmalloc_node_noprof", "6.10", "allocation profiling (_noprof)"),
    Rename("krealloc", "krealloc_noprof", "6.10", "allocation profiling (_noprof)"),
    # v6.11, slab cleanups before kmem_buckets: kmalloc_trace_noprof() became
    # __kmalloc_cache_noprof().
    Rename("kmalloc_trace_noprof", "__kmalloc_cache_noprof", "6.11", "slab entry renamed"),
    # v6.11, "net: introduce sk_skb_reason_drop function": kfree_skb_reason() became an
    # inline wrapper around it.
    Rename("kfree_skb_reason", "sk_skb_reason_drop", "6.11", "kfree_skb_reason() became a wrapper"),
)
# Checked against the kallsyms of the Debian kernels the tests boot: on 6.1 each old name
# of a rename up to 5.17 is gone and its new name present; on 6.12 likewise for 6.10/6.11.

_BY_OLD = {r.old: r for r in RENAMES}

#: x86_64 syscall entry points since v4.17 ("syscalls/x86: Use
#: 'struct pt_regs' based syscall calling convention for 64-bit syscalls"): ``sys_X``
#: and ``SyS_X`` became ``__x64_sys_X``; arm64 did the same in v4.19 (``__arm64_sys_X``).
_SYSCALL = re.compile(r"^(?:[Ss]y[Ss]_|sys_)(\w+)$")
_SYSCALL_PREFIXES = (("__x64_sys_", "4.17"), ("__arm64_sys_", "4.19"), ("__ia32_sys_", "4.17"))

#: Suffixes the compiler or a refactoring appends to a name; ranked first among
#: shape matches (``_noprof``: 6.10 allocation profiling).
_PREFERRED_SUFFIXES = ("_noprof", ".isra", ".constprop", ".part", "_reason")


def known_rename(name: str, functions: Collection[str]) -> Rename | None:
    """The table's rename of ``name`` whose result exists in ``functions``.

    Chains are followed (``__alloc_pages_nodemask`` -> ``__alloc_pages`` ->
    ``__alloc_pages_noprof``): the answer is the newest name this kernel has,
    with the version of the last step.  None when nothing known applies.
    """
    m = _SYSCALL.match(name)
    if m:
        for prefix, version in _SYSCALL_PREFIXES:
            new = prefix + m.group(1)
            if new in functions:
                return Rename(name, new, version, "syscall entry points take pt_regs")
    seen = {name}
    step = _BY_OLD.get(name)
    found: Rename | None = None
    while step is not None and step.new not in seen:
        seen.add(step.new)
        if step.new in functions:
            found = Rename(name, step.new, step.version, step.why)
        step = _BY_OLD.get(step.new)
    return found


def shape_matches(name: str, functions: Iterable[str], n: int = 5) -> tuple[str, ...]:
    """Up to ``n`` names that extend ``name`` at either end.

    ``NAME_x``, ``NAME.x`` (suffix) and ``x_NAME`` (prefix, e.g. ``__x64_sys_``)
    qualify; names with a preferred suffix (``_noprof``, ``.isra``...) come first,
    then the shortest.  Padding/CFI pseudo-symbols are skipped.
    """
    if len(name) < 3:
        return ()
    out = []
    for cand in functions:
        if cand == name or cand.startswith(("__pfx_", "__cfi_")):
            continue
        if cand.startswith(name) and cand[len(name)] in "_.":
            out.append(cand)
        elif cand.endswith(name) and cand[-len(name) - 1] == "_":
            out.append(cand)

    def rank(c: str) -> tuple[int, int, str]:
        tail = c[len(name):] if c.startswith(name) else ""
        pref = next((i for i, s in enumerate(_PREFERRED_SUFFIXES) if tail.startswith(s)), 99)
        return pref, len(c), c

    return tuple(sorted(out, key=rank)[:n])


def describe_rename(r: Rename) -> str:
    """``it was renamed NEW in 6.10 (why)``."""
    return f"it was renamed {r.new} in {r.version} ({r.why})"
