"""Differential test of the language statements (issue 14) against bpftrace 0.17.

One program uses while/break/continue, ``unroll($3)``, every compound assignment on a
``$var`` and on a map, ``++``/``--`` (pre and post, maps), positional parameters
(``str($1)``, ``$2``, ``$#``), ``sizeof`` of a BTF struct, ``cpid`` and tuples.  It runs once
under bpftrace (beside kprobes' tracefs engine) and through
``kprobes.prepare_program(..., params=...)`` on both engines, on the deterministic
workload of test_bpftrace_diff; the sorted map lines must be equal.
"""

from __future__ import annotations

import io
import subprocess
from typing import List

import kprobes
from tests.helpers import session_leftovers
from tests.kernel.test_bpftrace_diff import BT_COMM, normalize, workload

__all__ = ["workload"]  # the fixture, shared with test_bpftrace_diff

STATEMENTS = """\
kprobe:vfs_write /comm == str($1)/ {
  $i = 0; $s = 0;
  while ($i < $2) { $i++; if ($i % 3 == 0) { continue; } $s += $i; if ($i >= 40) { break; } }
  unroll($3) { @u++; }
  $v = (int64)arg2; $v -= 25; $v *= 3; $v /= 4; $v <<= 1; $v >>= 3; $v %= 7; $v ^= 2; $v |= 8; $v &= 12;
  @v[arg2] = $v; @s = $s; @last = $i;
  @m += arg2; @m *= 3; @m -= 1; @m /= 2; @m %= 100000; @m |= 0x100; @m &= 0xffff; @m ^= 5; @m <<= 2; @m >>= 1;
  @pre = ++@cnt; @post = @cnt2++; @dec = --@down; @n = $#;
  @sz = sizeof(struct task_struct) + sizeof(comm) + sizeof(uint16);
  @child = pid == cpid;
  @tup[arg2] = ("w", arg2 * 2, (int8)-1); $tt = (1, "x"); @ti = $tt.0 + @tup[arg2].1;
}
"""


def _run_api(engine: str, params: List[str], command: str) -> str:
    sel = kprobes.prepare_program(STATEMENTS, "stdin", engine=engine, params=params,
                                  opts=kprobes.PlanOptions(child=True))
    out, err = io.StringIO(), io.StringIO()
    rc = sel.run(kprobes.RunOptions(command=command), out, err)
    assert rc == 0, err.getvalue()
    return out.getvalue()


def test_statements_and_positional_parameters_same_as_bpftrace(workload: str) -> None:  # noqa: F811
    bt_cmd = workload.replace("/kpdw ", f"/{BT_COMM} ")
    bt = subprocess.Popen(["bpftrace", "-e", STATEMENTS, "-c", bt_cmd, BT_COMM, "100", "3"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    params = ["kpdw", "100", "3"]
    try:
        outs = {"tracefs": _run_api("tracefs", params, workload)}
        bt_out, bt_err = bt.communicate(timeout=180)
    finally:
        if bt.poll() is None:
            bt.kill()
            bt.wait()
    assert bt.returncode == 0, f"bpftrace failed: {bt_err}"
    outs["bpf"] = _run_api("bpf", params, workload)
    for engine, out in outs.items():
        assert normalize(out, False) == normalize(bt_out, False), (
            f"\n--- bpftrace\n{bt_out}\n--- kprobes {engine}\n{out}")
    lines = normalize(outs["bpf"], False)[1]
    assert "@s: 547" in lines and "@u: 21" in lines and "@child: 1" in lines, lines
    assert "@tup[65536]: (w, 131072, -1)" in lines and "@ti: 131073" in lines, lines
    assert session_leftovers() == []
