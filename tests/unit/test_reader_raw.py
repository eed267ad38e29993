"""RawReader / TextReader / KernelSymbolizer on fake tracefs trees built in tmp_path."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path
from typing import Dict, List, Mapping, Optional

import pytest

from kprobes.backends.tracefs import session as session_mod
from kprobes.backends.tracefs.fs import TraceFS
from kprobes.backends.tracefs.ledger import EventsLost, LossLedger
from kprobes.backends.tracefs.reader import KernelSymbolizer, RawReader, TextReader, open_reader
from kprobes.backends.tracefs.session import Probe, Session
from kprobes.events.format import EventFormat, parse_event_format
from tests.unit.ring_builder import PageBuilder, encode_event

HEADER_PAGE = (
    "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
    "\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n"
    "\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
    "\tfield: char data;\toffset:16;\tsize:4080;\tsigned:1;\n"
)
COMMON = (
    "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
    "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
    "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
    "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
)
GRP = "kp1_abcdef_x"
INST = "instances/" + GRP


def fmt_text(name: str, eid: int, fields: List[str]) -> str:
    body = "".join(f"\tfield:{f};\n" for f in fields)
    return f"name: {name}\nID: {eid}\nformat:\n{COMMON}{body}\nprint fmt: \"x\"\n"


FORMATS = {
    (GRP, "op"): fmt_text("op", 900, [
        "unsigned long __probe_ip;\toffset:8;\tsize:8;\tsigned:0",
        "__data_loc char[] filename;\toffset:16;\tsize:4;\tsigned:1",
    ]),
    (GRP, "rd"): fmt_text("rd", 901, [
        "unsigned long __probe_func;\toffset:8;\tsize:8;\tsigned:0",
        "unsigned long __probe_ret_ip;\toffset:16;\tsize:8;\tsigned:0",
        "s32 ret;\toffset:24;\tsize:4;\tsigned:1",
        "u64 where;\toffset:32;\tsize:8;\tsigned:0",
    ]),
    (GRP, "up"): fmt_text("up", 902, [
        "unsigned long __probe_ip;\toffset:8;\tsize:8;\tsigned:0",
        "u32 v;\toffset:16;\tsize:4;\tsigned:0",
    ]),
    ("sched", "tick"): fmt_text("tick", 903, [
        "char comm[16];\toffset:8;\tsize:16;\tsigned:0",
        "pid_t pid;\toffset:24;\tsize:4;\tsigned:1",
    ]),
}
KALLSYMS = (
    b"0000000000000000 A fixed_percpu_data\n"
    b"ffffffff81000000 T _stext\n"
    b"ffffffff81100000 T ksys_read\n"
    b"ffffffff811000f0 T do_sys_openat2\n"
    b"ffffffff811000f0 t __alias_of_openat2\n"
    b"ffffffff81100260 T vfs_read\n"
    b"ffffffff81100400 T _etext\n"
    b"ffffffffc0001000 t modfunc\t[mymod]\n"
    b"ffffffffc0001040 t modnext\t[mymod]\n"
)


def fmt(key: tuple) -> EventFormat:  # type: ignore[type-arg]
    return parse_event_format(FORMATS[key], system=key[0])


def probe(label: str, group: str, kind: str, definition: Optional[str] = None,
          types: Optional[Mapping[str, str]] = None) -> Probe:
    return Probe(label=label, group=group, event=label, kind=kind, definition=definition,
                 types=dict(types or {}))


PROBES = [
    probe("op", GRP, "kprobe", "p:op do_sys_openat2 filename=+0(%si):string"),
    probe("rd", GRP, "kprobe", "r:rd vfs_read ret=$retval:s32 where=%ax:symbol",
          {"ret": "s32", "where": "symbol"}),
    probe("up", GRP, "uprobe", "p:up /bin/true:0x10 v=%ax:u32", {"v": "u32"}),
    probe("tick", "sched", "tracepoint"),
]


def make_tree(root: Path, pages: Dict[int, bytes], *, cmdlines: str = "100 bash\n200 cat\n",
              stats: Optional[Dict[int, str]] = None, instance: str = INST) -> TraceFS:
    inst = root / instance
    (inst / "events").mkdir(parents=True)
    (inst / "events" / "header_page").write_text(HEADER_PAGE)
    for (grp, ev), text in FORMATS.items():
        d = inst / "events" / grp / ev
        d.mkdir(parents=True)
        (d / "format").write_text(text)
        (d / "enable").write_text("0")
        (d / "filter").write_text("none")
    for cpu in sorted(set(pages) | set(stats or {})):
        d = inst / "per_cpu" / f"cpu{cpu}"
        d.mkdir(parents=True)
        (d / "trace_pipe_raw").write_bytes(pages.get(cpu, b""))
        (d / "stats").write_text((stats or {}).get(cpu, stats_text(0)))
    (inst / "trace_pipe").write_text("")
    (inst / "buffer_percent").write_text("50")
    (root / "saved_cmdlines").write_text(cmdlines)
    return TraceFS(str(root))


def stats_text(overrun: int, dropped: int = 0) -> str:
    return (f"entries: 0\noverrun: {overrun}\ncommit overrun: 0\nbytes: 0\n"
            f"oldest event ts:     0.000000\nnow ts:   1.000000\ndropped events: {dropped}\nread events: 0\n")


def ev(key: tuple, common_pid: int, **values: object) -> bytes:  # type: ignore[type-arg]
    return encode_event(fmt(key), common_pid, values)  # type: ignore[arg-type]


def reader_for(fs: TraceFS, ledger: Optional[LossLedger] = None, **kw: object) -> RawReader:
    r = RawReader(fs, INST, own_group=GRP, ledger=ledger,
                  symbolizer=KernelSymbolizer(text=KALLSYMS), **kw)  # type: ignore[arg-type]
    r.open(PROBES)
    return r


def test_merge_across_cpus_comms_and_types(tmp_path: Path) -> None:
    cpu0 = PageBuilder(timestamp=1000).data(ev(("sched", "tick"), 100, comm="bash", pid=100), 5) \
        .data(ev(("sched", "tick"), 200, comm="cat", pid=200), 20).build()
    cpu1 = PageBuilder(timestamp=1010).data(ev((GRP, "up"), 200, __probe_ip=0x5555, v=7), 0).build()
    fs = make_tree(tmp_path, {0: cpu0, 1: cpu1})
    r = reader_for(fs)
    got = r.read()
    assert [(e.timestamp_ns, e.cpu, e.event) for e in got] == [(1005, 0, "tick"), (1010, 1, "up"), (1025, 0, "tick")]
    tick = got[0]
    assert (tick.comm, tick.pid, tick.group, tick.fields) == ("bash", 100, "sched", {"comm": "bash", "pid": 100})
    up = got[1]
    assert (up.comm, up.group, up.location, up.probe_ip, up.fields) == ("cat", None, "0x5555", 0x5555, {"v": 7})
    assert r.read() == []  # the files are drained
    assert r.pages_read == 2
    assert fs.read(f"{INST}/buffer_percent") == "0"  # poll wakes on any data
    r.close()


def test_kprobe_locations_from_kallsyms(tmp_path: Path) -> None:
    page = PageBuilder(timestamp=5).data(
        ev((GRP, "op"), 100, __probe_ip=0xffffffff811000f0, filename="/etc/passwd")).data(
        ev((GRP, "rd"), 100, __probe_func=0xffffffff81100260, __probe_ret_ip=0xffffffff8110006b,
           ret=-4, where=0xffffffffc0001004)).data(
        ev((GRP, "op"), 100, __probe_ip=0xffffffffc0001010, filename="m")).build()
    r = reader_for(make_tree(tmp_path, {0: page}))
    op, rd, mod = r.read()
    # entry probes print %pS; the first of aliased symbols wins, size runs to the next address
    assert op.location == "do_sys_openat2+0x0/0x170" and op.caller is None
    assert op.fields == {"filename": "/etc/passwd"}
    # return probes print "(caller+off/size <- func)": location without offset
    assert (rd.location, rd.caller) == ("vfs_read", "ksys_read+0x6b/0xf0")
    assert rd.fields == {"ret": -4, "where": "modfunc+0x4/0x40 [mymod]"}
    assert mod.location == "modfunc+0x10/0x40 [mymod]"
    assert (op.group, rd.group) == (None, None)


def test_symbolizer_edges() -> None:
    s = KernelSymbolizer(text=KALLSYMS)
    assert s.render(0xffffffff81100001) == "ksys_read+0x1/0xf0"
    assert s.render(0xffffffff81100001, offset=False) == "ksys_read"
    assert s.render(0xffffffff81100400) == "0xffffffff81100400"  # past the last symbol
    assert s.render(0xffffffffc0001050) == "0xffffffffc0001050"  # past the module's last symbol
    assert s.render(0x10) == "0x10"
    assert s.render(0) == "0"
    hidden = KernelSymbolizer(text=b"0000000000000000 T ksys_read\n0000000000000000 T vfs_read\n")
    assert hidden.render(0xffffffff81100001) == "0xffffffff81100001"
    assert not hidden.available
    missing = KernelSymbolizer(path="/nonexistent/kallsyms")
    assert missing.render(0x1234) == "0x1234"


def test_comm_refresh_once_per_round_on_unknown_pid(tmp_path: Path) -> None:
    page = PageBuilder(timestamp=1).data(ev(("sched", "tick"), 300, pid=300)).data(
        ev(("sched", "tick"), 301, pid=301)).build()
    fs = make_tree(tmp_path, {0: page}, cmdlines="100 bash\n")
    r = reader_for(fs)
    a, b = r.read()
    assert (a.comm, b.comm) == ("<...>", "<...>")
    refreshes = r._comms.refreshes
    assert refreshes == 1  # one re-read for the round, not one per unknown pid
    (tmp_path / "saved_cmdlines").write_text("300 newproc\n")
    with open(fs.path(f"{INST}/per_cpu/cpu0/trace_pipe_raw"), "ab") as f:
        f.write(PageBuilder(timestamp=9).data(ev(("sched", "tick"), 300, pid=300)).build())
    (c,) = r.read()
    assert c.comm == "newproc"


def test_missed_events_and_undecodable_go_to_the_ledger(tmp_path: Path) -> None:
    unknown = struct.pack("<HBBi", 999, 0, 0, 5) + b"\0" * 8  # common_type 999: no format
    p1 = PageBuilder(timestamp=1).data(ev(("sched", "tick"), 100, pid=1)).data(unknown).build(missed=17)
    p2 = PageBuilder(timestamp=2).data(ev(("sched", "tick"), 100, pid=1)).build(missed=0, missed_stored=False)
    ledger = LossLedger()
    r = reader_for(make_tree(tmp_path, {0: p1 + p2}), ledger)
    assert len(r.read()) == 2
    assert (ledger.pages_flagged, ledger.page_missed_events, ledger.pages_flagged_uncounted) == (2, 17, 1)
    assert ledger.undecodable == 1
    assert ledger.total_lost == 19 and ledger.any_loss  # 17 + at least 1 + 1 undecodable


def test_max_pages_bounds_one_read(tmp_path: Path) -> None:
    pages = b"".join(PageBuilder(timestamp=i).data(ev(("sched", "tick"), 100, pid=i)).build() for i in range(5))
    r = reader_for(make_tree(tmp_path, {0: pages}), max_pages=2)
    assert [len(r.read()) for _ in range(4)] == [2, 2, 1, 0]


def test_open_reader_falls_back_to_text(tmp_path: Path) -> None:
    fs = make_tree(tmp_path, {})
    (tmp_path / INST / "trace_pipe").write_text(
        "            bash-100     [000] d..1.    12.000005: tick: comm=bash pid=100\n"
        "CPU:1 [LOST 42 EVENTS]\n"
        "garbage line\n"
        "             cat-200     [001] .....    12.000010: up: (0x5555) v=7\n"
    )
    ledger = LossLedger()
    reader, why = open_reader("raw", fs, INST, PROBES, own_group=GRP, ledger=ledger)
    assert isinstance(reader, TextReader) and why and "cpuN" in why
    assert ledger.reader == "text"
    got = reader.read() + reader.flush()
    assert [(e.event, e.group) for e in got] == [("tick", "sched"), ("up", None)]
    assert got[1].fields == {"v": 7} and got[1].location == "0x5555"
    assert (ledger.text_lost, ledger.unparsed_lines, ledger.total_lost) == (42, 1, 43)
    assert len(reader.unparsed) == 2
    reader.close()


def test_open_reader_raw_needs_formats(tmp_path: Path) -> None:
    fs = make_tree(tmp_path, {0: b""})
    (tmp_path / INST / "events" / "sched" / "tick" / "format").write_text("not a format")
    reader, why = open_reader("raw", fs, INST, PROBES, own_group=GRP)
    assert reader.kind == "text" and why and "tick" in why
    reader.close()
    with pytest.raises(Exception, match="unknown reader"):
        open_reader("binary", fs, INST, PROBES)


def _fake_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pages: Dict[int, bytes],
                  **kw: object) -> Session:
    fs_root = tmp_path / "tracefs"
    s = Session(TraceFS(str(fs_root)), reap_dead=False, handle_signals=False, buffer_size_kb=None,
                clock="", exclude_self=False, **kw)  # type: ignore[arg-type]
    monkeypatch.setattr(session_mod, "remove_instance",
                        lambda fs, name: shutil.rmtree(fs.path(f"instances/{name}")))
    make_tree(fs_root, pages, stats={0: stats_text(3), 1: stats_text(0)}, instance=s.instance)
    return s


def test_session_reads_raw_and_counts_losses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = PageBuilder(timestamp=1).data(ev(("sched", "tick"), 100, pid=100)).build()
    s = _fake_session(tmp_path, monkeypatch, {0: page})
    with s:
        s.add_tracepoint("sched:tick")
        root = Path(s.fs.root) if s.fs else tmp_path
        (root / s.instance / "per_cpu" / "cpu1" / "stats").write_text(stats_text(10, dropped=2))
        got = list(s.events(duration=0))
        assert s.reader_kind == "raw" and s.reader_fallback is None
        assert [e.fields["pid"] for e in got] == [100]
        L = s.ledger
        # deltas from the baseline read at open: cpu0 had 3 before, cpu1 grew by 12
        assert (L.cpus[0].lost, L.cpus[1].overrun, L.cpus[1].dropped) == (0, 10, 2)
        assert L.probes["tick"].delivered == 1
        assert L.total_lost == 12
        rec = L.to_json()
        assert rec["lost"] == 12 and rec["reader"] == "raw"
        assert L.report() == ("kprobes: 12 events lost: ring buffer overrun on CPU 1 "
                              "(10 overwritten, 2 dropped, buffer full; raise --buffer-size)")


def test_session_loss_is_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = _fake_session(tmp_path, monkeypatch, {0: b""}, loss_is_error=True, reader="text")
    with s:
        s.add_tracepoint("sched:tick")
        root = Path(s.fs.root) if s.fs else tmp_path
        (root / s.instance / "per_cpu" / "cpu0" / "stats").write_text(stats_text(8))
        with pytest.raises(EventsLost) as ei:
            list(s.events(duration=0))
        assert s.reader_kind == "text"
    assert ei.value.exit_code == 3 and "5 events were lost" in str(ei.value)


def test_session_rejects_unknown_reader() -> None:
    with pytest.raises(Exception, match="unknown reader"):
        Session(reader="binary")


def test_raw_reader_open_errors(tmp_path: Path) -> None:
    fs = make_tree(tmp_path, {0: b""})
    os.remove(fs.path(f"{INST}/events/header_page"))
    (tmp_path / INST / "events" / "header_page").write_text("nothing here")
    with pytest.raises(Exception, match="page layout"):
        RawReader(fs, INST).open(PROBES)
