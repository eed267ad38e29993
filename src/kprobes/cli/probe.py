"""``kprobes probe``: persistent probes and source-line listings, like ``perf probe``."""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING, List

from ..errors import KprobesError
from .main import ArgParser, Streams, UsageError, parse

if TYPE_CHECKING:
    from ..backends.dwarf import DebugInfo

DESCRIPTION = """\
Define probes that outlive this command (group 'probe', or 'probe_<binary>' for
uprobes, like perf), list them, delete them, and find probe places in source code.
'kprobes gc' never removes these; 'kprobes record -e probe:NAME' records them.

definitions (perf-probe syntax, or tracefs syntax 'p:NAME FUNC ARGS'):
  [[GROUP:]EVENT=]FUNC[+OFFS|:RLN|%return] [ARG...]
  ARG: [NAME=]FETCHARG[:TYPE] (tracefs fetchargs), a variable or VAR->member /
       VAR.member (DWARF; parameters at entry also through BTF), $params, $vars
  RLN: a line number relative to the function's first line (see -L)

examples:
  kprobes probe --add 'do_sys_openat2 filename=+0(%si):string'
  kprobes probe --add 'do_sys_openat2 filename:string'           (BTF names)
  kprobes probe -L tcp_sendmsg                                    (needs kernel debug info)
  kprobes probe 'tcp_sendmsg:15 size'
  kprobes probe -x ./prog -L work ; kprobes probe -x ./prog --add 'work:5 sum i'
  kprobes probe --list ; kprobes probe --del do_sys_openat2 ; kprobes probe --del 'probe:*'
"""


