"""bpftrace programs on the tracefs engine, on this host's kernel (uprobes, tracepoints, timers).

Each test drives a known workload and checks values: how many atoi() calls
with which argument, how many openat() of one process with which flags, how
many interval ticks.  Every run must leave no session behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator

import pytest

from tests.helpers import run_cli, session_leftovers

pytestmark = pytest.mark.host

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
ATOI = "import ctypes, sys; l = ctypes.CDLL('libc.so.6'); [l.atoi(a.encode()) for a in sys.argv[1:]]"


def atoi_cmd(*values: str) -> str:
    return f"{sys.executable} -c \"{ATOI}\" " + " ".join(values)


def map_lines(out: str, name: str) -> Dict[str, int]:
    """``@name[key]: N`` lines as {key: N}."""
    got: Dict[str, int] = {}
    for line in out.splitlines():
        if line.startswith(f"@{name}[") and "]: " in line:
            key, _, value = line[len(name) + 2:].rpartition("]: ")
            got[key] = int(value)
    return got


def test_uprobe_counts_by_string_argument() -> None:
    libc = LIBC if os.path.exists(LIBC) else "libc"
    prog = (f"uprobe:{libc}:atoi {{ @[str(arg0)] = count(); }}\n"
            f"uretprobe:{libc}:atoi {{ @ret = sum(retval); @n = count(); }}")
    rc, out, err = run_cli(["--engine", "tracefs", "-e", prog, "-c", atoi_cmd("11", "22", "22", "-5", "kp7")])
    assert rc == 0, err
    assert out.startswith("Attaching 2 probes...\n")
    assert map_lines(out, "") == {"11": 1, "22": 2, "-5": 1, "kp7": 1}
    assert "@n: 5\n" in out
    assert f"@ret: {11 + 22 + 22 - 5 + 0}\n" in out
    assert session_leftovers() == []


def test_uretprobe_signed_cast_histogram_json(tmp_path: Path) -> None:
    libc = LIBC if os.path.exists(LIBC) else "libc"
    prog = f"uretprobe:{libc}:atoi {{ @h = hist((int32)retval); @l = lhist((int32)retval, 0, 100, 10); }}"
    out_file = tmp_path / "out.json"
    rc, out, err = run_cli(["--engine", "tracefs", "-f", "json", "-o", str(out_file), "-e", prog,
                            "-c", atoi_cmd("-3", "5", "40", "41", "99")])
    assert rc == 0, err
    records = [json.loads(ln) for ln in out_file.read_text().splitlines() if ln.strip()]
    assert records[0] == {"type": "attached_probes", "data": {"probes": 1}}
    hist = next(r for r in records if r["type"] == "hist" and "@h" in r["data"])["data"]["@h"]
    assert {"max": -1, "count": 1} in hist  # the negative bucket holds -3
    assert {"min": 32, "max": 63, "count": 2} in hist
    lhist = next(r for r in records if r["type"] == "hist" and "@l" in r["data"])["data"]["@l"]
    assert {"min": 40, "max": 49, "count": 2} in lhist


@pytest.fixture()
def opener(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, int]]:
    """A child that opens ``marker`` N times when it gets SIGUSR1, then creates ``marker.done``."""
    marker = tmp_path / "marker"
    marker.write_text("x")
    n = 7
    code = ("import os, signal, sys\n"
            "signal.signal(signal.SIGUSR1, lambda *a: None)\n"
            "sys.stdout.write('ready\\n'); sys.stdout.flush()\n"
            "signal.pause()\n"
            f"for _ in range({n}):\n"
            f"    os.close(os.open({str(marker)!r}, os.O_RDONLY))\n"
            f"os.mkdir({str(marker) + '.done'!r})\n"
            "signal.pause()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    try:
        yield proc, marker, n
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _trigger(pid: int, marker: Path) -> str:
    """-c command: start the opener, wait until it is done (it stays alive: no exit noise)."""
    return f"kill -USR1 {pid}; while [ ! -d {marker}.done ]; do sleep 0.05; done"


def test_tracepoint_pid_predicate_and_fields(opener: tuple[subprocess.Popen[bytes], Path, int]) -> None:
    proc, marker, n = opener
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
    prog = (f"tracepoint:syscalls:sys_enter_openat /pid == {proc.pid}/ {{ @[args.flags] = count(); }}\n"
            f"tracepoint:syscalls:sys_exit_openat /pid == {proc.pid} && args.ret >= 0/ {{ @ok = count(); }}")
    rc, out, err = run_cli(["--engine", "tracefs", "-e", prog, "-c", _trigger(proc.pid, marker)])
    assert rc == 0, err
    assert map_lines(out, "") == {str(flags): n}
    assert f"@ok: {n}\n" in out
    assert session_leftovers() == []


def test_dash_p_restricts_events_to_the_process(opener: tuple[subprocess.Popen[bytes], Path, int]) -> None:
    proc, marker, n = opener
    prog = "tracepoint:syscalls:sys_enter_openat { @[pid] = count(); }"
    rc, out, err = run_cli(["--engine", "tracefs", "-p", str(proc.pid), "-e", prog, "-c", _trigger(proc.pid, marker)])
    assert rc == 0, err
    assert map_lines(out, "") == {str(proc.pid): n}


def test_begin_interval_end_and_exit() -> None:
    prog = ('BEGIN { printf("begin\\n"); @t0 = nsecs; }\n'
            "interval:ms:200 { @ticks = count(); if (@ticks == 3) { exit(); } }\n"
            'END { printf("end %d %d\\n", @ticks, (nsecs - @t0) / 100000000); }')
    t0 = time.monotonic()
    rc, out, err = run_cli(["--engine", "tracefs", "-e", prog])
    took = time.monotonic() - t0
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[:2] == ["Attaching 3 probes...", "begin"]
    end = next(ln for ln in lines if ln.startswith("end "))
    ticks, tenths = (int(x) for x in end.split()[1:])
    assert ticks == 3 and 5 <= tenths <= 30, end
    assert "@ticks: 3" in lines
    assert 0.5 <= took < 20


def test_duration_option_ends_the_program() -> None:
    rc, out, err = run_cli(["--engine", "tracefs", "--duration", "0.5", "-e", "interval:ms:100 { @n = count(); }"])
    assert rc == 0, err
    n = int(next(ln for ln in out.splitlines() if ln.startswith("@n: ")).split()[1])
    assert 2 <= n <= 6


def test_sigterm_during_a_program_cleans_up(tmp_path: Path) -> None:
    script = tmp_path / "long.bt"
    script.write_text("interval:s:60 { exit(); }\n")
    proc = subprocess.Popen([sys.executable, "-m", "kprobes", str(script)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"Attaching 1 probe...\n"
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert session_leftovers() == []
