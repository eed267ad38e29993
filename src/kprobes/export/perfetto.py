"""A recording (``kprobes record``) as a timeline: Chrome JSON trace or Perfetto protobuf.

:func:`build_timeline` turns the recorded events into

* **slices**: an entry event and its return event on one thread become one slice
  from the entry to the return, named after the entry event, with the entry's
  fields as arguments and the return's fields as ``return.NAME``;
* **instants**: every other event (and an entry or return whose partner is not
  in the recording) at its time, with its fields (and its CPU) as arguments;
* **processes and threads**: a thread's track is named after its last ``comm``;
  a process is the event's ``tgid`` when the recording has it, else the thread
  itself (tracefs records only the thread id).

Which events pair up:

* a kprobe/uprobe definition (``p:...`` / ``r:...`` in the recording header)
  pairs with the other kind on the same place (``do_sys_openat2``,
  ``/bin/bash:0x4f0``): ``kprobes record -e 'p:open do_sys_openat2'
  -e 'r:open_ret do_sys_openat2'``;
* ``syscalls:sys_enter_X`` with ``syscalls:sys_exit_X`` (slice ``X``), and
  ``raw_syscalls:sys_enter``/``sys_exit`` (slice ``syscall N``);
* otherwise by name: ``NAME`` or ``NAME_entry``/``NAME_enter`` with
  ``NAME__return``, ``NAME_return``, ``NAME_ret`` or ``NAME_exit`` in one group.

Pairs match per thread, innermost first, so recursion nests correctly: a return
closes the most recent open entry of its pair on its thread.

:func:`chrome_json` writes the Chrome trace event format (``traceEvents`` of
``X`` complete events, ``i`` instants, ``M`` process/thread name metadata;
times in microseconds), which Perfetto UI, chrome://tracing and speedscope
open.  :func:`perfetto_trace` writes Perfetto's own protobuf (``TracePacket``s
with process/thread ``TrackDescriptor``s and ``TrackEvent`` slice begin/end and
instants) through the ``perfetto`` package's generated protos (optional:
``pip install 'kprobes[perfetto]'``).
"""

from __future__ import annotations

import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from .._record import dataclass, field
from ..errors import KprobesError
from ..events.model import FieldValue, TraceEvent

__all__ = ["Slice", "Instant", "Timeline", "build_timeline", "chrome_json", "perfetto_trace",
           "pair_roles"]

_RET_SUFFIXES = ("__return", "_return", "_ret", "_exit")
_ENTRY_SUFFIXES = ("_entry", "_enter", "")
_DEF = re.compile(r"^([pr])\d*:(?:[^/\s]+/)?(\S+)\s+(\S+)")


@dataclass
class Slice:
    name: str
    pid: int
    tid: int
    start_ns: int
    end_ns: int
    args: Dict[str, Any]
    depth: int = 0


@dataclass
class Instant:
    name: str
    pid: int
    tid: int
    ts_ns: int
    args: Dict[str, Any]


@dataclass
class Timeline:
    slices: List[Slice] = field(default_factory=list)
    instants: List[Instant] = field(default_factory=list)
    processes: Dict[int, str] = field(default_factory=dict)
    threads: Dict[int, Tuple[int, str]] = field(default_factory=dict)
    #: entries whose return is not in the recording, returns without entry
    unmatched: int = 0


Role = Tuple[str, Tuple[str, ...], str]  # ("entry"|"return", pair key, slice name)


def _short(event: str) -> str:
    return event.partition(":")[2] or event


