"""Loops, unroll, ++/--, compound assignments and positional parameters on this host.

The same program runs through ``kprobes.prepare_program(..., params=...)`` on the
tracefs engine and on the BPF engine (where the kernel's verifier must accept the
bounded ``while`` loop) on a syscall tracepoint; both outputs must be identical and
hold the values bpftrace 0.17 computes for this workload.
"""

from __future__ import annotations

import io
import os
import sys

import pytest

import kprobes
from tests.conftest import require

pytestmark = pytest.mark.host

WORK = ("import ctypes, os, sys; ctypes.CDLL(None).prctl(15, b'kpstmtwork', 0, 0, 0); "
        "[os.getppid() for _ in range(int(sys.argv[1]))]")
PROGRAM = r"""
tracepoint:syscalls:sys_enter_getppid /comm == str($2)/ {
  $i = 0; $s = 0;
  while ($i < $1) {
    $i++;
    if ($i % 3 == 0) { continue; }
    $s += $i;
    if ($i >= 40) { break; }
  }
  unroll(3) { @u++; --@d; }
  @s = $s; @last = $i; @n[$#]++;
  @m += 7; @m *= 3; @m -= 1; @m /= 2; @m %= 1000; @m |= 0x100; @m &= 0x1ff; @m ^= 5;
  @m <<= 2; @m >>= 1;
  $v = 10; $v -= 25; $v *= 3; $v /= 4; $v <<= 1; $v >>= 60; $v %= 7; $v ^= 2; $v |= 8; $v &= 12;
  @v = $v; @pre = ++$i; @post = $i++; @after = $i;
  $t = (str($2), $i, (int8)-1); @tup[$#] = $t; @t0 = $t.1 + @tup[$#].1;
}
"""


def _run(engine: str, params: list[str], program: str = PROGRAM) -> str:
    cmd = f"{sys.executable} -c \"{WORK}\" 5"
    sel = kprobes.prepare_program(program, "stdin", engine=engine, params=params,
                                  opts=kprobes.PlanOptions(child=True))
    out, err = io.StringIO(), io.StringIO()
    rc = sel.run(kprobes.RunOptions(command=cmd), out, err)
    assert rc == 0, err.getvalue()
    return out.getvalue()


def _need() -> None:
    if os.geteuid() != 0:
        require("needs root")
    if not os.path.exists("/sys/kernel/tracing/events/syscalls/sys_enter_getppid/id"):
        require("no syscalls:sys_enter_getppid tracepoint (CONFIG_FTRACE_SYSCALLS)")


def test_statements_and_parameters_agree_on_both_engines() -> None:
    _need()
    params = ["100", "kpstmtwork", "x"]
    tracefs = _run("tracefs", params)
    bpf = _run("bpf", params)
    assert tracefs == bpf
    # 1..40 without the multiples of 3: 820 - 3 * (1 + ... + 13) = 547
    for line in ("@s: 547", "@last: 40", "@u: 15", "@d: -15", "@n[3]: 5", "@pre: 41",
                 "@post: 41", "@after: 42", "@tup[3]: (kpstmtwork, 42, -1)", "@t0: 84"):
        assert line + "\n" in bpf, (line, bpf)


def test_cpid_is_the_pid_of_the_command() -> None:
    _need()
    program = ('BEGIN { printf("cpid set: %d\\n", cpid > 1); }'
               ' tracepoint:syscalls:sys_enter_getppid /pid == cpid && comm == "kpstmtwork"/ { @calls = count(); }')
    outs = [_run(engine, [], program) for engine in ("tracefs", "bpf")]
    assert outs[0] == outs[1]
    assert "cpid set: 1\n" in outs[1] and "@calls: 5\n" in outs[1], outs[1]


def test_positional_parameters_in_the_attach_point() -> None:
    _need()
    program = 'tracepoint:syscalls:sys_enter_$1 /comm == str($2)/ { @[probe] = count(); }'
    outs = [_run(engine, ["getppid", "kpstmtwork"], program) for engine in ("tracefs", "bpf")]
    assert outs[0] == outs[1]
    assert "@[tracepoint:syscalls:sys_enter_getppid]: 5\n" in outs[1], outs[1]
