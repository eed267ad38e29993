"""Cleanup scenarios shared by the host (uprobes) and kernel (kprobes) suites."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import List

from tests.helpers import ROOT, run_cli, session_leftovers

CHILD = os.path.join(ROOT, "tests", "session_child.py")


def start_child(mode: str, defs: List[str]) -> "tuple[subprocess.Popen[str], str]":
    p = subprocess.Popen([sys.executable, CHILD, mode, *defs], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert p.stdout is not None
    line = p.stdout.readline()
    if not line.startswith("armed"):
        p.kill()
        raise AssertionError(f"child did not arm: {line!r} {p.stderr.read() if p.stderr else ''}")
    group = line.split()[1]
    return p, group


def check_signal_cleans(sig: int, defs: List[str]) -> None:
    p, group = start_child("wait", defs)
    assert session_leftovers(group), "the child should have armed probes"
    p.send_signal(sig)
    try:  # communicate, not wait: a child blocked on a full stderr pipe would look hung
        _out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        _out, err = p.communicate()
        raise AssertionError(f"child still running 60 s after {signal.Signals(sig).name}; "
                             f"its stderr: {err[-3000:]!r}") from None
    assert p.returncode != 0 or sig == signal.SIGINT, err
    assert session_leftovers(group) == []


def check_handler_exception_cleans(defs: List[str], trigger) -> None:  # type: ignore[no-untyped-def]
    p, group = start_child("raise", defs)
    trigger()
    p.wait(60)
    err = p.stderr.read() if p.stderr else ""
    assert "handler failed on purpose" in err
    assert p.returncode != 0
    assert session_leftovers(group) == []


def check_sigkill_then_gc(defs: List[str]) -> None:
    p, group = start_child("wait", defs)
    p.kill()
    p.wait(30)
    assert session_leftovers(group), "SIGKILL cannot clean up: leftovers expected before gc"
    rc, out, err = run_cli(["gc"])
    assert rc == 0, err
    assert group in out
    assert session_leftovers(group) == []


def check_sigkill_then_next_session(defs: List[str]) -> None:
    import kprobes

    p, group = start_child("wait", defs)
    p.kill()
    p.wait(30)
    assert session_leftovers(group)
    with kprobes.Session() as s:
        assert s.reaped is not None
        assert any(group in e for e in s.reaped.removed_events + s.reaped.removed_instances)
    assert session_leftovers(group) == []
