"""``kprobes script`` (one line per recorded event, like perf script) and ``kprobes report`` (a summary).

Both read a recording (:mod:`kprobes.backends.recording`) as a stream and use only
what the file holds — the event formats (hex or decimal per field, from each
format's ``print fmt``) and the recording machine's symbol addresses — so the
output is the same on any machine.
"""

from __future__ import annotations

import argparse
import json
import re
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from .._record import dataclass, field
from ..events.model import FieldValue, TraceEvent
from .main import ArgParser, Streams, parse

__all__ = ["field_styles", "format_value", "script_line", "Summary", "summarize", "render_report", "run", "run_report"]

_FMT_FIELD = re.compile(r"([A-Za-z_]\w*)(?:=|: )(\\?\"?)(0x)?%[-+ #0-9.*]*(?:hh|h|ll|l|L|z|j|t)*([a-zA-Z])")
_LOC = re.compile(r"^([\w.$]+)\+(0x[0-9a-fA-F]+)/0x[0-9a-fA-F]+$")


def field_styles(print_fmt: str) -> Dict[str, str]:
    """Per field, how the kernel prints it: ``hex``, ``dec``, ``str`` or ``raw`` (symbols, chars)."""
    fmt = print_fmt
    if fmt.startswith('"'):
        end = fmt.rfind('",')
        fmt = fmt[1:end] if end > 0 else fmt[1:]
    out: Dict[str, str] = {}
    for m in _FMT_FIELD.finditer(fmt):
        name, quote, hexp, conv = m.groups()
        if conv == "s":
            out[name] = "str" if quote else "raw"
        elif hexp or conv in "xX":
            out[name] = "hex"
        elif conv in "duic":
            out[name] = "dec" if conv != "c" else "raw"
        else:
            out[name] = "raw"
    return out


def format_value(v: FieldValue, style: Optional[str]) -> str:
    """One value as the kernel prints it for ``style`` (None: decimal ints, quoted strings)."""
    if isinstance(v, tuple):
        return "{" + ",".join(format_value(x, style) for x in v) + "}"  # type: ignore[arg-type]
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, int):
        if style == "hex":
            return f"0x{v & 0xFFFFFFFFFFFFFFFF:x}" if v < 0 else f"0x{v:x}"
        return str(v)
    if v == "(fault)" or style == "raw":
        return v
    return f'"{v}"'


def _place(where: str, kallsyms: Mapping[str, int]) -> str:
    m = _LOC.match(where)
    if m and m.group(1) in kallsyms:
        return f"{kallsyms[m.group(1)] + int(m.group(2), 16):x}"
    if where.startswith("0x"):
        return where[2:]
    return where


def script_line(ev: TraceEvent, styles: Mapping[str, str], kallsyms: Mapping[str, int]) -> str:
    """``COMM PID [CPU] SECS.USECS: GROUP:EVENT: (PLACE) FIELD=VALUE ...`` as perf script prints probes."""
    secs, nsecs = divmod(ev.timestamp_ns, 1_000_000_000)
    name = f"{ev.group}:{ev.event}" if ev.group else ev.event
    parts = [f"{ev.comm:>16} {ev.pid:>6} [{ev.cpu:03d}] {secs:5d}.{nsecs // 1000:06d}: {name}:"]
    if ev.location is not None:
        loc = _place(ev.location, kallsyms)
        parts.append(f"({_place(ev.caller, kallsyms)} <- {loc})" if ev.caller else f"({loc})")
    elif ev.probe_ip is not None:
        parts.append(f"({ev.ret_ip:x} <- {ev.probe_ip:x})" if ev.ret_ip is not None else f"({ev.probe_ip:x})")
    for k, v in ev.fields.items():
        if k == "_text" and isinstance(v, str):
            parts.append(v)
        else:
            parts.append(f"{k}={format_value(v, styles.get(k))}")
    return " ".join(parts)


def _styles_by_event(formats: Mapping[str, str]) -> Dict[str, Dict[str, str]]:
    out: Dict[str, Dict[str, str]] = {}
    for name, text in formats.items():
        for line in text.splitlines():
            if line.startswith("print fmt:"):
                out[name] = field_styles(line[len("print fmt:"):].strip())
    return out


# ---------------------------------------------------------------------- report


@dataclass
class _FieldStats:
    count: int = 0
    total: int = 0
    low: Optional[int] = None
    high: Optional[int] = None

    def add(self, v: int) -> None:
        self.count += 1
        self.total += v
        self.low = v if self.low is None else min(self.low, v)
        self.high = v if self.high is None else max(self.high, v)


@dataclass
class Summary:
    """Counts per event and per process, and min/avg/max of each numeric field per event."""

    events: Dict[str, int] = field(default_factory=dict)
    processes: Dict[Tuple[str, int], int] = field(default_factory=dict)
    fields: Dict[Tuple[str, str], _FieldStats] = field(default_factory=dict)
    total: int = 0
    first_ns: Optional[int] = None
    last_ns: Optional[int] = None


