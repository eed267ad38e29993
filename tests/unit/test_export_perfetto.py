"""Recordings as timelines: pairing, nesting, Chrome JSON and the Perfetto protobuf (offline)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from kprobes.backends.recording import RecordingHeader, RecordingWriter
from kprobes.events.model import TraceEvent
from kprobes.export.perfetto import build_timeline, chrome_json, pair_roles, perfetto_trace
from tests.helpers import run_cli

DEFS = {
    "probe:fact": "p:probe/fact /tmp/x:0x1139 n=%di:s32",
    "probe:fact_ret": "r:probe/fact_ret /tmp/x:0x1139 ret=$retval:s32",
    "probe:open": "p:probe/open do_sys_openat2",
    "probe:open_r": "r:probe/open_r do_sys_openat2",
}


def ev(ts: int, name: str, pid: int = 10, comm: str = "app", tgid: Optional[int] = None,
       **fields: object) -> TraceEvent:
    group, _, event = name.partition(":")
    return TraceEvent(comm=comm, pid=pid, cpu=0, timestamp_ns=ts, event=event, group=group,
                      fields=dict(fields), tgid=tgid)  # type: ignore[arg-type]


def test_roles_from_definitions_syscalls_and_names() -> None:
    names = ["probe:fact", "probe:fact_ret", "probe:open", "probe:open_r",
             "syscalls:sys_enter_read", "syscalls:sys_exit_read", "syscalls:sys_enter_write",
             "raw_syscalls:sys_enter", "raw_syscalls:sys_exit",
             "probe:vfs_read", "probe:vfs_read__return", "sched:sched_switch"]
    roles = pair_roles(names, DEFS)
    assert roles["probe:fact"] == ("entry", ("probe", "/tmp/x:0x1139"), "fact")
    assert roles["probe:fact_ret"][:2] == ("return", ("probe", "/tmp/x:0x1139"))
    assert roles["probe:open_r"] == ("return", ("probe", "do_sys_openat2"), "open")
    assert roles["syscalls:sys_enter_read"] == ("entry", ("syscall", "read"), "read")
    assert roles["syscalls:sys_exit_read"][0] == "return"
    assert "syscalls:sys_enter_write" not in roles  # no exit recorded: instants
    assert roles["raw_syscalls:sys_exit"][0] == "return"
    assert roles["probe:vfs_read__return"] == ("return", ("named", "probe", "vfs_read"), "vfs_read")
    assert "sched:sched_switch" not in roles


def test_recursion_nests_and_threads_stay_apart() -> None:
    events = [
        ev(100, "probe:fact", n=2), ev(110, "probe:fact", pid=11, tgid=10, comm="worker", n=9),
        ev(120, "probe:fact", n=1), ev(150, "probe:fact_ret", ret=1),
        ev(160, "sched:sched_switch", prev_comm="app"),
        ev(170, "probe:fact_ret", pid=11, tgid=10, comm="worker", ret=9),
        ev(200, "probe:fact_ret", ret=2),
    ]
    tl = build_timeline(events, ["probe:fact", "probe:fact_ret", "sched:sched_switch"], DEFS)
    got = [(s.tid, s.start_ns, s.end_ns, s.depth, s.args) for s in tl.slices]
    assert got == [
        (10, 100, 200, 0, {"n": 2, "return.ret": 2}),
        (11, 110, 170, 0, {"n": 9, "return.ret": 9}),
        (10, 120, 150, 1, {"n": 1, "return.ret": 1}),
    ]
    assert [(i.name, i.ts_ns, i.args) for i in tl.instants] == [
        ("sched_switch", 160, {"prev_comm": "app", "cpu": 0})]
    assert tl.threads == {10: (10, "app"), 11: (10, "worker")}
    assert tl.processes == {10: "app"}
    assert tl.unmatched == 0


def test_lost_returns_become_instants_and_slices_stay_nested() -> None:
    events = [ev(5, "probe:fact_ret", ret=0),  # its entry was before the recording
              ev(10, "probe:open"), ev(20, "probe:fact", n=3), ev(30, "probe:open_r"),
              ev(40, "probe:open")]  # never returns
    tl = build_timeline(events, list(DEFS), DEFS)
    assert [(s.name, s.start_ns, s.end_ns) for s in tl.slices] == [("open", 10, 30)]
    assert sorted((i.name, i.ts_ns, i.args.get("unfinished", False)) for i in tl.instants) == [
        ("fact", 20, True), ("fact (return)", 5, False), ("open", 40, True)]
    assert tl.unmatched == 3


def test_chrome_json_structure() -> None:
    events = [ev(1000, "syscalls:sys_enter_read", fd=3), ev(4500, "syscalls:sys_exit_read", ret=7),
              ev(5000, "raw_syscalls:sys_enter", id=39), ev(6000, "raw_syscalls:sys_exit", ret=10)]
    names = ["syscalls:sys_enter_read", "syscalls:sys_exit_read", "raw_syscalls:sys_enter",
             "raw_syscalls:sys_exit"]
    doc = chrome_json(build_timeline(events, names, {}), {"kernel_release": "6.1"})
    json.dumps(doc)
    evs = doc["traceEvents"]
    xs = [e for e in evs if e["ph"] == "X"]
    assert [(e["name"], e["ts"], e["dur"], e["args"]) for e in xs] == [
        ("read", 1.0, 3.5, {"fd": 3, "return.ret": 7}),
        ("syscall 39", 5.0, 1.0, {"id": 39, "return.ret": 10})]
    meta = [(e["name"], e["pid"], e["tid"], e["args"]["name"]) for e in evs if e["ph"] == "M"]
    assert meta == [("process_name", 10, 10, "app"), ("thread_name", 10, 10, "app")]
    assert doc["otherData"] == {"kernel_release": "6.1"}


def _proto_slices(data: bytes) -> Dict[str, object]:
    pb = pytest.importorskip("perfetto.protos.perfetto.trace.perfetto_trace_pb2")
    trace = pb.Trace.FromString(data)
    tracks: Dict[int, str] = {}
    out: List[tuple] = []
    open_: Dict[int, List[tuple]] = {}
    instants = []
    for p in trace.packet:
        if p.HasField("track_descriptor"):
            td = p.track_descriptor
            if td.HasField("thread"):
                tracks[td.uuid] = f"thread {td.thread.pid}/{td.thread.tid} {td.thread.thread_name}"
            elif td.HasField("process"):
                tracks[td.uuid] = f"process {td.process.pid} {td.process.process_name}"
        if p.HasField("track_event"):
            te = p.track_event
            args = {a.name: (a.int_value if a.HasField("int_value") else a.string_value)
                    for a in te.debug_annotations}
            if te.type == pb.TrackEvent.TYPE_SLICE_BEGIN:
                open_.setdefault(te.track_uuid, []).append((te.name, p.timestamp, args))
            elif te.type == pb.TrackEvent.TYPE_SLICE_END:
                name, start, args = open_[te.track_uuid].pop()
                out.append((tracks[te.track_uuid], name, start, p.timestamp - start, args))
            else:
                instants.append((tracks[te.track_uuid], te.name, p.timestamp, args))
    assert all(not v for v in open_.values())  # every begin has its end
    return {"slices": out, "instants": instants, "tracks": sorted(tracks.values()),
            "clock": trace.packet[0].trace_packet_defaults.timestamp_clock_id}


def test_perfetto_proto_parses_back() -> None:
    events = [ev(100, "probe:fact", n=2), ev(100, "probe:fact", n=1), ev(150, "probe:fact_ret", ret=1),
              ev(150, "probe:fact_ret", ret=2), ev(160, "sched:sched_switch", prev_comm="app")]
    tl = build_timeline(events, ["probe:fact", "probe:fact_ret", "sched:sched_switch"], DEFS)
    got = _proto_slices(perfetto_trace(tl, "mono"))
    # Equal timestamps: the outer slice begins first and ends last.
    assert got["slices"] == [
        ("thread 10/10 app", "fact", 100, 50, {"n": 1, "return.ret": 1}),
        ("thread 10/10 app", "fact", 100, 50, {"n": 2, "return.ret": 2}),
    ]
    assert got["instants"] == [("thread 10/10 app", "sched_switch", 160,
                                {"prev_comm": "app", "cpu": 0})]
    assert got["tracks"] == ["process 10 app", "thread 10/10 app"]
    assert got["clock"] == 3  # BUILTIN_CLOCK_MONOTONIC


def test_cli_perfetto_json_and_errors(tmp_path: Path) -> None:
    rec = tmp_path / "r.data"
    w = RecordingWriter(str(rec), RecordingHeader(
        kernel_release="6.1", machine="x86_64", events=tuple(DEFS), definitions=DEFS))
    for e in (ev(1000, "probe:open"), ev(3000, "probe:open_r")):
        w.write_event(e)
    w.close()
    out = tmp_path / "t.json"
    rc, _, err = run_cli(["perfetto", "-i", str(rec), "-o", str(out)])
    assert rc == 0, err
    assert "1 slices, 0 instants, 1 threads" in err
    doc = json.loads(out.read_text())
    assert [e["dur"] for e in doc["traceEvents"] if e["ph"] == "X"] == [2.0]
    rc, _, err = run_cli(["perfetto", "-i", str(tmp_path / "none.data"), "-o", str(out)])
    assert rc != 0 and "none.data" in err
    rc, _, err = run_cli(["perfetto", "-i", str(rec), "-o", str(rec)])
    assert rc == 2
