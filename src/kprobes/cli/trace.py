"""``kprobes trace DEF [DEF...]``: arm definitions, print events until Ctrl-C/--duration/-c ends."""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import TYPE_CHECKING, List, Optional

from ..events.model import TraceEvent
from .main import ArgParser, Streams, parse

if TYPE_CHECKING:
    from ..backends.tracefs.ledger import LossLedger

DESCRIPTION = """\
Arm kprobe/kretprobe/uprobe/uretprobe definitions (tracefs syntax, see
Documentation/trace/kprobetrace.rst) or tracepoints (t:SYS:EVENT) in a private
tracefs instance, print their events as they arrive, and remove everything on exit.

examples:
  kprobes trace 'p:myprobe do_sys_openat2 filename=+0(%si):string'
  kprobes trace 'r:myretprobe vfs_read ret=$retval' --duration 5
  kprobes trace 'p:do_sys_openat2 filename:string'          (argument names via BTF)
  kprobes trace 'p:open do_sys_openat2 str(arg2)'           (friendly forms)
  kprobes trace 'p:rl /bin/bash:readline' 'r:rlret /bin/bash:readline ret=+0($retval):ustring'
  kprobes trace -c 'cat /etc/hostname' 'p:o do_sys_openat2 f=+0(%si):string'
  kprobes trace t:sched:sched_process_exec
  kprobes trace --stats --loss-is-error --duration 10 t:syscalls:sys_enter_read

Events are read from the binary per-CPU buffers (--reader raw, the default;
text from trace_pipe when raw reading is not possible, or with --reader text).
Every event that was not delivered is counted (ring-buffer overruns and drops,
kprobe misses, undecodable records) and reported on stderr at exit, and as a
final {"type": "summary"} record with --json, whenever a count is not zero.
"""

#: Exit status when events were lost and --loss-is-error was given.
EXIT_LOSS = 3


