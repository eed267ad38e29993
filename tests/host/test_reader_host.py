"""The raw reader on the host's tracefs (uprobes, tracepoints): raw == text, exact loss counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import List, Tuple

import pytest

import kprobes
from kprobes.backends.tracefs.ledger import read_cpu_stats
from kprobes.events.model import TraceEvent
from kprobes.events.text import parse_text
from tests.helpers import run_cli, session_leftovers

pytestmark = pytest.mark.host

ATOI = "import ctypes, sys; [ctypes.CDLL('libc.so.6').atoi(a.encode()) for a in sys.argv[1:]]"
# sched_switch prev_state is rendered by the print format (R+, S...), not the value
RENDERED = {("sched_switch", "prev_state"), ("sched_process_exit", "group_dead")}


def require(reason: str) -> None:
    if os.environ.get("KPROBES_REQUIRE_KERNEL") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _host() -> None:
    if os.geteuid() != 0:
        require("needs root (tracefs instances)")
    if not os.path.exists("/sys/kernel/tracing/uprobe_events"):
        require("no uprobe_events on this kernel")


def key(e: TraceEvent) -> Tuple[object, ...]:
    return ((e.timestamp_ns + 500) // 1000 * 1000 if e.timestamp_ns % 1000 else e.timestamp_ns,
            e.cpu, e.pid, e.comm, e.event, e.location, e.caller)


def test_raw_and_text_agree_on_one_run() -> None:
    markers = [f"{i}{os.getpid()}" for i in range(1, 6)]
    # event_comm off: the instance's text takes comms from saved_cmdlines, so the raw
    # reader must too for the two to agree (and no hidden __comm fetch in the text)
    with kprobes.Session(exclude_self=False, event_comm=False) as s:
        s.add("p:atoi libc:atoi s=str(arg1) first=+0(arg1):u8 raw=arg1:x64")
        s.add("r:atoiret libc:atoi ret=retval:s32")
        s.add_tracepoint("sched:sched_process_exec")
        s.add_tracepoint("sched:sched_process_exit", filter=f"common_pid != {os.getpid()}")
        subprocess.run([sys.executable, "-c", ATOI, *markers], check=True)
        for label in list(s.probes):
            s.enable(label, False)
        assert s.fs is not None
        text = [e for e in parse_text(s.fs.read(f"{s.instance}/trace")) if isinstance(e, TraceEvent)]
        raw = list(s.events(duration=0))
        assert s.reader_kind == "raw", s.reader_fallback
    atois = [e for e in raw if e.event == "atoi"]
    assert [e.fields["s"] for e in atois] == markers
    assert [e.fields["first"] for e in atois] == [ord(m[0]) for m in markers]
    assert [e.fields["ret"] for e in raw if e.event == "atoiret"] == [int(m) for m in markers]
    assert any(e.event == "sched_process_exec" and e.group == "sched" for e in raw)
    assert len(raw) == len(text) and len(raw) >= 12, (raw, text)
    for a, b in zip(raw, text):
        assert key(a) == key(b), (a, b)
        common = {k for k in set(a.fields) & set(b.fields) if (a.event, k) not in RENDERED}
        assert common or not (a.fields or b.fields), (a, b)
        assert {k: a.fields[k] for k in common} == {k: b.fields[k] for k in common}, (a, b)
        assert a.probe_ip == b.probe_ip and a.ret_ip == b.ret_ip
    assert session_leftovers() == []


def _overflow(reader: str, n: int) -> Tuple[List[TraceEvent], kprobes.Session, dict]:  # type: ignore[type-arg]
    s = kprobes.Session(buffer_size_kb=16, exclude_self=False, reader=reader)
    with s:
        s.add_tracepoint("syscalls:sys_enter_getppid", filter=f"common_pid == {os.getpid()}")
        for _ in range(n):
            os.getppid()
        s.enable("sys_enter_getppid", False)
        assert s.fs is not None
        kernel = {cpu: st.overrun + st.commit_overrun + (st.dropped_events or 0)
                  for cpu, st in read_cpu_stats(s.fs, s.instance).items()}
        events = list(s.events(duration=0))
    return events, s, kernel


@pytest.mark.parametrize("reader", ["raw", "text"])
def test_overflow_counted_exactly(reader: str) -> None:
    n = 40000
    events, s, kernel = _overflow(reader, n)
    ledger = s.ledger
    assert s.reader_kind == reader
    assert sum(kernel.values()) > 0, "a 16 KiB buffer should overflow"
    # the ledger's count is the kernel's (a fresh instance starts at zero) ...
    assert {c: x.lost for c, x in ledger.cpus.items() if x.lost} == {c: v for c, v in kernel.items() if v}
    assert ledger.ring_buffer_lost == sum(kernel.values())
    # ... and together with what was delivered it accounts for every call exactly
    assert len(events) + ledger.total_lost == n
    assert ledger.probes["sys_enter_getppid"].delivered == len(events)
    if reader == "text":
        assert ledger.text_lost == sum(kernel.values())
    else:
        assert ledger.pages_flagged >= 1
    assert "events lost" in ledger.report()


def test_overflow_loss_is_error_raises() -> None:
    with kprobes.Session(buffer_size_kb=16, exclude_self=False, loss_is_error=True) as s:
        s.add_tracepoint("syscalls:sys_enter_getppid", filter=f"common_pid == {os.getpid()}")
        for _ in range(20000):
            os.getppid()
        with pytest.raises(kprobes.KprobesError) as ei:
            for _ in s.events(duration=0):
                pass
    assert ei.value.exit_code == 3
    assert s.ledger.total_lost > 0


def test_cli_stats_json_and_loss_is_error() -> None:
    n = 300000
    cmd = f"dd if=/dev/zero of=/dev/null bs=1 count={n} 2>/dev/null"
    rc, out, err = run_cli(["trace", "--json", "--stats", "--loss-is-error", "--buffer-size", "4",
                            "--filter", 'count == 1 && comm == "dd"', "-c", cmd,
                            "t:syscalls:sys_enter_read"])
    recs = [json.loads(line) for line in out.splitlines()]
    summary = recs[-1]
    assert summary["type"] == "summary", recs[-3:]
    events = recs[:-1]
    assert all(r["event"] == "syscalls/sys_enter_read" for r in events)
    assert len(events) + summary["lost"] == n, summary
    assert summary["probes"]["sys_enter_read"]["delivered"] == len(events)
    assert summary["lost"] > 0, "a 4 KiB buffer at full dd speed should overflow"
    assert rc == 3, err
    assert f"kprobes: {summary['lost']} events lost: ring buffer overrun on CPU" in err
    assert "--loss-is-error" in err
    assert "sys_enter_read" in err.split("probe")[1]  # the --stats table
    assert session_leftovers() == []


def test_cli_text_reader_and_clean_exit() -> None:
    cmd = f"{sys.executable} -c \"{ATOI}\" 4711"
    rc, out, err = run_cli(["trace", "--reader", "text", "--json", "--loss-is-error", "-c", cmd,
                            "p:atoi libc:atoi s=str(arg1)"])
    assert rc == 0, err
    recs = [json.loads(line) for line in out.splitlines()]
    assert any(r["fields"].get("s") == "4711" for r in recs)
    assert all("type" not in r for r in recs)  # no loss, no --stats: no summary record
    assert "events lost" not in err
