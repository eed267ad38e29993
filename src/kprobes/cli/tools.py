"""``kprobes tools [NAME [OPTIONS]]``: ready tools, each a bpftrace program (.bt).

``kprobes tools`` lists them, one line each; ``kprobes tools NAME --help``
shows a tool's options and examples; ``--program`` prints the program the
options make (the tool's ``.bt`` file, rewritten); ``--dry-run`` plans it.
Every tool takes ``-p PID``, ``-c CMD``, ``--duration``, ``-n COMM``,
``-f json`` and ``--engine``; ``-i SECS`` where periodic output makes sense.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from ..lang.diagnostics import LangError
from .main import ArgParser, Streams, UsageError

if TYPE_CHECKING:
    from ..tools import Tool

USAGE = """\
usage: kprobes tools                 list the tools
       kprobes tools NAME [OPTIONS]  run one (kprobes tools NAME --help)
"""


def list_tools(streams: Streams) -> int:
    from ..tools import TOOLS

    width = max(len(n) for n in TOOLS)
    for name, t in TOOLS.items():
        streams.out.write(f"  {name:<{width}}  {t.summary}\n")
    streams.out.write("\nkprobes tools NAME --help: options and examples; "
                      "kprobes tools NAME --program: the program it runs\n")
    return 0


def build_parser(tool: "Tool") -> ArgParser:
    from ..tools import _COMMON_NOTE

    lines = ["examples:"]
    for cmd, what in tool.examples:
        lines.append(f"  {cmd}")
        lines.append(f"      {what}")
    lines.append("")
    lines.extend(list(tool.notes) + [_COMMON_NOTE])
    lines.append(f"The program is {tool.file} in the kprobes.tools package "
                 f"(kprobes tools {tool.name} --program prints what runs).")
    p = ArgParser(prog=f"kprobes tools {tool.name}", description=tool.summary + ".",
                  epilog="\n".join(lines), formatter_class=argparse.RawDescriptionHelpFormatter)
    if tool.positional is not None:
        pos = tool.positional
        if pos.kind == "list":
            p.add_argument(pos.dest, nargs="+", metavar=pos.metavar, help=pos.help)
        else:
            p.add_argument(pos.dest, nargs="?", metavar=pos.metavar, help=pos.help)
    for o in tool.options:
        kw: Dict[str, Any] = {"dest": o.dest, "help": o.help}
        if o.kind == "flag":
            kw["action"] = "store_true"
        elif o.kind == "list":
            kw["action"] = "append"
        else:
            kw["type"] = {"int": int, "float": float}.get(o.kind, str)
            kw["default"] = None
        if o.metavar and o.kind != "flag":
            kw["metavar"] = o.metavar
        if o.choices:
            kw["choices"] = o.choices
        p.add_argument(*o.flags, **kw)
    p.add_argument("-p", dest="pid", type=int, metavar="PID", help="only events of this process")
    p.add_argument("-n", "--comm", dest="comm", metavar="COMM",
                   help="only events of processes called COMM")
    if tool.failed:
        p.add_argument("-x", "--failed", dest="failed", action="store_true",
                       help="only calls that failed")
    if tool.interval:
        p.add_argument("-i", "--interval", dest="interval", type=float, metavar="SECS",
                       help="print (and clear) the table every SECS seconds")
    p.add_argument("-c", dest="command", metavar="CMD",
                   help="run CMD once probes are armed; exit when it exits")
    p.add_argument("--duration", type=float, metavar="SECS", help="stop after SECS seconds")
    p.add_argument("-f", dest="format", choices=("text", "json"), default="text",
                   help="output format (default text)")
    p.add_argument("--engine", choices=("auto", "bpf", "tracefs"), default="auto",
                   help="bpf, tracefs, or auto (default: bpf where the kernel allows it)")
    p.add_argument("--unsafe", action="store_true",
                   help="allow more than the probe budget (default 1000 kernel probes)")
    p.add_argument("--dry-run", action="store_true", help="plan the program; arm nothing")
    p.add_argument("--program", action="store_true", help="print the program and exit")
    return p


def run(args: List[str], streams: Streams) -> int:
    """Entry point from :func:`kprobes.cli.main.main`."""
    if not args:
        return list_tools(streams)
    if args[0] in ("-h", "--help"):
        streams.out.write(USAGE)
        return list_tools(streams)
    if args[0].startswith("-"):
        raise UsageError(f"kprobes tools: unknown option {args[0]!r}", hint="see: kprobes tools --help")
    from ..tools import build, get_tool

    tool = get_tool(args[0])
    parser = build_parser(tool)
    rest = args[1:]
    if "-h" in rest or "--help" in rest:
        streams.out.write(parser.format_help())
        return 0
    ns = parser.parse_args(rest)
    from . import validate

    validate.check_duration(ns.duration)
    options = vars(ns)
    kernel = None
    if tool.name in ("bigalloc", "funclatency", "vfsreadlat", "funccount", "stackcount"):
        from ..backends.kernel import running_kernel

        kernel = running_kernel()  # which name a renamed function has here
    text = build(tool, options, kernel)
    if ns.program:
        streams.out.write(text if text.endswith("\n") else text + "\n")
        return 0
    return run_program(text, tool, ns, streams)


def run_program(text: str, tool: "Tool", ns: argparse.Namespace, streams: Streams) -> int:
    from ..engines.base import PlanOptions, prepare
    from ..lang.diagnostics import render_diagnostic
    from ..lang.source import Source
    from . import validate

    filename = tool.file
    try:
        sel = prepare(text, filename, engine=ns.engine,
                      opts=PlanOptions(unsafe=ns.unsafe, pid=ns.pid or 0))
    except LangError as e:
        streams.err.write(e.message + "\n")
        return e.exit_code
    for w in sel.plan.checked.warnings:
        streams.err.write(render_diagnostic(w, Source(text, filename)) + "\n")
    if ns.dry_run:
        streams.out.write(sel.describe())
        return 0
    if sel.fallback_line:
        streams.err.write(sel.fallback_line + "\n")
    validate.check_pid(ns.pid)
    validate.check_shell_command(ns.command)
    from ..engines.lifecycle import RunOptions

    opts = RunOptions(command=ns.command, pid=ns.pid, duration=ns.duration, fmt=ns.format)
    return sel.run(opts, streams.out, streams.err)


def tool_options(tool: "Tool", argv: List[str]) -> Optional[Dict[str, Any]]:
    """The option values ``argv`` gives ``tool`` (None: --help was asked)."""
    if "-h" in argv or "--help" in argv:
        return None
    return dict(vars(build_parser(tool).parse_args(argv)))