def build_parser() -> ArgParser:
    p = ArgParser(prog="kprobes trace", description=DESCRIPTION,
                  formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("definitions", nargs="+", metavar="DEF")
    p.add_argument("--json", action="store_true", help="one JSON object per event (NDJSON)")
    p.add_argument("--duration", type=float, metavar="SECS", help="stop after SECS seconds")
    p.add_argument("-c", dest="command", metavar="COMMAND",
                   help="run COMMAND (sh -c) once probes are armed; stop when it exits")
    p.add_argument("-p", dest="pid", type=int, metavar="PID", help="only events of this process (and its children)")
    p.add_argument("--filter", metavar="EXPR", help="kernel event filter applied to every probe")
    p.add_argument("--buffer-size", type=int, default=4096, metavar="KB", help="per-CPU buffer (default 4096)")
    p.add_argument("--stats", action="store_true",
                   help="per-probe hits, rates and losses at the end (stderr; with --json also a record)")
    p.add_argument("--loss-is-error", action="store_true",
                   help=f"exit with status {EXIT_LOSS} when any event was lost")
    p.add_argument("--reader", choices=("raw", "text"), default="raw",
                   help="binary per-CPU pages (default) or trace_pipe text")
    p.add_argument("--arch", help="target architecture for arg1..argN (default: this machine's)")
    p.add_argument("--unsafe", action="store_true",
                   help="place uprobes even at offsets not proven to start an instruction")
    return p


def format_event(ev: TraceEvent, label: str) -> str:
    """trace_pipe-like text: ``comm-pid [cpu] secs: label: (where) name=value ...``."""
    head = f"{ev.comm:>16}-{ev.pid:<7} [{ev.cpu:03d}] {ev.timestamp_ns / 1e9:.6f}: {label}:"
    parts = [head]
    if ev.location is not None:
        parts.append(f"({ev.location} <- {ev.caller})" if ev.caller else f"({ev.location})")
    for k, v in ev.fields.items():
        if isinstance(v, str):
            parts.append(f"{k}={json.dumps(v, ensure_ascii=False)}" if k != "_text" else v)
        elif isinstance(v, bytes):
            parts.append(f"{k}={v!r}")
        else:
            parts.append(f"{k}={v}")
    return " ".join(parts)


def _spawn_gated(command: str) -> "tuple[subprocess.Popen[bytes], int]":
    """``sh -c COMMAND``, held until the returned fd gets a line (see backends.process)."""
    from ..backends.process import spawn_gated

    return spawn_gated(["sh", "-c", command])


def stats_table(ledger: "LossLedger", elapsed: float) -> str:
    """The --stats table: one line per probe, then the session's losses."""
    rows = [f"{'probe':<24} {'hits':>10} {'rate/s':>10} {'kernel hits':>12} {'missed':>8}"]
    for p in ledger.probes.values():
        rate = p.delivered / elapsed if elapsed > 0 else 0.0
        khits = "-" if p.kernel_hits is None else str(p.kernel_hits)
        miss = "-" if p.misses is None else str(p.misses)
        rows.append(f"{p.label:<24} {p.delivered:>10} {rate:>10.1f} {khits:>12} {miss:>8}")
    rows.append(
        f"reader {ledger.reader}: {elapsed:.2f}s, ring buffer lost {ledger.ring_buffer_lost}, "
        f"undecodable {ledger.undecodable + ledger.unparsed_lines}, total lost {ledger.total_lost}"
    )
    return "\n".join(rows) + "\n"


def run(args: List[str], streams: Streams) -> int:
    ns = parse(build_parser(), args, streams)
    if ns is None:
        return 0
    from . import validate

    validate.check_duration(ns.duration)
    validate.check_buffer_size(ns.buffer_size)
    validate.check_pid(ns.pid)
    validate.check_shell_command(ns.command)
    from ..backends.tracefs.session import Session

    t0 = time.monotonic()
    proc: Optional["subprocess.Popen[bytes]"] = None
    interrupted = 0
    with Session(buffer_size_kb=ns.buffer_size, arch=ns.arch, reader=ns.reader) as s:
        if ns.pid:
            s.set_pids([ns.pid])  # before arming: nothing of other processes gets recorded
        for d in ns.definitions:
            if d.startswith(("t:", "tracepoint:")):
                s.add_tracepoint(d.split(":", 1)[1], filter=ns.filter)
            else:
                s.add(d, filter=ns.filter, unsafe=ns.unsafe)
        until = None
        if ns.command:
            proc, go = _spawn_gated(ns.command)
            os.write(go, b"go\n")
            os.close(go)
            p = proc
            until = lambda: p.poll() is not None  # noqa: E731
        out = streams.out
        try:
            for ev in s.events(ns.duration, until=until):
                label = s.label_of(ev)
                if ns.json:
                    rec = ev.to_json()
                    rec["probe"] = label
                    out.write(json.dumps(rec) + "\n")
                else:
                    out.write(format_event(ev, label) + "\n")
                out.flush()
        except KeyboardInterrupt as e:
            # SIGINT, or SIGTERM/SIGHUP (SessionInterrupted): everything recorded before it
            # was drained and printed; report what was counted, exit 128+signal after cleanup
            interrupted = getattr(e, "exit_code", 130)
        finally:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait()
        elapsed = time.monotonic() - t0
        ledger = s.refresh_ledger()
        if s.reader_fallback:
            streams.err.write(f"kprobes: reading trace_pipe text: {s.reader_fallback}\n")
        unparsed = [u for u in s.unparsed if not u.reason.startswith("lost events")]
        for u in unparsed[:5]:
            streams.err.write(f"kprobes: unparsed trace line ({u.reason}): {u.text}\n")
        if len(unparsed) > 5:
            streams.err.write(f"kprobes: ... {len(unparsed) - 5} more unparsed lines\n")
        if ns.stats:
            streams.err.write(stats_table(ledger, elapsed))
        if ledger.any_loss:
            streams.err.write(ledger.report() + "\n")
        if ns.json and (ledger.any_loss or ns.stats):
            rec = ledger.to_json()
            rec["elapsed_s"] = round(elapsed, 6)
            out.write(json.dumps(rec) + "\n")
            out.flush()
    if interrupted:
        return interrupted
    if ns.loss_is_error and ledger.any_loss:
        streams.err.write(f"kprobes: error: {ledger.total_lost} events lost (--loss-is-error)\n")
        return EXIT_LOSS
    return 0