def summarize(events: Iterable[TraceEvent]) -> Summary:
    """Fold events into a :class:`Summary` (memory grows with distinct events/processes, not events)."""
    s = Summary()
    for ev in events:
        name = f"{ev.group}:{ev.event}" if ev.group else ev.event
        s.total += 1
        s.events[name] = s.events.get(name, 0) + 1
        key = (ev.comm, ev.pid)
        s.processes[key] = s.processes.get(key, 0) + 1
        s.first_ns = ev.timestamp_ns if s.first_ns is None else min(s.first_ns, ev.timestamp_ns)
        s.last_ns = ev.timestamp_ns if s.last_ns is None else max(s.last_ns, ev.timestamp_ns)
        for k, v in ev.fields.items():
            if isinstance(v, int) and not isinstance(v, bool):
                s.fields.setdefault((name, k), _FieldStats()).add(v)
    return s


def render_report(s: Summary, *, source: str, kernel: str, machine: str, duration: float,
                  lost: int, complete: bool, top: int = 20) -> str:  # fmt: skip
    out = [f"# kprobes report: {source}",
           f"# recorded on Linux {kernel} ({machine}), {duration:.1f} s, {s.total} events, lost {lost}"]  # fmt: skip
    if not complete:
        out.append("# WARNING: the recording has no trailer (the recorder was killed): loss counts unknown")
    out += ["#", "# events", f"# {'count':>9}  event"]
    for name, n in sorted(s.events.items(), key=lambda kv: (-kv[1], kv[0])):
        out.append(f"  {n:>9}  {name}")
    out += ["#", f"# processes (top {top})", f"# {'count':>9}  comm/pid"]
    procs = sorted(s.processes.items(), key=lambda kv: (-kv[1], kv[0]))
    for (comm, pid), n in procs[:top]:
        out.append(f"  {n:>9}  {comm}/{pid}")
    if len(procs) > top:
        out.append(f"  {sum(n for _, n in procs[top:]):>9}  ({len(procs) - top} more processes)")
    if s.fields:
        out += ["#", "# numeric fields",
                f"# {'event':<32} {'field':<16} {'count':>9} {'min':>20} {'avg':>22} {'max':>20}"]  # fmt: skip
        for (name, k), st in sorted(s.fields.items()):
            avg = st.total / st.count if st.count else 0.0
            out.append(f"  {name:<32} {k:<16} {st.count:>9} {st.low:>20} {avg:>22.2f} {st.high:>20}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------- commands


def build_parser(prog: str, what: str) -> ArgParser:
    p = ArgParser(prog=prog, description=what, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-i", "--input", default="kprobes.data", metavar="FILE", help="default: kprobes.data")
    return p


def run(args: List[str], streams: Streams) -> int:
    """``kprobes script [-i FILE] [--json] [--header]``."""
    p = build_parser("kprobes script", "Print a recording (kprobes record) one event per line, as perf script does.")
    p.add_argument("--json", action="store_true", help="one JSON object per event (NDJSON)")
    p.add_argument("--header", action="store_true", help="first print what the file says about the recording")
    ns = parse(p, args, streams)
    if ns is None:
        return 0
    from ..backends.recording import Recording

    rec = Recording.open(ns.input)
    out = streams.out
    if ns.header:
        h = rec.header
        out.write(f"# kernel {h.kernel_release} ({h.machine}), clock {h.clock}, events {', '.join(h.events)}\n")
        for name, d in sorted(h.definitions.items()):
            out.write(f"# {name}: {d}\n")
    styles = _styles_by_event(rec.header.formats)
    syms = rec.kallsyms
    for ev in rec.events():
        if ns.json:
            obj = ev.to_json()
            obj["event"] = f"{ev.group}:{ev.event}" if ev.group else ev.event
            out.write(json.dumps(obj, ensure_ascii=False) + "\n")
        else:
            name = f"{ev.group}:{ev.event}" if ev.group else ev.event
            out.write(script_line(ev, styles.get(name, {}), syms) + "\n")
    if not rec.complete:
        streams.err.write(f"kprobes script: {ns.input} has no trailer (the recorder was killed); "
                          "events up to that point were printed\n")  # fmt: skip
    return 0


def run_report(args: List[str], streams: Streams) -> int:
    """``kprobes report [-i FILE]``."""
    p = build_parser("kprobes report", "Summarize a recording: events, processes, numeric fields.")
    p.add_argument("--top", type=int, default=20, metavar="N", help="processes to show (default 20)")
    ns = parse(p, args, streams)
    if ns is None:
        return 0
    from ..backends.recording import Recording

    rec = Recording.open(ns.input)
    s = summarize(rec.events())
    t = rec.trailer
    streams.out.write(render_report(
        s, source=ns.input, kernel=rec.header.kernel_release, machine=rec.header.machine,
        duration=t.duration if t else ((s.last_ns or 0) - (s.first_ns or 0)) / 1e9,
        lost=t.total_lost if t else 0, complete=rec.complete, top=ns.top,
    ))  # fmt: skip
    return 0
