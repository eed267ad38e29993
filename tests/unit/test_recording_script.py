"""``kprobes script`` and ``kprobes report`` on recordings written here."""

from __future__ import annotations

import json
from pathlib import Path

from kprobes.backends.recording import RecordingHeader, RecordingWriter
from kprobes.cli.script import field_styles, format_value, script_line, summarize
from kprobes.events.model import TraceEvent
from tests.helpers import run_cli

KPROBE_FORMAT = """\
name: do_sys_openat2
ID: 2046
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:unsigned long __probe_ip;\toffset:8;\tsize:8;\tsigned:0;
\tfield:__data_loc char[] filename;\toffset:16;\tsize:4;\tsigned:1;
\tfield:u64 flags;\toffset:24;\tsize:8;\tsigned:0;
\tfield:s32 dfd;\toffset:32;\tsize:4;\tsigned:1;

print fmt: "(%lx) filename=\\"%s\\" flags=0x%Lx dfd=%d", REC->__probe_ip, __get_str(filename), REC->flags, REC->dfd
"""


def test_field_styles_from_print_fmt() -> None:
    fmt = KPROBE_FORMAT.split("print fmt: ", 1)[1].strip()
    assert field_styles(fmt) == {"filename": "str", "flags": "hex", "dfd": "dec"}
    sys_fmt = '"dfd: 0x%08lx, filename: 0x%08lx, mode: %ld", ((unsigned long)(REC->dfd)), REC->mode'
    assert field_styles(sys_fmt) == {"dfd": "hex", "filename": "hex", "mode": "dec"}
    assert field_styles('"caller=%pS"') == {"caller": "raw"}


def test_format_value() -> None:
    assert format_value(255, "hex") == "0xff"
    assert format_value(-1, "hex") == "0xffffffffffffffff"
    assert format_value(-1, "dec") == "-1"
    assert format_value("/etc/passwd", "str") == '"/etc/passwd"'
    assert format_value("(fault)", "str") == "(fault)"
    assert format_value((1, 2, 3), None) == "{1,2,3}"
    assert format_value("vfs_read+0x4/0x20", "raw") == "vfs_read+0x4/0x20"


def _ev(i: int, **kw: object) -> TraceEvent:
    base: dict[str, object] = dict(comm="cat" if i % 2 else "ls", pid=4000 + i % 2, cpu=i % 2,
                                   timestamp_ns=5_678_123_456_789 + i * 1000, event="do_sys_openat2",
                                   group="probe", location="do_sys_openat2+0x0/0x1b0",
                                   fields={"filename": f"/etc/f{i}", "flags": 0x8000 + i, "dfd": -100})  # fmt: skip
    base.update(kw)
    return TraceEvent(**base)  # type: ignore[arg-type]


def test_script_line_layout() -> None:
    styles = {"filename": "str", "flags": "hex", "dfd": "dec"}
    line = script_line(_ev(1), styles, {"do_sys_openat2": 0xFFFFFFFF81234560})
    assert line == ("             cat   4001 [001]  5678.123457: probe:do_sys_openat2: (ffffffff81234560) "
                    'filename="/etc/f1" flags=0x8001 dfd=-100')  # fmt: skip
    no_syms = script_line(_ev(0), styles, {})
    assert "(do_sys_openat2+0x0/0x1b0)" in no_syms
    ret = script_line(_ev(0, event="r", location="vfs_read+0x0/0x1c0", caller="ksys_read+0x6b/0xf0",
                          fields={}), {}, {"vfs_read": 0x1000, "ksys_read": 0x2000})  # fmt: skip
    assert ret.endswith("probe:r: (206b <- 1000)")
    raw = script_line(_ev(0, location=None, probe_ip=0xFFFFFFFF81234560, fields={}), {}, {})
    assert raw.endswith(": (ffffffff81234560)")


def _record(tmp_path: Path, n: int, complete: bool = True) -> str:
    path = str(tmp_path / "kprobes.data")
    h = RecordingHeader(kernel_release="6.1.0-test", machine="x86_64", events=("probe:do_sys_openat2",),
                        formats={"probe:do_sys_openat2": KPROBE_FORMAT})  # fmt: skip
    w = RecordingWriter(path, h)
    for i in range(n):
        w.write_event(_ev(i))
    if complete:
        w.close(lost={0: 4}, kallsyms_path=None)
    else:
        w.abort()
    return path


def test_script_cli_text_and_json(tmp_path: Path) -> None:
    path = _record(tmp_path, 4)
    rc, out, err = run_cli(["script", "-i", path])
    assert rc == 0, err
    lines = out.splitlines()
    assert len(lines) == 4
    assert lines[2].endswith('filename="/etc/f2" flags=0x8002 dfd=-100')
    rc, out, err = run_cli(["script", "-i", path, "--json"])
    recs = [json.loads(x) for x in out.splitlines()]
    assert [r["fields"]["filename"] for r in recs] == [f"/etc/f{i}" for i in range(4)]
    assert recs[0]["event"] == "probe:do_sys_openat2"


def test_report_counts_and_ranges(tmp_path: Path) -> None:
    events = [_ev(i) for i in range(5)]
    s = summarize(events)
    assert s.events == {"probe:do_sys_openat2": 5}
    assert s.processes == {("ls", 4000): 3, ("cat", 4001): 2}
    st = s.fields[("probe:do_sys_openat2", "flags")]
    assert (st.count, st.low, st.high, st.total) == (5, 0x8000, 0x8004, 5 * 0x8000 + 10)
    rc, out, err = run_cli(["report", "-i", _record(tmp_path, 5)])
    assert rc == 0, err
    assert "lost 4" in out and "5 events" in out
    assert "          5  probe:do_sys_openat2" in out.splitlines()
    assert "          3  ls/4000" in out.splitlines()
    flags = [ln for ln in out.splitlines() if " flags " in ln][0].split()
    assert flags[-3:] == [str(0x8000), f"{0x8002:.2f}", str(0x8004)]


def test_incomplete_recording_is_still_printed_with_a_warning(tmp_path: Path) -> None:
    path = _record(tmp_path, 2, complete=False)
    rc, out, err = run_cli(["script", "-i", path])
    assert rc == 0 and len(out.splitlines()) == 2
    assert "no trailer" in err
    rc, out, _err = run_cli(["report", "-i", path])
    assert "WARNING" in out


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    rc, _out, err = run_cli(["script", "-i", str(tmp_path / "nope.data")])
    assert rc == 1 and "does not exist" in err and "kprobes record" in err


def test_record_event_list_splitting() -> None:
    from kprobes.cli.record import _is_definition, split_events

    assert split_events(["probe:a,sched:sched_switch", "probe:b"]) == ["probe:a", "sched:sched_switch", "probe:b"]
    inline = "p:o do_sys_openat2 filename=+0(%si):string"
    assert split_events([inline, "r:rd,x"]) == [inline, "r:rd,x"]
    assert _is_definition(inline) and _is_definition("r:rd vfs_read")
    assert not _is_definition("probe:do_sys_openat2") and not _is_definition("raw_syscalls:sys_enter")


def test_record_usage_errors() -> None:
    rc, _out, err = run_cli(["record"])
    assert rc == 2 and "-e" in err
    rc, _out, err = run_cli(["record", "-e", "probe:x", "-p", "1", "--", "true"])
    assert rc == 2 and "not both" in err
