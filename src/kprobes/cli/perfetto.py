"""``kprobes perfetto -i kprobes.data -o trace.json|trace.pftrace``: a recording as a timeline."""

from __future__ import annotations

import argparse
import json
from typing import List

from ..errors import KprobesError
from .main import ArgParser, Streams, UsageError, parse

DESCRIPTION = """\
Turn a recording (kprobes record) into a timeline for Perfetto UI
(ui.perfetto.dev), chrome://tracing or speedscope: entry/return pairs become
slices on their thread's track (kprobe+kretprobe or uprobe+uretprobe on one
place, syscalls:sys_enter_X/sys_exit_X, NAME/NAME_return), every other event
an instant with its fields as arguments; tracks carry process and thread names.

  -o FILE.json      Chrome JSON trace format (always available)
  -o FILE.pftrace   Perfetto protobuf (needs: pip install 'kprobes[perfetto]')

examples:
  kprobes record -e 'p:open do_sys_openat2' -e 'r:open_ret do_sys_openat2' -- ls /tmp
  kprobes perfetto -i kprobes.data -o open.json
  kprobes record -e syscalls:sys_enter_read,syscalls:sys_exit_read -- cat /etc/passwd
  kprobes perfetto -i kprobes.data -o read.pftrace
"""


def build_parser() -> ArgParser:
    p = ArgParser(prog="kprobes perfetto", description=DESCRIPTION,
                  usage="kprobes perfetto [-i kprobes.data] -o trace.json|trace.pftrace",
                  formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("-i", "--input", default="kprobes.data", metavar="FILE",
                   help="recording (default kprobes.data)")
    p.add_argument("-o", "--output", default="trace.json", metavar="FILE",
                   help="trace file; .pftrace/.perfetto-trace/.pb: protobuf, else JSON (default trace.json)")
    p.add_argument("--format", choices=("auto", "json", "pftrace"), default="auto",
                   help="output format (default: from the -o suffix)")
    return p


def run(args: List[str], streams: Streams) -> int:
    ns = parse(build_parser(), args, streams)
    if ns is None:
        return 0
    from ..backends.recording import Recording
    from ..export.perfetto import build_timeline, chrome_json, perfetto_trace

    fmt = ns.format
    if fmt == "auto":
        fmt = "pftrace" if ns.output.endswith((".pftrace", ".perfetto-trace", ".pb")) else "json"
    if ns.output == ns.input:
        raise UsageError("-o would overwrite the recording", hint="give another output file")
    try:
        rec = Recording.open(ns.input)
    except OSError as e:
        raise KprobesError(f"cannot read {ns.input}: {e.strerror}",
                           hint="record one first: kprobes record -e GROUP:EVENT -- COMMAND") from None
    h = rec.header
    tl = build_timeline(rec.events(), h.events, h.definitions)
    try:
        if fmt == "pftrace":
            data = perfetto_trace(tl, h.clock)
            with open(ns.output, "wb") as fb:
                fb.write(data)
        else:
            meta = {"source": "kprobes record", "kernel_release": h.kernel_release,
                    "machine": h.machine, "clock": h.clock, "command": " ".join(h.command)}
            with open(ns.output, "w", encoding="utf-8") as ft:
                json.dump(chrome_json(tl, meta), ft, separators=(",", ":"))
    except OSError as e:
        raise KprobesError(f"-o {ns.output}: {e.strerror}",
                           hint="give a file in a directory you can write to") from None
    note = "" if rec.complete else " (the recording has no trailer: the recorder was killed)"
    streams.err.write(
        f"kprobes perfetto: {len(tl.slices)} slices, {len(tl.instants)} instants, "
        f"{len(tl.threads)} threads -> {ns.output}"
        + (f"; {tl.unmatched} entry/return events without their partner" if tl.unmatched else "")
        + note + "\n")
    return 0
