from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kprobes.events.model import TraceEvent, UnparsedLine
from kprobes.events.text import FAULT, TextParser, parse_line, parse_text


def ev(line: str, **kw: object) -> TraceEvent:
    out = parse_line(line, **kw)  # type: ignore[arg-type]
    assert isinstance(out, TraceEvent), out
    return out


# --- context columns -------------------------------------------------------------------

@pytest.mark.parametrize(
    "line, comm, pid, cpu, flags, ts",
    [
        ("            bash-5975    [000] .....   287.919947: sched_process_exec: filename=/bin/true pid=1 old_pid=1",
         "bash", 5975, 0, ".....", 287_919_947_000),
        ("  kworker/u8:2-events_unbound-123     [003] d.h1 12345.678901: irq_handler_entry: irq=24 name=eth0",
         "kworker/u8:2-events_unbound", 123, 3, "d.h1", 12_345_678_901_000),
        ("     Web Content-4567    [001] dNh2. 5.000001: sched_wakeup: comm=foo pid=9 prio=120 target_cpu=001",
         "Web Content", 4567, 1, "dNh2.", 5_000_001_000),
        ("           <...>-77      [002] ...1. 1.000001: my_event: x=1",
         "<...>", 77, 2, "...1.", 1_000_001_000),
        ("          <idle>-0       [000] d..2.   287.920790: sched_switch: prev_comm=swapper/0 prev_pid=0",
         "<idle>", 0, 0, "d..2.", 287_920_790_000),
        ("            bash-5975    (   5975) [000] .....   288.031404: my_event: x=1",
         "bash", 5975, 0, ".....", 288_031_404_000),
        ("            bash-5975    (-------) [001] .....   288.031404: my_event: x=1",
         "bash", 5975, 1, ".....", 288_031_404_000),
        ("            bash-5975    (   5975) [000]    288.031513: my_event: x=1",
         "bash", 5975, 0, None, 288_031_513_000),
        ("            true-5988    (   5988) [000]             2: sched_process_exec: filename=/bin/true",
         "true", 5988, 0, None, 2),
        ("            true-5990    [000] ..... 704684701903: sched_process_exec: filename=/bin/true",
         "true", 5990, 0, ".....", 704684701903),
        ("            true-5990    [011] ..... 12.123456789: e: x=1", "true", 5990, 11, ".....", 12_123_456_789),
        ("         python-6160    [001] DBZff   316.730732: genv: (0x7f3beca5d0b0) name=\"x\"",
         "python", 6160, 1, "DBZff", 316_730_732_000),
    ],
)
def test_context_columns(line: str, comm: str, pid: int, cpu: int, flags: object, ts: int) -> None:
    e = ev(line)
    assert (e.comm, e.pid, e.cpu, e.flags, e.timestamp_ns) == (comm, pid, cpu, flags, ts)


def test_comm_that_looks_like_a_pid_column() -> None:
    e = ev("   a-1 b-22-333    [001] ..... 1.000000: e: x=5")
    assert (e.comm, e.pid, e.fields) == ("a-1 b-22", 333, {"x": 5})


# --- probe locations --------------------------------------------------------------------

def test_kprobe_location() -> None:
    e = ev("  cat-42 [001] d.... 10.000001: p_open: (do_sys_openat2+0x0/0x1b0) dfd=-100 flags=0x8000")
    assert e.event == "p_open"
    assert e.location == "do_sys_openat2+0x0/0x1b0" and e.caller is None
    assert e.probe_ip is None
    assert e.fields == {"dfd": -100, "flags": 0x8000}


def test_kretprobe_location_is_function_and_caller_is_return_address() -> None:
    e = ev("  cat-42 [001] d.... 10.000001: r_read: (ksys_read+0x6b/0xf0 <- vfs_read) ret=0x20")
    assert e.location == "vfs_read"
    assert e.caller == "ksys_read+0x6b/0xf0"
    assert e.fields == {"ret": 32}


def test_kprobe_location_in_module() -> None:
    e = ev("  cat-42 [001] d.... 10.000001: p_x: (ext4_file_open+0x0/0x2a0 [ext4]) a=1")
    assert e.location == "ext4_file_open+0x0/0x2a0 [ext4]"
    assert e.fields == {"a": 1}


def test_uprobe_and_uretprobe_addresses() -> None:
    e = ev("  python-6160 [001] DBZff 316.730749: genv: (0x7f3beca5d0b0) name=\"PATH\"")
    assert e.location == "0x7f3beca5d0b0" and e.probe_ip == 0x7F3BECA5D0B0
    r = ev("  python-6125 [001] DBZff 306.918277: genvr: (0x7fbc9ae50a5f <- 0x7fbc9ae5d0b0) ret=0x7fffbd163bd7")
    assert r.probe_ip == 0x7FBC9AE5D0B0 and r.ret_ip == 0x7FBC9AE50A5F
    assert r.location == "0x7fbc9ae5d0b0" and r.caller == "0x7fbc9ae50a5f"
    assert r.fields == {"ret": 0x7FFFBD163BD7}


