"""``kprobes list [-v] [GLOB|NAME|'struct NAME']``: what can be probed, and why not."""

from __future__ import annotations

import fnmatch
import json
import os
from typing import List, Optional

from ..errors import BTFError, KprobesError
from .main import ArgParser, Streams, parse

DESCRIPTION = """\
List probeable kernel functions matching GLOB (kallsyms and available_filter_functions,
minus the kprobes blacklist). An exact NAME that cannot be probed gets the reason:
blacklisted, not in kallsyms (probably inlined), notrace, or renamed by the compiler
(.isra/.constprop/.part), with the close names that do exist.

  kprobes list 'vfs_*'                 functions
  kprobes list do_sys_openat2          is it probeable? why not?
  kprobes list -v do_sys_openat2       its C signature, from BTF
  kprobes list -v 'struct sock'        the struct with member offsets (like pahole)
  kprobes list 'tracepoint:sched:*'    tracepoints
"""


def build_parser() -> ArgParser:
    p = ArgParser(prog="kprobes list", description=DESCRIPTION,
                  formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("pattern", nargs="?", default=None, metavar="GLOB|NAME")
    p.add_argument("-v", "--verbose", action="store_true", help="signatures / struct layouts from BTF")
    p.add_argument("--json", action="store_true")
    return p


def _tracepoints(pattern: str, streams: Streams) -> int:
    from ..backends.tracefs.fs import find_tracefs

    root = find_tracefs(mount=False)
    pat = pattern.split(":", 1)[1] if ":" in pattern else "*"
    n = 0
    events = os.path.join(root, "events")
    for sys_ in sorted(os.listdir(events)):
        d = os.path.join(events, sys_)
        if not os.path.isdir(d):
            continue
        for ev in sorted(os.listdir(d)):
            name = f"{sys_}:{ev}"
            if os.path.isdir(os.path.join(d, ev)) and fnmatch.fnmatchcase(name, pat):
                streams.out.write(f"tracepoint:{name}\n")
                n += 1
    return 0 if n else 1


def _verbose(name: str, streams: Streams) -> int:
    from ..btf import format_func, format_struct, load_vmlinux

    btf = load_vmlinux()
    if name.startswith(("struct ", "union ")) or name.startswith("enum "):
        streams.out.write(format_struct(btf, name) + "\n")
        return 0
    try:
        streams.out.write(format_func(btf, name) + "\n")
        return 0
    except BTFError:
        # Maybe a struct name given bare.
        try:
            streams.out.write(format_struct(btf, f"struct {name}") + "\n")
            return 0
        except BTFError:
            pass
        raise


def _require_kprobes() -> None:
    """Listing kernel functions as probeable is only true on a kernel with kprobes."""
    from ..backends.livecheck import LiveKernel, require_kprobes
    from ..backends.tracefs.fs import find_tracefs

    try:
        root: Optional[str] = find_tracefs(mount=False)
    except KprobesError:
        root = None
    require_kprobes(LiveKernel(root))


def run(args: List[str], streams: Streams) -> int:
    ns = parse(build_parser(), args, streams)
    if ns is None:
        return 0
    pattern = ns.pattern
    if pattern and pattern.startswith(("tracepoint:", "t:")):
        return _tracepoints(pattern, streams)
    if pattern and pattern.startswith(("kprobe:", "k:", "kretprobe:", "kr:")):
        pattern = pattern.split(":", 1)[1]
    if ns.verbose and pattern and not any(c in pattern for c in "*?["):
        return _verbose(pattern, streams)
    _require_kprobes()
    from ..backends.symbols import load_kernel_symbols
    from ..backends.symbols.probeable import expand_glob, probeability

    syms = load_kernel_symbols()
    if syms.kallsyms is None:
        raise KprobesError(
            "cannot read the kernel's symbol list: " + "; ".join(syms.problems),
            hint="run as root",
        )
    if pattern and not any(c in pattern for c in "*?["):
        v = probeability(pattern, syms.kallsyms, syms.filter_functions, syms.blacklist)
        if ns.json:
            streams.out.write(json.dumps({"name": pattern, "ok": v.ok, "code": v.code,
                                          "reason": v.reason, "suggestions": list(v.suggestions)}) + "\n")
            return 0 if v.ok else 1
        if v.ok:
            streams.out.write(f"{pattern}: probeable ({v.reason})\n")
            return 0
        v.raise_for(pattern)
    names = expand_glob(pattern or "*", syms.kallsyms, syms.filter_functions, syms.blacklist)
    if ns.json:
        streams.out.write(json.dumps(names) + "\n")
    else:
        for n in names:
            streams.out.write(n + "\n")
    for p in syms.problems:
        streams.err.write(f"kprobes: note: {p}\n")
    return 0 if names else 1