def pair_roles(events: Iterable[str], definitions: Mapping[str, str]) -> Dict[str, Role]:
    """``GROUP:EVENT`` -> (role, pair key, slice name) for the events that pair up."""
    names = list(events)
    roles: Dict[str, Role] = {}
    by_place: Dict[str, Dict[str, str]] = {}
    for ev in names:
        m = _DEF.match(definitions.get(ev, ""))
        if m:
            by_place.setdefault(m.group(3), {}).setdefault(m.group(1), ev)
    for place, kinds in by_place.items():
        if "p" in kinds and "r" in kinds:
            name = _short(kinds["p"])
            roles[kinds["p"]] = ("entry", ("probe", place), name)
            roles[kinds["r"]] = ("return", ("probe", place), name)
    present = set(names)
    for ev in names:
        if ev in roles:
            continue
        group, _, short = ev.partition(":")
        if group == "syscalls" and short.startswith("sys_exit_"):
            sc = short[len("sys_exit_"):]
            if f"syscalls:sys_enter_{sc}" in present:
                roles[f"syscalls:sys_enter_{sc}"] = ("entry", ("syscall", sc), sc)
                roles[ev] = ("return", ("syscall", sc), sc)
            continue
        if ev == "raw_syscalls:sys_exit" and "raw_syscalls:sys_enter" in present:
            roles["raw_syscalls:sys_enter"] = ("entry", ("raw_syscall",), "syscall")
            roles[ev] = ("return", ("raw_syscall",), "syscall")
            continue
        for suffix in _RET_SUFFIXES:
            if not short.endswith(suffix) or len(short) == len(suffix):
                continue
            base = short[:-len(suffix)]
            entry = next((f"{group}:{base}{s}" for s in _ENTRY_SUFFIXES
                          if f"{group}:{base}{s}" in present and f"{group}:{base}{s}" not in roles), None)
            if entry is not None and entry != ev:
                roles[entry] = ("entry", ("named", group, base), _short(entry))
                roles[ev] = ("return", ("named", group, base), _short(entry))
                break
    return roles


