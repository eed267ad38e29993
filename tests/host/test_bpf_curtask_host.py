"""``curtask`` is kernel memory on every probe type: a syscall tracepoint (whose other
pointers are user memory) reads ``task_struct`` members through probe_read_kernel, also
through a ``$var`` that holds the cast pointer (bpftrace's naptime.bt does this)."""

from __future__ import annotations

import os
import sys

import pytest

from tests.conftest import require
from tests.helpers import run_cli_subprocess

pytestmark = pytest.mark.host

PROG = ('tracepoint:syscalls:sys_enter_getppid /comm == "kpcurtask"/ { '
        '$t = (struct task_struct *)curtask; $p = $t->real_parent; '
        'printf("%d %d %d %d %d\\n", pid, tid, ((struct task_struct *)curtask)->tgid, '
        '$t->pid, $p->tgid); exit(); }')
WORK = ("import ctypes, os; ctypes.CDLL(None).prctl(15, b'kpcurtask', 0, 0, 0); "
        "print('parent', os.getppid(), flush=True)")


def test_task_struct_members_through_curtask_on_a_syscall_tracepoint(tmp_path: object) -> None:
    if os.geteuid() != 0:
        require("needs root (BPF)")
    if not os.path.exists("/sys/kernel/tracing/events/syscalls/sys_enter_getppid"):
        require("no syscalls:sys_enter_getppid tracepoint")
    script = os.path.join(str(tmp_path), "w.py")
    with open(script, "w") as f:
        f.write(WORK + "\n")
    r = run_cli_subprocess(["--engine", "bpf", "-c", f"{sys.executable} {script}", "-e", PROG], timeout=60)
    assert r.returncode == 0, r.stderr
    nums = [ln.split() for ln in r.stdout.splitlines() if ln.strip() and ln.split()[0].isdigit()]
    assert len(nums) == 1, r.stdout
    pid, tid, tgid, task_pid, parent_tgid = map(int, nums[0])
    assert pid == tid == tgid == task_pid > 0
    parent = [ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith("parent ")]
    assert parent == [str(parent_tgid)], r.stdout