def build_parser() -> ArgParser:
    p = ArgParser(prog="kprobes probe", description=DESCRIPTION,
                  formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("definition", nargs="*", metavar="DEF", help="same as --add DEF")
    p.add_argument("-a", "--add", action="append", default=[], metavar="DEF", help="define a persistent probe")
    p.add_argument("-d", "--del", dest="delete", action="append", default=[], metavar="NAME",
                   help="delete probes: EVENT, GROUP:EVENT or a glob")  # fmt: skip
    p.add_argument("-l", "--list", nargs="?", const="*", metavar="GLOB", help="list persistent probes")
    p.add_argument("-L", "--line", metavar="FUNC", help="show FUNC's source lines; numbered ones can be probed")
    p.add_argument("-V", "--vars", metavar="FUNC[:RLN]", help="show the variables readable at FUNC:RLN")
    p.add_argument("-x", "--exec", dest="binary", metavar="PATH", help="user binary or library (uprobes)")
    p.add_argument("-k", "--vmlinux", metavar="VMLINUX", help="kernel image with debug info")
    p.add_argument("-m", "--module", metavar="MODULE",
                   help="kernel module (its debug info is located, but not read yet: a clear error)")  # fmt: skip
    p.add_argument("-s", "--source", action="append", default=[], metavar="DIR",
                   help="where to find source files for -L")  # fmt: skip
    p.add_argument("-f", "--force", action="store_true", help="add a duplicate as EVENT_1, EVENT_2...")
    p.add_argument("-g", "--group", metavar="GROUP", help="group for new probes (default: probe / probe_<binary>)")
    p.add_argument("--debug-root", default="/", metavar="DIR",
                   help="look for distribution debug files under DIR (default /)")  # fmt: skip
    p.add_argument("-n", "--dry-run", action="store_true", help="print the tracefs definition, define nothing")
    p.add_argument("--unsafe", action="store_true",
                   help="place uprobes even at offsets not proven to start an instruction")
    p.add_argument("-D", "--definition", dest="show_defs", action="append", default=[], metavar="DEF",
                   help="print the kprobe_events line(s) of DEF, like perf probe -D (kernel: may use -k "
                   "VMLINUX of another kernel build)")  # fmt: skip
    return p


def _open_debuginfo(ns: argparse.Namespace) -> DebugInfo:
    from ..backends.dwarf import DebugInfo, find_debug_vmlinux

    if ns.binary:
        from ..backends.persist import resolve_binary

        return DebugInfo(resolve_binary(ns.binary))
    return DebugInfo(find_debug_vmlinux(ns.vmlinux, root=ns.debug_root), kernel=True)


def _kernel_definitions(ns: argparse.Namespace, text: str, *, offline: bool, show_only: bool = False) -> List[str]:
    """Kernel perf-probe definitions resolved on the debug vmlinux (backends.kdebug)."""
    from ..backends.kdebug import definitions, open_kernel_debug

    with open_kernel_debug(ns.vmlinux, root=ns.debug_root, check_running=not offline,
                           source_dirs=ns.source) as kd:  # fmt: skip
        return definitions(kd, text, group=ns.group or "probe", unique=not show_only)


def _show_kernel_lines(ns: argparse.Namespace, streams: Streams) -> None:
    from ..backends.kdebug import format_line_range, open_kernel_debug
    from ..backends.ksource import banner_version, source_hint

    with open_kernel_debug(ns.vmlinux, root=ns.debug_root, check_running=False) as kd:
        lr = kd.line_range(ns.line)
        src = kd.source(lr.file, lr.comp_dir, ns.source)
        ver = banner_version(kd.banner() or "")
    streams.out.write(format_line_range(lr, src))
    if src is None:
        streams.err.write(f"kprobes: source file {lr.file} not found: the line table (relative line, "
                          f"FILE:LINE, offsets) is shown instead ({source_hint(ver[1] if ver else None)})\n")  # fmt: skip
    elif src.note:
        streams.err.write(f"kprobes: warning: {src.note}\n")


def _show_lines(ns: argparse.Namespace, streams: Streams) -> None:
    from ..backends.dwarf import format_listing

    if not ns.binary:
        _show_kernel_lines(ns, streams)
        return
    with _open_debuginfo(ns) as dbg:
        src = dbg.source(ns.line, source_dirs=ns.source)
    streams.out.write(format_listing(src))
    if not src.source_found:
        streams.err.write(f"kprobes: source file {src.file} not found: only line numbers shown "
                          "(give the source tree with -s DIR)\n")  # fmt: skip


def _show_vars(ns: argparse.Namespace, streams: Streams) -> None:
    from ..backends.dwarf import format_variables

    m = re.match(r"^([A-Za-z_][\w.]*)(?::(\d+)|\+(\d+))?$", ns.vars)
    if m is None:
        raise UsageError(f"-V {ns.vars!r}: expected FUNC, FUNC:RLN or FUNC+OFFS")
    if not ns.binary:
        from ..backends.kdebug import format_variables as kformat
        from ..backends.kdebug import open_kernel_debug, parse_kernel_point

        with open_kernel_debug(ns.vmlinux, root=ns.debug_root, check_running=False) as kd:
            found = kd.variables(parse_kernel_point(ns.vars))
        streams.out.write(kformat(ns.vars, found))
        return
    with _open_debuginfo(ns) as dbg:
        line = int(m.group(2)) if m.group(2) else None
        pt = dbg.point(m.group(1), line, offset=int(m.group(3) or 0), skip_prologue=line is None and not m.group(3))
        variables = dbg.variables(pt)
    streams.out.write(format_variables(pt, variables))


def run(args: List[str], streams: Streams) -> int:
    ns = parse(build_parser(), args, streams)
    if ns is None:
        return 0
    adds = list(ns.add) + list(ns.definition)
    if ns.module and not ns.binary:
        from ..backends.kdebug import module_not_supported

        raise module_not_supported(ns.module, root=ns.debug_root)
    if ns.show_defs:
        from ..backends.kdebug import needs_dwarf

        for d in ns.show_defs:
            if ns.binary or not (needs_dwarf(d) or (ns.vmlinux and not d.startswith(("p:", "r:")))):
                from ..backends.persist import ProbeManager
                from ..backends.tracefs.fs import TraceFS

                mgr0 = ProbeManager(TraceFS("/nonexistent"), group=ns.group, debug_root=ns.debug_root)
                streams.out.write(mgr0.build(d, binary=ns.binary, vmlinux=ns.vmlinux)[0] + "\n")
            else:
                for line in _kernel_definitions(ns, d, offline=True, show_only=True):
                    streams.out.write(line + "\n")
        if not (adds or ns.delete or ns.list or ns.line or ns.vars):
            return 0
    if not ns.binary and adds:
        from ..backends.kdebug import needs_dwarf

        kadds: List[str] = []
        for d in adds:
            kadds += _kernel_definitions(ns, d, offline=ns.dry_run) if needs_dwarf(d) else [d]
        adds = kadds
    if not (adds or ns.delete or ns.list or ns.line or ns.vars):
        raise UsageError("nothing to do", hint="use --add DEF, --del NAME, --list, -L FUNC or -V FUNC:LINE")
    if ns.line:
        _show_lines(ns, streams)
    if ns.vars:
        _show_vars(ns, streams)
    if not (adds or ns.delete or ns.list):
        return 0
    from ..backends.persist import ProbeManager
    from ..backends.tracefs.fs import TraceFS

    if ns.dry_run:
        mgr = ProbeManager(TraceFS("/nonexistent"), group=ns.group, debug_root=ns.debug_root)
        for d in adds:
            definition, _grp = mgr.build(d, binary=ns.binary, vmlinux=ns.vmlinux)
            streams.out.write(definition + "\n")
        return 0
    mgr = ProbeManager(TraceFS.discover(), group=ns.group, debug_root=ns.debug_root)
    status = 0
    for pattern in ns.delete:
        for p in mgr.delete(pattern):
            streams.out.write(f"Removed event: {p.name}\n")
    added = []
    for d in adds:
        try:
            added.append(mgr.add(d, binary=ns.binary, vmlinux=ns.vmlinux, force=ns.force, unsafe=ns.unsafe))
        except KprobesError as e:
            if len(adds) == 1:
                raise
            streams.err.write(f"kprobes: error: {e.format()}\n")
            status = e.exit_code
    if added:
        streams.out.write("Added new event" + ("s" if len(added) > 1 else "") + ":\n")
        for p in added:
            streams.out.write(f"  {p.describe()}\n")
            streams.out.write(f"    {p.definition}\n")
        names = ",".join(p.name for p in added)
        streams.out.write(f"\nYou can now record it with:\n\n\tkprobes record -e {names} -a --duration 5\n\n")
    if ns.list is not None:
        for p in mgr.list(ns.list):
            streams.out.write(f"  {p.describe()}\n")
    return status
