"""``kprobes -e 'PROGRAM'`` / ``kprobes FILE.bt`` / ``kprobes -l``: bpftrace's command line.

Options are named as bpftrace names them (``-e -l -v -p -c -o -f``);
``--dry-run``, ``--unsafe``, ``--duration`` and ``--wildcard-filter`` are
kprobes' own.  ``Attaching N probes...`` and the program's output go to
stdout (or ``-o FILE``) as bpftrace writes them; progress and kprobes'
notes go to stderr.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
from typing import TYPE_CHECKING, List, Optional, TextIO, cast

from ..errors import KprobesError
from ..lang.diagnostics import LangError
from .main import ArgParser, Streams, UsageError

if TYPE_CHECKING:
    from ..backends.kernel import Kernel
    from ..btf import BTF

USAGE = """\
usage: kprobes [OPTIONS] -e 'PROGRAM'
       kprobes [OPTIONS] FILE.bt
       kprobes -l [GLOB]     (-lv: with arguments)
"""
DESCRIPTION = """\
Run a bpftrace program: compiled to eBPF in Python (--engine bpf), or on
kernel dynamic events, kernel event filters and Python (--engine tracefs);
--engine auto (default) picks bpf where the kernel allows it.

examples:
  kprobes -e 'kprobe:do_sys_openat2 { printf("%s: %s\\n", comm, str(arg1)); }'
  kprobes -e 'kretprobe:vfs_read { @bytes = hist(retval); }' -c 'cat /etc/passwd'
  kprobes --dry-run -e 'kprobe:vfs_* { @[probe] = count(); }'
  kprobes -l 'kprobe:tcp_*'      kprobes -lv tracepoint:syscalls:sys_enter_openat
