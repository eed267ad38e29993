"""``kprobes record``: record events into one self-contained file (default ``kprobes.data``)."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import time
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from .._record import replace as replace_fields
from ..backends.process import spawn_gated
from ..errors import KprobesError
from .main import ArgParser, Streams, UsageError, parse

if TYPE_CHECKING:
    from ..backends.tracefs.fs import TraceFS
    from ..events.model import UnparsedLine

_LOST = re.compile(r"lost events: (\d+) on cpu (\d+)")

DESCRIPTION = """\
Record events of persistent probes (kprobes probe --add), tracepoints, or
definitions given inline, into one file that 'kprobes script' and 'kprobes
report' read on this or any other machine.  The file is written as events
arrive (memory use does not grow with the run) and holds the event formats,
the kernel release, the symbols the events mention and what was lost.

Without a COMMAND, records system-wide until Ctrl-C or --duration.  With
'-- COMMAND', records that command (and its children) until it exits; add -a
to record system-wide while it runs.

examples:
  kprobes record -e probe:do_sys_openat2 -a -- sleep 5
  kprobes record -e probe:do_sys_openat2,sched:sched_process_exec --duration 10 -o opens.data
  kprobes record -e 'p:myopen do_sys_openat2 filename=+0(%si):string' -- ls /tmp
