"""The BPF engine (``--engine bpf``) on this host's kernel: tracepoints and uprobes.

Each program runs on a known workload with both engines; the outputs must be
byte-identical (the tracefs engine is checked against bpftrace elsewhere), and
the values are checked on their own too.  Nothing of ours may stay loaded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest

from tests.conftest import require
from tests.helpers import run_cli

pytestmark = pytest.mark.host

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
ATOI = "import ctypes, sys; l = ctypes.CDLL('libc.so.6'); [l.atoi(a.encode()) for a in sys.argv[1:]]"
GETPPID = ("import ctypes, os, sys; ctypes.CDLL(None).prctl(15, b'kpbpfwork', 0, 0, 0); "
           "[os.getppid() for _ in range(int(sys.argv[1]))]")


def _bpf_or_skip() -> None:
    if os.geteuid() != 0:
        require("BPF engine tests need root")
    if not os.path.exists("/sys/kernel/tracing/events/syscalls/sys_enter_getppid/id"):
        require("no syscalls:sys_enter_getppid tracepoint (CONFIG_FTRACE_SYSCALLS)")


def _ours() -> List[str]:
    from kprobes.backends.bpf import prog_ids, prog_info_by_id

    names = []
    for i in prog_ids():
        info = prog_info_by_id(i)
        if info is not None and info.name.startswith("kp") and "_" in info.name[2:5]:
            names.append(info.name)
    return names


def both(args: List[str]) -> Tuple[str, str]:
    """Run ``args`` with both engines; returns (tracefs output, bpf output)."""
    rc1, out1, err1 = run_cli(["--engine", "tracefs", *args])
    assert rc1 == 0, err1
    rc2, out2, err2 = run_cli(["--engine", "bpf", *args])
    assert rc2 == 0, err2
    return out1, out2


def test_tracepoint_aggregations_match_the_tracefs_engine() -> None:
    _bpf_or_skip()
    before = _ours()
    prog = ('tracepoint:syscalls:sys_enter_getppid /comm == "kpbpfwork"/ {'
            ' @[comm, pid > 0] = count(); @l = lhist(5, 0, 100, 10); @h = hist(17);'
            ' @s = stats(5); @sum = sum(2); @mn = min(-4); @a = avg(7);'
            ' printf("%s %d %s %x\\n", comm, pid > 1, probe, 255);'
            ' $x = 7; $x += 3; @v = $x * 2 - 30 / 4; @c = @c + 1; @inc++;'
            ' @div = (0 - 7) / 2; @sh = (0 - 16) >> 60; @cmp = (0 - 1) < 1; @ucmp = (uint64)(0 - 1) > 1;'
            ' @t[tid % 1, "x"] = sum(3); @cast = (int8)200 + (uint8)300; }')
    cmd = f"{sys.executable} -c \"{GETPPID}\" 9"
    tr, bp = both(["-c", cmd, "-e", prog])
    assert tr == bp
    assert "@[kpbpfwork, 1]: 9\n" in bp and "@c: 9\n" in bp and "@inc: 9\n" in bp
    assert "@div: 9223372036854775804\n" in bp and "@sh: 15\n" in bp
    assert "@ucmp: 1\n" in bp and "@cast: 18446744073709551604\n" in bp
    assert bp.count("kpbpfwork 1 tracepoint:syscalls:sys_enter_getppid ff\n") == 9
    assert _ours() == before


def test_uprobe_string_keys_and_uretprobe_json() -> None:
    _bpf_or_skip()
    libc = LIBC if os.path.exists(LIBC) else "libc"
    prog = (f"uprobe:{libc}:atoi {{ @[str(arg0)] = count(); @k[str(arg0, 1), tid > 0] = count(); }}\n"
            f"uretprobe:{libc}:atoi {{ @ret = sum(retval); @h = hist((int32)retval);"
            " @l = lhist((int32)retval, 0, 100, 10); }")
    cmd = f"{sys.executable} -c \"{ATOI}\" 11 22 22 -5 kp7"
    tr, bp = both(["-c", cmd, "-e", prog])
    assert tr == bp
    assert "@[22]: 2\n" in bp and "@[kp7]: 1\n" in bp and "@k[2, 1]: 2\n" in bp
    assert f"@ret: {11 + 22 + 22 - 5}\n" in bp
    trj, bpj = both(["-f", "json", "-c", cmd, "-e", prog])
    assert trj == bpj
    docs = [json.loads(line) for line in bpj.splitlines() if line.strip()]
    hist = [d for d in docs if d.get("type") == "hist"]
    assert hist and "@h" in hist[0]["data"]


def test_begin_interval_end_and_exit(tmp_path: Path) -> None:
    _bpf_or_skip()
    prog = ('BEGIN { printf("start\\n"); @b = 5; }'
            ' tracepoint:syscalls:sys_enter_getppid /comm == "kpbpfwork"/ { @n = count(); @b += 1;'
            ' if (@b == 8) { printf("eight %s\\n", comm); exit(); } }'
            ' END { printf("end\\n"); }')
    cmd = f"{sys.executable} -c \"{GETPPID}\" 20"
    rc, out, err = run_cli(["--engine", "bpf", "-c", cmd, "-e", prog])
    assert rc == 0, err
    assert out.startswith("Attaching 3 probes...\nstart\neight kpbpfwork\nend\n"), out
    # exit() is asynchronous, as in bpftrace: events until the links are closed still count
    b = int(out.split("@b: ")[1].split()[0])
    n = int(out.split("@n: ")[1].split()[0])
    assert 8 <= b <= 25 and b - n == 5 and out.count("eight") == 1


def test_dry_run_lists_maps_and_instructions_with_source_lines() -> None:
    prog = 'tracepoint:syscalls:sys_enter_getppid /pid > 1/\n{ @[comm] = count(); }'
    rc, out, err = run_cli(["--engine", "bpf", "--dry-run", "-e", prog])
    assert rc == 0, err
    assert "map @: PERCPU_HASH key 16 B (str[16]), value 8 B (count)" in out
    assert "call bpf_get_current_comm#16" in out and "call bpf_map_lookup_elem#1" in out
    assert "; 2: { @[comm] = count(); }" in out
    assert out.rstrip().endswith("attach: 1 probes")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signal_ends_the_program_with_end_and_maps(sig: int) -> None:
    # the shared lifecycle: SIGTERM/SIGHUP stop a running program as Ctrl-C does (END runs,
    # maps are printed, exit 0), on the BPF engine too (which has no tracefs Session)
    prog = ('BEGIN { printf("armed\\n"); } tracepoint:syscalls:sys_enter_getppid { @n = count(); } '
            'END { printf("end\\n"); }')
    p = subprocess.Popen([sys.executable, "-m", "kprobes.cli", "--engine", "bpf", "-e", prog],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        line = p.stdout.readline()
        while line and line != "armed\n":
            line = p.stdout.readline()
        assert line == "armed\n"
        os.getppid()
        p.send_signal(sig)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert "end\n" in out and "@n: " in out, out
    assert "Traceback" not in err