def test_probe_without_fields() -> None:
    e = ev("  cat-42 [001] d.... 10.000001: p_open: (do_sys_openat2+0x0/0x1b0)")
    assert e.location == "do_sys_openat2+0x0/0x1b0" and e.fields == {}


# --- field values -----------------------------------------------------------------------

def test_untyped_values() -> None:
    e = ev(
        "  python-6160 [001] DBZff 316.730749: genv: (0x7f3beca5d0b0) name=\"PATH\" nm2=\"a b=c\""
        " raw=0x7f3bec916b10 arr={80,65,84} bad=0 neg=-14 ch='P' badstr=(fault) sym=do_sys_open+0x0/0x10"
        " empty=\"\" arr0={}"
    )
    assert e.fields == {
        "name": "PATH", "nm2": "a b=c", "raw": 0x7F3BEC916B10, "arr": (80, 65, 84), "bad": 0,
        "neg": -14, "ch": "P", "badstr": FAULT, "sym": "do_sys_open+0x0/0x10", "empty": "", "arr0": (),
    }


def test_string_with_quote_and_spaces_kept_raw() -> None:
    # The kernel prints string bytes unescaped: the parser keeps them as they are.
    e = ev('  p-1 [000] ..... 1.000000: e: s="say "hi" x=2" n=3')
    assert e.fields == {"s": 'say "hi" x=2', "n": 3}


def test_typed_values() -> None:
    types = {"e": {"a": "u32", "b": "s64", "c": "x64", "s": "string", "ch": "char",
                   "arr": "x8[3]", "sym": "symbol", "f": "string", "n": "u64"}}
    e = ev('  p-1 [000] ..... 1.000000: e: (0x10) a=4000000000 b=-5 c=0xff s="12" ch=\'A\''
           ' arr={0x1,0x2,0xff} sym=foo+0x4/0x10 f=(fault) n=(fault)', types_by_event=types)
    assert e.fields == {"a": 4_000_000_000, "b": -5, "c": 255, "s": "12", "ch": 65,
                        "arr": (1, 2, 255), "sym": "foo+0x4/0x10", "f": FAULT, "n": FAULT}
    untyped = ev('  p-1 [000] ..... 1.000000: e: (0x10) s="12"')
    assert untyped.fields == {"s": "12"}


def test_typed_split_only_at_declared_names() -> None:
    types = {"e": {"path": "string", "mode": "u32"}}
    line = '  p-1 [000] ..... 1.000000: e: (0x10) path="/tmp/a b=1" mode=420'
    assert ev(line, types_by_event=types).fields == {"path": "/tmp/a b=1", "mode": 420}


def test_sched_switch_separator_dropped() -> None:
    e = ev("  apt-get-5864 [001] d..2. 287.920467: sched_switch: prev_comm=apt-get prev_pid=5864"
           " prev_prio=120 prev_state=R+ ==> next_comm=Web Content next_pid=5978 next_prio=120")
    assert e.fields == {"prev_comm": "apt-get", "prev_pid": 5864, "prev_prio": 120, "prev_state": "R+",
                        "next_comm": "Web Content", "next_pid": 5978, "next_prio": 120}


def test_free_form_tracepoint_text() -> None:
    e = ev("  kworker-77 [001] ...1. 1.000001: block_rq_issue: 8,0 W 4096 () 123 + 8 [kworker]")
    assert e.fields == {"_text": "8,0 W 4096 () 123 + 8 [kworker]"}
    bare = ev("  kworker-77 [001] ...1. 1.000001: my_marker:")
    assert bare.fields == {}


def test_syscalls() -> None:
    enter = ev("  bash-5975 [000] ..... 287.919947: sys_openat(dfd: 0xffffff9c, filename: 0x56417f8fe730,"
               " flags: 0x241, mode: 0x1b6)")
    assert (enter.group, enter.event) == ("syscalls", "sys_enter_openat")
    assert enter.fields == {"dfd": 0xFFFFFF9C, "filename": 0x56417F8FE730, "flags": 0x241, "mode": 0x1B6}
    old = ev("  bash-5975 [000] ..... 287.919947: sys_read(fd: 3, buf: 7ffd1234, count: 400)")
    assert old.fields == {"fd": 3, "buf": 0x7FFD1234, "count": 0x400}
    noargs = ev("  bash-5975 [000] ..... 287.919947: sys_getpid()")
    assert (noargs.event, noargs.fields) == ("sys_enter_getpid", {})
    ok = ev("  true-5978 [000] ..... 287.922064: sys_openat -> 0x3")
    assert (ok.event, ok.fields) == ("sys_exit_openat", {"ret": 3})
    err = ev("  true-5978 [000] ..... 287.922064: sys_openat -> 0xfffffffffffffffe")
    assert err.fields == {"ret": -2}