def _args(fields: Mapping[str, FieldValue], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in fields.items():
        if k.startswith("__"):  # kprobes' own helper fields (__comm)
            continue
        val: Any = v
        if isinstance(v, bytes):
            val = v.hex()
        elif isinstance(v, tuple):
            val = list(v)
        out[prefix + k] = val
    return out


def build_timeline(events: Iterable[TraceEvent], event_names: Iterable[str],
                   definitions: Mapping[str, str]) -> Timeline:
    """Slices, instants, processes and threads of a recording (see the module docstring)."""
    roles = pair_roles(event_names, definitions)
    tl = Timeline()
    # per thread: open entries (pair key, slice name, start, args, pid)
    open_: Dict[int, List[Tuple[Tuple[str, ...], str, int, Dict[str, Any], int]]] = {}
    for ev in events:
        full = f"{ev.group}:{ev.event}" if ev.group else ev.event
        tid = ev.pid
        pid = ev.tgid if ev.tgid else tid
        if tid == 0:
            pid = 0
        tl.threads[tid] = (pid, ev.comm if tid else f"swapper/{ev.cpu}")
        if pid not in tl.processes or tid == pid:
            tl.processes[pid] = ev.comm if pid else "swapper"
        role = roles.get(full)
        if role is not None and role[0] == "entry":
            name = role[2]
            nr = ev.fields.get("id")
            if role[1] == ("raw_syscall",) and isinstance(nr, int):
                name = f"syscall {nr}"
            open_.setdefault(tid, []).append((role[1], name, ev.timestamp_ns, _args(ev.fields), pid))
            continue
        if role is not None:
            stack = open_.get(tid, [])
            for i in range(len(stack) - 1, -1, -1):
                if stack[i][0] == role[1]:
                    # Entries opened after this one never returned (their return was lost):
                    # they become instants, so slices stay properly nested.
                    for _k, lname, lstart, largs, lpid in stack[i + 1:]:
                        tl.unmatched += 1
                        largs["unfinished"] = True
                        tl.instants.append(Instant(lname, lpid, tid, lstart, largs))
                    del stack[i + 1:]
                    _key, name, start, args, epid = stack.pop()
                    args.update(_args(ev.fields, "return."))
                    tl.slices.append(Slice(name, epid, tid, start, ev.timestamp_ns, args, depth=i))
                    break
            else:
                tl.unmatched += 1
                args = _args(ev.fields)
                args["cpu"] = ev.cpu
                tl.instants.append(Instant(f"{role[2]} (return)", pid, tid, ev.timestamp_ns, args))
            continue
        args = _args(ev.fields)
        args["cpu"] = ev.cpu
        tl.instants.append(Instant(_short(full), pid, tid, ev.timestamp_ns, args))
    for tid, stack in open_.items():
        for _key, name, start, args, pid in stack:
            tl.unmatched += 1
            args["unfinished"] = True
            tl.instants.append(Instant(name, pid, tid, start, args))
    tl.slices.sort(key=lambda s: (s.start_ns, -s.end_ns))
    tl.instants.sort(key=lambda i: i.ts_ns)
    return tl


def chrome_json(tl: Timeline, meta: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The Chrome trace event format of ``tl`` (a dict for ``json.dump``)."""
    evs: List[Dict[str, Any]] = []
    for pid, name in sorted(tl.processes.items()):
        evs.append({"ph": "M", "name": "process_name", "pid": pid, "tid": pid, "args": {"name": name}})
    for tid, (pid, name) in sorted(tl.threads.items()):
        evs.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}})
    for s in tl.slices:
        evs.append({"ph": "X", "name": s.name, "cat": "kprobes", "pid": s.pid, "tid": s.tid,
                    "ts": s.start_ns / 1000.0, "dur": (s.end_ns - s.start_ns) / 1000.0,
                    "args": s.args})
    for i in tl.instants:
        evs.append({"ph": "i", "s": "t", "name": i.name, "cat": "kprobes", "pid": i.pid,
                    "tid": i.tid, "ts": i.ts_ns / 1000.0, "args": i.args})
    out: Dict[str, Any] = {"traceEvents": evs, "displayTimeUnit": "ns"}
    if meta:
        out["otherData"] = dict(meta)
    return out


#: perfetto.protos BuiltinClock values for the recording's trace clock.
_CLOCKS = {"mono": 3, "mono_raw": 4, "boot": 6}


def perfetto_trace(tl: Timeline, clock: str = "mono") -> bytes:
    """Perfetto's protobuf trace of ``tl`` (needs the ``perfetto`` package)."""
    try:
        from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        raise KprobesError("writing .pftrace needs the 'perfetto' Python package",
                           hint="pip install 'kprobes[perfetto]' (or write -o trace.json: "
                                "Perfetto UI opens the JSON trace too)") from None
    seq = 1
    trace = pb.Trace()
    first = trace.packet.add()
    first.trusted_packet_sequence_id = seq
    first.sequence_flags = pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
    first.trace_packet_defaults.timestamp_clock_id = _CLOCKS.get(clock, 6)

    def proc_uuid(pid: int) -> int:
        return (1 << 40) | pid

    def thread_uuid(tid: int) -> int:
        return (2 << 40) | tid

    for pid, name in sorted(tl.processes.items()):
        p = trace.packet.add()
        p.trusted_packet_sequence_id = seq
        p.track_descriptor.uuid = proc_uuid(pid)
        p.track_descriptor.process.pid = pid
        p.track_descriptor.process.process_name = name
    for tid, (pid, name) in sorted(tl.threads.items()):
        p = trace.packet.add()
        p.trusted_packet_sequence_id = seq
        td = p.track_descriptor
        td.uuid = thread_uuid(tid)
        td.parent_uuid = proc_uuid(pid)
        td.thread.pid = pid
        td.thread.tid = tid
        td.thread.thread_name = name
    # (ts, order, depth-key, ...): at one time ends come first (innermost first), then begins
    # (outermost first), then instants, so nesting holds for equal timestamps.
    timed: List[Tuple[int, int, int, int, Any]] = []
    for n, s in enumerate(tl.slices):
        timed.append((s.start_ns, 1, s.depth, n, ("B", s)))
        timed.append((s.end_ns, 0, -s.depth, n, ("E", s)))
    for n, i in enumerate(tl.instants):
        timed.append((i.ts_ns, 2, 0, n, ("I", i)))
    timed.sort(key=lambda t: t[:4])
    TE = pb.TrackEvent
    for ts, _o, _d, _n, (kind, obj) in timed:
        p = trace.packet.add()
        p.trusted_packet_sequence_id = seq
        p.timestamp = ts
        te = p.track_event
        te.track_uuid = thread_uuid(obj.tid)
        if kind == "E":
            te.type = TE.TYPE_SLICE_END
            continue
        te.type = TE.TYPE_SLICE_BEGIN if kind == "B" else TE.TYPE_INSTANT
        te.name = obj.name
        te.categories.append("kprobes")
        for k, v in obj.args.items():
            a = te.debug_annotations.add()
            a.name = k
            if isinstance(v, bool):
                a.bool_value = v
            elif isinstance(v, int) and -(1 << 63) <= v < (1 << 63):
                a.int_value = v
            elif isinstance(v, int):
                a.uint_value = v & ((1 << 64) - 1)
            elif isinstance(v, float):
                a.double_value = v
            else:
                a.string_value = str(v)
    data: bytes = trace.SerializeToString()
    return data
