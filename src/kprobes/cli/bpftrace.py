"""``kprobes -e 'PROGRAM'`` / ``kprobes FILE.bt [ARGS]`` / ``kprobes -l``: bpftrace's command line.

kprobes invoked as bpftrace v0.17.0 is invoked behaves as it does: every
option of ``bpftrace --help`` (:mod:`kprobes.cli.btcompat` reads them as its
getopt_long does, and the ``BPFTRACE_*`` environment), positional parameters
after the program (``$1``, ``$#``), ``-`` for a program on standard input,
its error texts for bad options (``ERROR: Invalid output format "jsonx"``),
``-f json`` records, ``-q``, ``-B``, ``-o``, and the
``__BPFTRACE_NOTIFY_PROBES_ATTACHED`` line.  ``--engine``, ``--dry-run``,
``--duration``, ``--wildcard-filter``, ``--buffer-size`` and ``--folded`` are
kprobes' own.  ``Attaching N probes...`` and the program's output go to
stdout (or ``-o FILE``) as bpftrace writes them; kprobes' notes go to stderr.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from typing import TYPE_CHECKING, List, Optional, TextIO, cast

from ..errors import KprobesError
from ..lang.diagnostics import LangError
from .btcompat import (
    HELP,
    BpftraceError,
    Environment,
    Options,
    applied,
    parse_args,
    read_environment,
)
from .main import Streams, UsageError

if TYPE_CHECKING:
    from ..backends.kernel import Kernel
    from ..btf import BTF
    from ..engines.base import Selection

#: Set (to anything) in the environment: one line on stderr once every probe is armed.
NOTIFY_VAR = "__BPFTRACE_NOTIFY_PROBES_ATTACHED"


def run(args: List[str], streams: Streams) -> int:
    """Entry point from :func:`kprobes.cli.main.main`."""
    try:
        return _run(args, streams)
    except BpftraceError as e:
        streams.err.write(e.text)
        if e.usage:
            streams.err.write(HELP)
        return e.exit_code


def _run(args: List[str], streams: Streams) -> int:
    o = parse_args(args)
    if o.help:
        streams.out.write(HELP)
        return 0
    if o.version:
        from .btcompat import version_line

        streams.out.write(version_line())
        return 0
    env = read_environment(os.environ)
    if o.info:
        from .btcompat import info_text

        streams.err.write(info_text())  # bpftrace writes --info on stderr
        return 0
    if o.emit_elf is not None or o.emit_llvm is not None:
        which = "--emit-elf" if o.emit_elf is not None else "--emit-llvm"
        raise BpftraceError(f"ERROR: {which} is not supported: kprobes generates BPF instructions in "
                            "Python, without LLVM or ELF objects; -dd prints them")  # fmt: skip
    if o.listing:
        search = o.operands[0] if o.operands else o.program
        return list_probes(search, o.verbose > 0, streams)
    from . import validate

    validate.check_duration(o.duration)
    if o.buffer_size is not None:
        validate.check_buffer_size(o.buffer_size)
    text, filename = _program_text(o, streams)
    notes = env.ignored_line()
    if o.includes:
        notes += f"kprobes: ignoring --include {' '.join(o.includes)} (kernel types come from BTF)\n"
    if o.helper_check:
        notes += (f"kprobes: ignoring {'-kk' if o.helper_check > 1 else '-k'} (helper errors are not "
                  "reported: a failed read gives 0 or an empty string)\n")  # fmt: skip
    if notes and not o.no_warnings:
        streams.err.write(notes)
    with applied(env):
        return _prepare_and_run(o, env, text, filename, streams)


def _program_text(o: Options, streams: Streams) -> "tuple[str, str]":
    """(text, filename) of the program: -e, a file, or ``-`` (standard input)."""
    from . import validate

    if o.program is not None:
        return o.program, "stdin"
    src = o.source
    if src is None:
        raise BpftraceError("ERROR: no program given: -e 'program', a file, or - for standard input",
                            usage=True)  # fmt: skip
    if src == "-":
        try:
            data = sys.stdin.buffer.read()
        except (OSError, AttributeError, ValueError) as e:  # closed, or not a byte stream
            raise BpftraceError(f"ERROR: failed to read the program from standard input: {e}") from None
        return validate.decode_program(data, "stdin"), "stdin"
    try:
        with open(src, "rb") as fh:
            data = fh.read()
    except OSError as e:
        raise BpftraceError(f"ERROR: failed to open file '{src}': {e.strerror}") from None
    return validate.decode_program(data, src), src


def _prepare_and_run(o: Options, env: Environment, text: str, filename: str, streams: Streams) -> int:
    from ..engines.base import PlanOptions, prepare

    opts = PlanOptions(unsafe=o.unsafe, wildcard_filter=o.wildcard_filter, pid=o.pid or 0)
    if env.max_probes is not None:
        opts.budget = env.max_probes
    try:
        sel = prepare(text, filename, engine=o.engine, opts=opts, params=o.params)
    except LangError as e:
        streams.err.write(e.message + "\n")
        return e.exit_code
    if not o.no_warnings:
        from ..lang.diagnostics import render_diagnostic
        from ..lang.source import Source

        for w in sel.plan.checked.warnings:
            streams.err.write(render_diagnostic(w, Source(text, filename)) + "\n")
    if o.debug or o.dry_run:
        streams.out.write(_debug_text(sel, o.debug) if o.debug else sel.describe())
        return 0
    if sel.fallback_line and not o.quiet:
        streams.err.write(sel.fallback_line + "\n")
    if o.verbose:
        streams.err.write(f"INFO: engine: {sel.name}; {sel.plan.attach_count} probes to attach\n")
    from . import validate

    validate.check_pid(o.pid)
    validate.check_shell_command(o.command)
    validate.check_output_path(o.output)
    from ..engines.lifecycle import RunOptions

    fmt = o.fmt
    if o.folded or o.folded_offsets:
        from ..export.folded import check_folded

        fmt = check_folded(sel.plan.checked, o.fmt, o.folded_offsets)
    ropts = RunOptions(command=o.command, pid=o.pid, duration=o.duration, fmt=fmt)
    if o.buffer_size is not None:
        ropts.buffer_size_kb = o.buffer_size
    elif env.perf_rb_pages is not None:  # pages of 4 KiB per CPU, as bpftrace's perf buffers
        ropts.buffer_size_kb = max(4, env.perf_rb_pages * 4)
    ropts.quiet = o.quiet
    ropts.notify_attached = NOTIFY_VAR in os.environ
    fh: Optional[_OutputFile] = None
    if o.output:
        try:
            fh = _OutputFile(open(o.output, "w", encoding="utf-8"), o.output, streams.out)
        except OSError as e:
            raise BpftraceError(f'ERROR: Failed to open output file: "{o.output}": {e.strerror}') from None
    out: TextIO = cast(TextIO, fh) if fh is not None else streams.out
    if o.buffering != "line" or fh is not None:
        out = cast(TextIO, _Buffering(out, o.buffering))
    try:
        return sel.run(ropts, out, streams.err)
    finally:
        try:
            if isinstance(out, _Buffering):
                out.final_flush()
            else:
                out.flush()
        finally:
            if fh is not None:
                fh.close()


def _debug_text(sel: "Selection", level: int) -> str:
    """``-d``: the program's tree and the plan (for the BPF engine, its instructions);
    ``-dd``: also the types the checker inferred (maps, variables, kernel reads)."""
    from .btcompat import ast_dump, types_dump

    checked = sel.plan.checked
    parts = ["\nAST after: parser\n-------------------\n", ast_dump(checked.program)]
    if level > 1:
        parts += ["\nAST after: checker\n-------------------\n", ast_dump(checked.program, checked),
                  "\nTypes\n-------------------\n", types_dump(checked)]
    parts += ["\nPlan\n-------------------\n", sel.describe()]
    return "".join(parts)


class _Buffering:
    """``-B MODE`` on the program's output: ``line`` flushes at each newline, ``none`` at
    every write, ``full`` only when the program ends."""

    def __init__(self, out: TextIO, mode: str) -> None:
        self.out = out
        self.mode = mode
        #: the -o FILE quirk: bpftrace writes the blank lines before the exit maps to stdout
        self.exit_stream = getattr(out, "exit_stream", None)

    def write(self, text: str) -> int:
        n = self.out.write(text)
        if self.mode == "none" or (self.mode == "line" and "\n" in text):
            self.out.flush()
        return n

    def flush(self) -> None:
        if self.mode != "full":
            self.out.flush()

    def final_flush(self) -> None:
        self.out.flush()


class _OutputFile:
    """The ``-o FILE`` stream: a failed write is an error about FILE, not a traceback."""

    def __init__(self, fh: TextIO, path: str, exit_stream: Optional[TextIO] = None) -> None:
        self._fh = fh
        self.path = path
        #: where bpftrace writes the two newlines before the exit maps (its stdout, not FILE)
        self.exit_stream = exit_stream

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
    aliases = {"k": "kprobe", "kr": "kretprobe", "t": "tracepoint", "u": "uprobe", "f": "kfunc",
               "fr": "kretfunc", "fentry": "kfunc", "fexit": "kretfunc", "rt": "rawtracepoint",
               "s": "software", "h": "hardware"}
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
    _list_bpf_only(provider, rest, verbose, out, kernel)
    return 0


def _list_bpf_only(provider: str, pattern: str, verbose: bool, out: TextIO, kernel: "Kernel") -> None:
    """kfunc/kretfunc (BTF functions ftrace can hook), rawtracepoint (btf_trace_*),
    software/hardware events (bpftrace 0.17's tables)."""
    from ..lang.attach import HARDWARE_EVENTS, SOFTWARE_EVENTS

    for kind, table in (("software", SOFTWARE_EVENTS), ("hardware", HARDWARE_EVENTS)):
        if fnmatch.fnmatchcase(kind, provider):
            for ev in sorted(table):
                if fnmatch.fnmatchcase(ev, pattern.rstrip(":") or "*"):
                    out.write(f"{kind}:{ev}:\n")
    kinds = [k for k in ("kfunc", "kretfunc", "rawtracepoint") if fnmatch.fnmatchcase(k, provider)]
    if not kinds or kernel.btf is None:
        return
    from ..engines.targets import SymbolSource, btf_targets
    from ..lang.ast import AttachPoint
    from ..lang.source import Span

    glob = pattern.split(":", 1)[1] if pattern.startswith("vmlinux:") else pattern
    src = SymbolSource(lambda: kernel.symbols, tracefs_root=kernel.tracefs_root)
    for kind in kinds:
        ap = AttachPoint(kind, f"{kind}:{glob}", Span(1, 1, 1, 1, 0, 0), func=glob if any(
            c in glob for c in "*?[") else glob + "*")
        for t in btf_targets(ap, kernel.btf, src):
            if not fnmatch.fnmatchcase(t.func, glob or "*"):
                continue
            out.write(t.name + "\n")
            if verbose and kind != "rawtracepoint":
                out.write(_btf_params(kernel.btf, t.func))


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
