"""Sessions on the host kernel with uprobes: API, CLI, cleanup, isolation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

import kprobes
from tests import cleanup_cases as cc
from tests.helpers import run_cli, session_leftovers, tracefs

ATOI = "import ctypes, sys; ctypes.CDLL('libc.so.6').atoi(sys.argv[1].encode())"
DEFS = ["p:atoi libc:atoi s=str(arg1)", "r:atoiret libc:atoi ret=retval:s32"]


def call_atoi(value: str) -> None:
    subprocess.run([sys.executable, "-c", ATOI, value], check=True)


def test_api_uprobe_and_uretprobe_by_libc_symbol() -> None:
    marker = f"4242{os.getpid() % 1000}"
    with kprobes.Session() as s:
        for d in DEFS:
            s.add(d)
        call_atoi(marker)
        got = [ev for ev in s.events(duration=0.3)]
    entries = [e for e in got if e.event == "atoi" and e.fields.get("s") == marker]
    rets = [e for e in got if e.event == "atoiret" and e.fields.get("ret") == int(marker)]
    assert len(entries) == 1, got
    assert len(rets) == 1, got
    assert entries[0].pid == rets[0].pid
    assert session_leftovers() == []


def test_api_handlers() -> None:
    seen: list = []
    with kprobes.Session() as s:
        s.add(DEFS[1])

        @s.on("atoiret")
        def h(ev: kprobes.TraceEvent) -> None:
            seen.append(ev.fields["ret"])

        call_atoi("-77")
        s.run(duration=0.3)
    assert -77 in seen


def test_cli_trace_with_command_json() -> None:
    cmd = f"{sys.executable} -c \"{ATOI}\" 9876"
    rc, out, err = run_cli(["trace", "--json", "-c", cmd, *DEFS])
    assert rc == 0, err
    recs = [json.loads(line) for line in out.splitlines()]
    assert {"probe": "atoi", "s": "9876"} in [
        {"probe": r["probe"], "s": r["fields"].get("s")} for r in recs
    ]
    assert any(r["probe"] == "atoiret" and r["fields"]["ret"] == 9876 for r in recs)
    assert session_leftovers() == []


def test_cli_trace_text_output() -> None:
    cmd = f"{sys.executable} -c \"{ATOI}\" 31337"
    rc, out, err = run_cli(["trace", "-c", cmd, DEFS[0]])
    assert rc == 0, err
    assert any('s="31337"' in line and " atoi: " in line for line in out.splitlines()), out


def test_two_sessions_see_only_their_own_events() -> None:
    with kprobes.Session() as a, kprobes.Session() as b:
        assert a.group != b.group  # same process: distinct names
        a.add("p:mine libc:atoi s=str(arg1)")
        b.add("r:theirs libc:atoi ret=retval:s32")
        call_atoi("555")
        ea = list(a.events(duration=0.2))
        eb = list(b.events(duration=0.2))
    assert ea and all(e.event == "mine" for e in ea)
    assert eb and all(e.event == "theirs" for e in eb)


def test_foreign_top_level_event_untouched() -> None:
    root = tracefs()
    grp = f"foreign{os.getpid()}"
    fd = os.open(f"{root}/uprobe_events", os.O_WRONLY | os.O_APPEND)
    os.write(fd, f"p:{grp}/ev /bin/true:0x0\n".encode())
    os.close(fd)
    try:
        with kprobes.Session() as s:
            s.add(DEFS[0])
        rc, out, _ = run_cli(["gc"])
        with open(f"{root}/uprobe_events") as f:
            assert f"{grp}/ev" in f.read()
        with open(f"{root}/events/{grp}/ev/enable") as f:
            assert f.read().strip() == "0"
    finally:
        fd = os.open(f"{root}/uprobe_events", os.O_WRONLY | os.O_APPEND)
        os.write(fd, f"-:{grp}/ev\n".encode())
        os.close(fd)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_cleans_up(sig: int) -> None:
    cc.check_signal_cleans(sig, DEFS)


def test_handler_exception_cleans_up() -> None:
    cc.check_handler_exception_cleans(DEFS, lambda: call_atoi("1"))


def test_sigkill_then_gc() -> None:
    cc.check_sigkill_then_gc(DEFS)


def test_sigkill_then_next_session_reaps() -> None:
    cc.check_sigkill_then_next_session(DEFS)