# --- non-events ---------------------------------------------------------------------------

def test_comments_and_blank_lines_are_skipped() -> None:
    assert parse_line("# tracer: nop") is None
    assert parse_line("#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION") is None
    assert parse_line("##### CPU 2 buffer started ####") is None
    assert parse_line("   ") is None


def test_garbage_is_reported_not_dropped() -> None:
    out = parse_line("this is not a trace line")
    assert isinstance(out, UnparsedLine) and out.text == "this is not a trace line"
    out2 = parse_line("  bash-1 [000] ..... 1.000000: do_sys_open <-do_sys_openat2")
    assert isinstance(out2, UnparsedLine)


def test_lost_events_line_counted() -> None:
    p = TextParser()
    got = p.feed(b"CPU:3 [LOST 12 EVENTS]\nCPU:3 [LOST 5 EVENTS]\nCPU:0 [LOST 1 EVENTS]\n")
    assert all(isinstance(g, UnparsedLine) and g.reason.startswith("lost events") for g in got)
    assert p.lost_events == {3: 17, 0: 1}


# --- streaming ----------------------------------------------------------------------------

SAMPLE = (
    "# tracer: nop\n"
    "            bash-5975    [000] .....   287.919947: sys_openat(dfd: 0xffffff9c, filename: 0x1, flags: 0x241, mode: 0x1b6)\n"
    "         apt-get-5864    [001] d..2.   287.920467: sched_switch: prev_comm=apt-get prev_pid=5864 prev_prio=120 prev_state=R ==> next_comm=bash next_pid=5978 next_prio=120\n"
    "          python-6160    [001] DBZff   316.730749: genv: (0x7f3beca5d0b0) name=\"P\u00e9TH\" arr={80,65,84} bad=(fault)\n"
    "garbage line\n"
    "            true-5978    [000] .....   287.922064: sys_openat -> 0x3\n"
)


def test_feed_handles_partial_lines_and_flush() -> None:
    whole = parse_text(SAMPLE)
    assert len(whole) == 5
    p = TextParser()
    data = SAMPLE.encode()
    got: list[TraceEvent | UnparsedLine] = []
    for i in range(0, len(data), 7):
        got.extend(p.feed(data[i:i + 7]))
    got.extend(p.flush())
    assert tuple(got) == whole
    # A last line without newline only appears on flush.
    p2 = TextParser()
    assert p2.feed(b"  a-1 [000] ..... 1.000000: e: x=1") == []
    assert [e.fields for e in p2.flush() if isinstance(e, TraceEvent)] == [{"x": 1}]
    assert p2.flush() == []


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(SAMPLE.encode())), max_size=8))
def test_feed_any_split_equals_whole(cuts: list[int]) -> None:
    data = SAMPLE.encode()
    points = sorted(set(cuts)) + [len(data)]
    p = TextParser()
    got: list[TraceEvent | UnparsedLine] = []
    prev = 0
    for c in points:
        got.extend(p.feed(data[prev:c]))
        prev = c
    got.extend(p.flush())
    assert tuple(got) == parse_text(SAMPLE)


@settings(max_examples=40, deadline=None)
@given(
    comm=st.text(alphabet="abcXYZ -/:_<>.0123456789", min_size=1, max_size=15).filter(
        lambda s: s.strip() == s and not s[-1].isdigit() and "-" not in s[-1:]),
    pid=st.integers(min_value=0, max_value=4_194_304),
    cpu=st.integers(min_value=0, max_value=511),
    usecs=st.integers(min_value=0, max_value=10**12),
    value=st.integers(min_value=-(2**63), max_value=2**64 - 1),
)
def test_rendered_lines_round_trip(comm: str, pid: int, cpu: int, usecs: int, value: int) -> None:
    line = f"{comm:>16}-{pid:<7d} [{cpu:03d}] d..1. {usecs // 10**6:5d}.{usecs % 10**6:06d}: ev: v={value} h={value & 0xffff:#x}"
    e = ev(line)
    assert (e.comm, e.pid, e.cpu, e.timestamp_ns) == (comm, pid, cpu, usecs * 1000)
    assert e.fields == {"v": value, "h": value & 0xFFFF}