"""


def build_parser() -> ArgParser:
    p = ArgParser(prog="kprobes", usage=USAGE, description=DESCRIPTION,
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", nargs="?", metavar="FILE|GLOB",
                   help="program file (.bt); with -l, what to list")
    p.add_argument("-e", dest="program", metavar="PROGRAM", help="program text")
    p.add_argument("-l", dest="list", action="store_true", help="list probes (optionally matching GLOB)")
    p.add_argument("-v", dest="verbose", action="store_true", help="with -l: show arguments/fields")
    p.add_argument("-p", dest="pid", type=int, metavar="PID",
                   help="only events of this process and its children (tracefs set_event_pid)")
    p.add_argument("-c", dest="command", metavar="CMD",
                   help="run CMD once probes are armed; exit when it exits")
    p.add_argument("-o", dest="output", metavar="FILE", help="write the program's output to FILE")
    p.add_argument("-f", dest="format", choices=("text", "json"), default="text",
                   help="output format (default text)")
    p.add_argument("--dry-run", action="store_true",
                   help="print kernel definitions, filters and what runs in Python; arm nothing")
    p.add_argument("--unsafe", action="store_true",
                   help="allow more than the probe budget (default 1000 kernel probes)")
    p.add_argument("--duration", type=float, metavar="SECS",
                   help="(kprobes) stop after SECS seconds, as if exit() was called")
    p.add_argument("--wildcard-filter", metavar="GLOB",
                   help="(kprobes) keep only functions also matching GLOB in kprobe wildcards")
    p.add_argument("--buffer-size", type=int, default=4096, metavar="KB",
                   help="(kprobes) per-CPU trace buffer (default 4096)")
    p.add_argument("--engine", choices=("auto", "bpf", "tracefs"), default="auto",
                   help="(kprobes) eBPF programs compiled in Python, or tracefs events + Python; "
                        "auto (default): bpf where the kernel allows it and the program compiles")
    p.add_argument("--folded", action="store_true",
                   help="(kprobes) print stack-keyed maps at exit as folded stacks "
                        "(root;...;leaf COUNT, bare function names) for flame graphs")
    p.add_argument("--folded-offsets", action="store_true",
                   help="(kprobes) --folded with func+offset frames")
    return p


def run(args: List[str], streams: Streams) -> int:
    """Entry point from :func:`kprobes.cli.main.main`."""
    parser = build_parser()
    if "-h" in args or "--help" in args:
        streams.out.write(parser.format_help())
        return 0
    ns = parser.parse_args(args)
    if ns.list:
        return list_probes(ns.file or ns.program, ns.verbose, streams)
    from . import validate

    validate.check_duration(ns.duration)
    validate.check_buffer_size(ns.buffer_size)
    if ns.program is not None and ns.file is not None:
        raise UsageError("give either -e PROGRAM or a program file, not both")
    if ns.program is not None:
        text, filename = ns.program, "stdin"
    elif ns.file is not None:
        try:
            with open(ns.file, "rb") as src:
                data = src.read()
        except OSError as e:
            raise KprobesError(f"cannot read {ns.file}: {e.strerror}",
                               hint="give the path of a bpftrace program file (.bt)") from None  # fmt: skip
        text = validate.decode_program(data, ns.file)
        filename = ns.file
    else:
        raise UsageError("no program given", hint="kprobes -e 'PROGRAM' or kprobes FILE.bt")
    from ..engines.base import PlanOptions, prepare

    try:
        sel = prepare(text, filename, engine=ns.engine,
                      opts=PlanOptions(unsafe=ns.unsafe, wildcard_filter=ns.wildcard_filter,
                                       pid=ns.pid or 0))
    except LangError as e:
        streams.err.write(e.message + "\n")
        return e.exit_code
    for w in sel.plan.checked.warnings:
        from ..lang.diagnostics import render_diagnostic
        from ..lang.source import Source

        streams.err.write(render_diagnostic(w, Source(text, filename)) + "\n")
    if ns.dry_run:
        streams.out.write(sel.describe())
        return 0
    if sel.fallback_line:
        streams.err.write(sel.fallback_line + "\n")
    validate.check_pid(ns.pid)
    validate.check_shell_command(ns.command)
    validate.check_output_path(ns.output)
    from ..engines.lifecycle import RunOptions

    fmt = ns.format
    if ns.folded or ns.folded_offsets:
        from ..export.folded import check_folded

        fmt = check_folded(sel.plan.checked, ns.format, ns.folded_offsets)
    opts = RunOptions(command=ns.command, pid=ns.pid, duration=ns.duration, fmt=fmt,
                      buffer_size_kb=ns.buffer_size)
    out: TextIO = streams.out
    fh: Optional[_OutputFile] = None
    if ns.output:
        try:
            fh = _OutputFile(open(ns.output, "w", encoding="utf-8"), ns.output)
        except OSError as e:
            raise KprobesError(f"-o {ns.output}: {e.strerror}",
                               hint="give a file in a directory you can write to") from None  # fmt: skip
        out = cast(TextIO, fh)
    try:
        return sel.run(opts, out, streams.err)
    finally:
        if fh is not None:
            fh.close()


class _OutputFile:
    """The ``-o FILE`` stream: a failed write is an error about FILE, not a traceback."""

    def __init__(self, fh: TextIO, path: str) -> None:
        self._fh = fh
        self.path = path

    def _failed(self, e: OSError) -> KprobesError:
        return KprobesError(f"-o {self.path}: cannot write: {e.strerror or e}",
                            hint="write the output to a regular file on a file system with space")  # fmt: skip

    def write(self, text: str) -> int:
        try:
            return self._fh.write(text)
        except OSError as e:
            raise self._failed(e) from None

    def flush(self) -> None:
        try:
            self._fh.flush()
        except OSError as e:
            raise self._failed(e) from None

    def close(self) -> None:
        try:
            self._fh.close()
        except OSError as e:
            raise self._failed(e) from None


# -- listing -------------------------------------------------------------------
def _split_glob(glob: Optional[str]) -> tuple[str, str]:
    """(provider glob, rest) of a listing pattern; no provider: any."""
    if not glob:
        return "*", "*"
    if ":" not in glob:
        return "*", glob
    head, _, rest = glob.partition(":")
    aliases = {"k": "kprobe", "kr": "kretprobe", "t": "tracepoint", "u": "uprobe"}
    return aliases.get(head, head), rest


def list_probes(glob: Optional[str], verbose: bool, streams: Streams) -> int:
    """``-l [GLOB]``: probeable kernel functions and tracepoints (``-v``: their arguments)."""
    from ..backends.kernel import running_kernel

    provider, rest = _split_glob(glob)
    out = streams.out
    kernel = running_kernel()
    root = kernel.tracefs_root
    if provider in ("usdt", "U"):
        from ..backends.symbols.usdt import usdt_listing

        path, _, pattern = rest.partition(":")
        out.write("".join(line + "\n" for line in usdt_listing(path, pattern or "*")))
        return 0
    if provider.startswith("u"):
        return _list_uprobes(provider, rest, out)
    if fnmatch.fnmatchcase("kprobe", provider) or fnmatch.fnmatchcase("kretprobe", provider):
        _list_kprobes(provider, rest, verbose, out, kernel)
    if fnmatch.fnmatchcase("tracepoint", provider) and root is not None:
        _list_tracepoints(rest, verbose, out, root)
    return 0


def _list_kprobes(provider: str, pattern: str, verbose: bool, out: TextIO, kernel: "Kernel") -> None:
    from ..backends.symbols import expand_glob

    syms = kernel.symbols
    names = expand_glob(pattern, syms.kallsyms, syms.filter_functions, syms.blacklist)
    btf = kernel.btf if verbose else None
    kinds = [k for k in ("kprobe", "kretprobe") if fnmatch.fnmatchcase(k, provider)][:1]
    for kind in kinds:
        for n in names:
            out.write(f"{kind}:{n}\n")
            if btf is not None:
                out.write(_btf_params(btf, n))


def _btf_params(btf: "BTF", func: str) -> str:
    from ..btf.render import type_name

    try:
        sig = btf.func_proto(func)
    except KprobesError:
        return ""
    lines = [f"    {type_name(btf, p.type, p.name or '')}" for p in sig.params]
    lines.append(f"    {type_name(btf, sig.return_type, 'retval')}")
    return "\n".join(lines) + "\n"


def _list_tracepoints(pattern: str, verbose: bool, out: TextIO, root: str) -> None:
    sys_glob, _, ev_glob = pattern.partition(":")
    ev_glob = ev_glob or ("*" if sys_glob != "*" or not pattern else "*")
    events = os.path.join(root, "events")
    try:
        systems = sorted(os.listdir(events))
    except OSError:
        return
    from ..engines.provider import KernelTypeProvider

    prov = KernelTypeProvider(None, root)
    for sys_ in systems:
        sdir = os.path.join(events, sys_)
        if not os.path.isdir(sdir):
            continue
        for ev in sorted(os.listdir(sdir)):
            if not os.path.isdir(os.path.join(sdir, ev)):
                continue
            if ":" in pattern:
                ok = fnmatch.fnmatchcase(sys_, sys_glob) and fnmatch.fnmatchcase(ev, ev_glob)
            else:
                ok = fnmatch.fnmatchcase(ev, pattern) or fnmatch.fnmatchcase(f"{sys_}:{ev}", pattern)
            if not ok:
                continue
            out.write(f"tracepoint:{sys_}:{ev}\n")
            if verbose:
                from ..events.format import EventFormat

                fmt = prov.event_format(sys_, ev)
                if isinstance(fmt, EventFormat):
                    for f in fmt.own_fields:
                        arr = f"[{f.array_len}]" if f.array_len else ""
                        out.write(f"    {f.type} {f.name}{arr}\n")


def _list_uprobes(provider: str, rest: str, out: TextIO) -> int:
    path, _, pattern = rest.partition(":")
    if not path:
        raise UsageError("uprobe listing needs a binary: -l 'uprobe:/bin/bash:*'")
    from ..backends.symbols import resolve_library, symbols_matching

    real = path if "/" in path else resolve_library(path)
    for n in symbols_matching(real, [pattern or "*"]):
        out.write(f"uprobe:{path}:{n}\n")
    return 0


def looks_like_bpftrace(args: List[str]) -> bool:
    """Whether ``kprobes ARGS`` is bpftrace-style use (not a subcommand)."""
    if not args:
        return False
    first = args[0]
    return first.startswith("-") or first.endswith(".bt") or os.path.isfile(first)