"""


def build_parser() -> ArgParser:
    p = ArgParser(prog="kprobes record", description=DESCRIPTION,
                  usage="kprobes record -e EVENTS [options] [-- COMMAND [ARGS...]]",
                  formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("-e", "--event", action="append", required=True, metavar="EVENTS",
                   help="GROUP:EVENT[,GROUP:EVENT...] or an inline definition (p:NAME FUNC ARGS)")  # fmt: skip
    p.add_argument("-o", "--output", default="kprobes.data", metavar="FILE", help="default: kprobes.data")
    p.add_argument("-a", "--all-cpus", action="store_true", help="system-wide (implied without COMMAND)")
    p.add_argument("--duration", type=float, metavar="SECS", help="stop after SECS seconds")
    p.add_argument("-p", "--pid", type=int, metavar="PID", help="only this process (and its children)")
    p.add_argument("--filter", metavar="EXPR", help="kernel event filter for every event")
    p.add_argument("--buffer-size", type=int, default=4096, metavar="KB", help="per-CPU buffer (default 4096)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages on stderr")
    return p


def split_events(values: List[str]) -> List[str]:
    """``-e a:b,c:d`` → [a:b, c:d]; an inline definition (it has spaces) stays whole."""
    out: List[str] = []
    for v in values:
        if " " in v.strip() or v.startswith(("p:", "r:")):
            out.append(v.strip())
        else:
            out.extend(x for x in (s.strip() for s in v.split(",")) if x)
    return out


def _is_definition(e: str) -> bool:
    head = e.split()[0]
    return " " in e.strip() or (head[:1] in "pr" and (len(head) == 1 or head[1] in ":0123456789"))


def _definition_of(fs: TraceFS, group: str, event: str) -> Optional[str]:
    for rel in ("kprobe_events", "uprobe_events"):
        if not fs.exists(rel):
            continue
        for line in fs.iter_lines(rel):
            head = line.split(None, 1)[0]
            if head.partition(":")[2] == f"{group}/{event}":
                return line
    return None


def run(args: List[str], streams: Streams) -> int:
    command: List[str] = []
    if "--" in args:
        cut = args.index("--")
        args, command = args[:cut], args[cut + 1:]
    ns = parse(build_parser(), args, streams)
    if ns is None:
        return 0
    if command and ns.pid:
        raise UsageError("give either -p PID or a COMMAND, not both")
    from . import validate

    validate.check_duration(ns.duration)
    validate.check_buffer_size(ns.buffer_size)
    validate.check_pid(ns.pid)
    validate.check_output_path(ns.output)
    if command:
        from ..backends.process import resolve_command

        resolve_command(command[0])
    events = split_events(ns.event)
    if not events:
        raise UsageError("no events to record", hint="e.g. -e probe:do_sys_openat2")
    from ..backends.recording import (
        RecordingHeader,
        RecordingWriter,
        read_loss_stats,
        release_and_machine,
    )
    from ..backends.tracefs.session import Session

    proc: Optional["subprocess.Popen[bytes]"] = None
    with Session(buffer_size_kb=ns.buffer_size) as s:
        fs = s.fs
        assert fs is not None
        shown: Dict[str, Tuple[str, str]] = {}  # kernel event name -> (display group, event)
        formats: Dict[str, str] = {}
        definitions: Dict[str, str] = {}
        for e in events:
            if _is_definition(e):
                probe = s.add(e, filter=ns.filter)
                group = "uprobes" if probe.kind == "uprobe" else "kprobes"
                definition = probe.definition
            else:
                probe = s.add_tracepoint(e, filter=ns.filter)
                group = probe.group
                definition = _definition_of(fs, probe.group, probe.event)
            name = f"{group}:{probe.event}"
            if probe.event in shown:
                raise KprobesError(f"two events named {probe.event!r}: {name} and {':'.join(shown[probe.event])}",
                                   hint="record them separately, or rename one (NAME=FUNC / p:NAME)")  # fmt: skip
            shown[probe.event] = (group, probe.event)
            formats[name] = fs.read(f"{s.instance}/{probe.rel}/format")
            if definition:
                definitions[name] = definition.replace(f":{probe.group}/", f":{group}/", 1)
        release, machine = release_and_machine()
        header = RecordingHeader(
            kernel_release=release, machine=machine, clock=s.clock, created=time.time(),
            command=tuple(command), events=tuple(f"{g}:{e}" for g, e in shown.values()),
            formats=formats, definitions=definitions,
        )  # fmt: skip
        writer = RecordingWriter(ns.output, header)
        lost: Dict[int, int] = {}
        unparsed = 0
        try:
            until = None
            if ns.pid:
                s.set_pids([ns.pid])
            if command:
                proc, go = spawn_gated(command)
                if not ns.all_cpus:
                    s.set_pids([proc.pid])
                os.write(go, b"go\n")
                os.close(go)
                p = proc
                until = lambda: p.poll() is not None  # noqa: E731
            if not ns.quiet:
                where = "system-wide" if ns.all_cpus or not command else f"pid {proc.pid if proc else ns.pid}"
                streams.err.write(f"kprobes record: recording {', '.join(header.events)} {where} "
                                  f"into {ns.output} (Ctrl-C to stop)\n")  # fmt: skip
                streams.err.flush()
            t0 = time.monotonic()
            try:
                for ev in s.events(ns.duration, until=until):
                    group, name = shown.get(ev.event, (ev.group or "?", ev.event))
                    writer.write_event(replace_fields(ev, group=group, event=name))
                    if s.unparsed:
                        unparsed += _drain(s.unparsed, lost)
            except KeyboardInterrupt:
                pass  # Ctrl-C ends a recording normally, as with perf record
            elapsed = time.monotonic() - t0
            unparsed += _drain(s.unparsed, lost)
            stats = [(int(c[3:]), fs.read(f"{s.instance}/per_cpu/{c}/stats"))
                     for c in fs.listdir(f"{s.instance}/per_cpu") if c.startswith("cpu") and c[3:].isdigit()]  # fmt: skip
            overrun, dropped = read_loss_stats(stats)
            trailer = writer.close(lost=lost, overrun=overrun, dropped=dropped, unparsed=unparsed,
                                   duration=elapsed)
        except BaseException:
            writer.abort()
            raise
        finally:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait()
    if not ns.quiet:
        size = os.path.getsize(ns.output)
        streams.err.write(f"[ kprobes record: wrote {trailer.events} events to {ns.output} "
                          f"({size / 1e6:.3f} MB); lost {trailer.total_lost} ]\n")  # fmt: skip
    return 0


def _drain(unparsed: List[UnparsedLine], lost: Dict[int, int]) -> int:
    """Move the session's unparsed lines into the loss ledger (memory stays bounded)."""
    n = 0
    for u in unparsed:
        m = _LOST.match(u.reason)
        if m:
            cpu = int(m.group(2))
            lost[cpu] = lost.get(cpu, 0) + int(m.group(1))
        else:
            n += 1
    unparsed.clear()
    return n
