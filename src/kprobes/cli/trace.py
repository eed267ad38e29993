"""``kprobes trace DEF [DEF...]``: arm definitions, print events until Ctrl-C/--duration/-c ends."""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import List, Optional

from ..events.model import TraceEvent
from .main import ArgParser, Streams, parse

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
"""


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
    p.add_argument("--stats", action="store_true", help="per-probe hit counts and rates at the end")
    p.add_argument("--arch", help="target architecture for arg1..argN (default: this machine's)")
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
    """Start ``sh -c COMMAND`` held until the caller writes a line to the returned fd.

    The shell waits on a pipe before it evaluates COMMAND, so not one event of the
    command happens before the probes are armed (and its pid is known first).
    """
    r, w = os.pipe()
    script = 'read _ <&9; exec 9<&-; eval "$1"'  # fd 9: dash only takes one-digit fds

    def gate_on_fd9() -> None:
        os.dup2(r, 9)

    proc = subprocess.Popen(
        ["sh", "-c", script, "kprobes-c", command], pass_fds=(r, 9), preexec_fn=gate_on_fd9
    )
    os.close(r)
    return proc, w


def run(args: List[str], streams: Streams) -> int:
    ns = parse(build_parser(), args, streams)
    if ns is None:
        return 0
    from ..backends.tracefs.session import Session

    counts: dict[str, int] = {}
    t0 = time.monotonic()
    proc: Optional["subprocess.Popen[bytes]"] = None
    with Session(buffer_size_kb=ns.buffer_size, arch=ns.arch) as s:
        for d in ns.definitions:
            if d.startswith(("t:", "tracepoint:")):
                s.add_tracepoint(d.split(":", 1)[1], filter=ns.filter)
            else:
                s.add(d, filter=ns.filter)
        if ns.pid:
            s.set_pids([ns.pid])
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
                counts[label] = counts.get(label, 0) + 1
                if ns.json:
                    rec = ev.to_json()
                    rec["probe"] = label
                    out.write(json.dumps(rec) + "\n")
                else:
                    out.write(format_event(ev, label) + "\n")
                out.flush()
        finally:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait()
        elapsed = time.monotonic() - t0
        unparsed = len(s.unparsed)
        for u in s.unparsed[:5]:
            streams.err.write(f"kprobes: unparsed trace line ({u.reason}): {u.text}\n")
        if unparsed > 5:
            streams.err.write(f"kprobes: ... {unparsed - 5} more unparsed lines\n")
        if ns.stats:
            streams.err.write(f"{'probe':<24} {'hits':>10} {'rate/s':>10}\n")
            for label in s.probes:
                n = counts.get(label, 0)
                streams.err.write(f"{label:<24} {n:>10} {n / elapsed if elapsed else 0:>10.1f}\n")
    if proc is not None and proc.returncode:
        return 0
    return 0
