"""``comm`` is the task's name when the event happened, not when it was read.

A small C program makes 10 getppid() calls as ``oldname``, renames itself with
prctl(PR_SET_NAME, "NEWNAME") and makes 25 more.  The language engine's
``comm`` (an event probe's ``$comm`` where the kernel has them; on this host,
tracepoints without event probes, the task:task_rename/task_newtask stream)
and ``kprobes trace``'s printed comm (a hidden ``$comm`` fetch for uprobes,
the rename stream for tracepoints) must tell the two phases apart exactly.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import List

import pytest

from tests.helpers import ROOT, session_leftovers

PROG = r"""
#include <sys/prctl.h>
#include <unistd.h>
__attribute__((noinline)) void tick(int i) { __asm__ volatile("" :: "r"(i)); getppid(); }
int main(void) {
    for (int i = 0; i < 10; i++) tick(i);
    prctl(PR_SET_NAME, "NEWNAME", 0, 0, 0);
    for (int i = 0; i < 25; i++) tick(i);
    return 0;
}
"""


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to build the renaming program")
    d = tmp_path_factory.mktemp("comm")
    (d / "prog.c").write_text(PROG)
    subprocess.run(["gcc", "-O1", "-o", str(d / "oldname"), str(d / "prog.c")], check=True)
    return d / "oldname"


def _cli(args: List[str]) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run([sys.executable, "-m", "kprobes.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_program_predicate_on_comm_counts_the_renamed_phase_exactly(prog: Path) -> None:
    program = 'tracepoint:syscalls:sys_enter_getppid /comm == "NEWNAME"/ { @ = count(); }'
    counts = []
    for _ in range(10):
        r = _cli(["--engine", "tracefs", "-e", program, "-c", str(prog)])
        assert r.returncode == 0, r.stderr
        counts.append(r.stdout.strip().splitlines()[-1])
    assert counts == ["@: 25"] * 10


def test_program_comm_keys_split_at_the_rename(prog: Path) -> None:
    r = _cli(["--engine", "tracefs", "-f", "json", "-e", "tracepoint:syscalls:sys_enter_getppid { @[comm] = count(); }",
              "-c", str(prog)])
    assert r.returncode == 0, r.stderr
    maps = [json.loads(line) for line in r.stdout.splitlines() if '"type": "map"' in line]
    data = maps[-1]["data"]["@"]
    assert data.get("oldname") == 10 and data.get("NEWNAME") == 25, data


def _trace_comms(prog: Path, definition: str) -> List[str]:
    r = _cli(["trace", "--json", "-c", str(prog), definition])
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert all("__comm" not in rec["fields"] for rec in recs)  # the hidden fetch stays hidden
    by_pid = Counter(rec["pid"] for rec in recs if rec["comm"] in ("oldname", "NEWNAME"))
    assert len(by_pid) == 1, recs
    pid = next(iter(by_pid))
    return [rec["comm"] for rec in recs if rec["pid"] == pid]


def test_trace_prints_the_comm_at_event_time_uprobe(prog: Path) -> None:
    comms = _trace_comms(prog, f"p:tick {prog}:tick")
    assert comms == ["oldname"] * 10 + ["NEWNAME"] * 25
    assert session_leftovers() == []


def test_trace_prints_the_comm_at_event_time_tracepoint(prog: Path) -> None:
    comms = _trace_comms(prog, "t:syscalls:sys_enter_getppid")
    assert comms == ["oldname"] * 10 + ["NEWNAME"] * 25
