"""``kprobes tools`` on this host (tracepoints and uprobes; no kprobes here).

* funclatency on a recursive user function: rec(4) recurses down to rec(0);
  rec(4) and rec(3) sleep 100 ms before recursing, the others do not, so the
  five calls take >= 200 ms, >= 100 ms and three short times.  Pairing by
  thread and depth finds exactly two calls of 64 ms or more, one of them of
  128 ms or more, on both engines; pairing by thread alone would count one
  call, or time all five from the innermost entry (all short).  (Sleeps
  that add up across levels would not do: one scheduling stall of the
  innermost sleep on a loaded machine moves every level's time.)
* killsnoop (tracepoints) with a known kill, on both engines; argdist -C and
  funccount on syscall tracepoints; execsnoop (BPF: str() of a tracepoint's
  user pointer needs eprobes on tracefs).
* every tool plans (--dry-run) on this kernel.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

from kprobes.tools import TOOLS
from tests.helpers import PY, run_cli, session_leftovers

pytestmark = pytest.mark.host

REC = r"""
#include <unistd.h>
__attribute__((noinline)) int rec(int n) {
    if (n >= 3) usleep(100000);
    return n > 0 ? rec(n - 1) + 1 : 0;
}
int main(void) { return rec(4) == 4 ? 0 : 1; }
"""


def hist(out: str) -> Dict[str, int]:
    got: Dict[str, int] = {}
    for ln in out.splitlines():
        m = re.match(r"^(\[.*?[\])])\s+(\d+) \|", ln)
        if m:
            got[m.group(1)] = int(m.group(2))
    return got


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to build the recursive program")
    d = tmp_path_factory.mktemp("rec")
    (d / "rec.c").write_text(REC)
    subprocess.run(["gcc", "-O0", "-o", str(d / "rec"), str(d / "rec.c")], check=True)
    return d / "rec"


@pytest.mark.parametrize("engine", ["bpf", "tracefs"])
def test_funclatency_pairs_recursive_calls_by_depth(rec: Path, engine: str) -> None:
    rc, out, err = run_cli(["tools", "funclatency", f"{rec}:rec", "--unit", "ms",
                            "--engine", engine, "-c", str(rec)])
    assert rc == 0, err
    got = hist(out)
    low = {int(re.findall(r"\d+", b)[0]): n for b, n in got.items()}  # bucket's lower bound
    assert sum(got.values()) == 5, out
    assert sum(n for lo, n in low.items() if lo >= 64) == 2, out
    assert sum(n for lo, n in low.items() if lo >= 128) >= 1, out
    assert session_leftovers() == []


@pytest.mark.parametrize("engine", ["bpf", "tracefs"])
def test_killsnoop_and_argdist_see_a_known_kill(tmp_path: Path, engine: str) -> None:
    pids = tmp_path / "pids"
    # SIGCONT first: it does not end sleep, so the SIGTERM after it always finds the process
    # (after a fatal first signal the shell may already have reaped it: result -ESRCH)
    cmd = f"sleep 30 & echo $$ $! > {pids}; kill -CONT $!; kill -TERM $!; wait"
    rc, out, err = run_cli(["tools", "killsnoop", "--engine", engine, "-c", cmd])
    assert rc == 0, err
    sender, child = pids.read_text().split()
    got = [ln.split() for ln in out.splitlines() if ln.startswith(sender + " ")]
    assert got == [[sender, "sh", child, "18", "0"], [sender, "sh", child, "15", "0"]], out
    rc, out, err = run_cli(["tools", "argdist", "-C", "t:syscalls:sys_enter_kill:args->sig",
                            "-n", "sh", "--engine", engine, "-c", cmd])
    assert rc == 0, err
    assert "@count[18]: 1\n" in out and "@count[15]: 1\n" in out, out
    assert session_leftovers() == []


def test_funccount_top_n_on_syscall_tracepoints() -> None:
    code = "import os\nfor _ in range(300): os.getppid()\n"
    rc, out, err = run_cli(["tools", "funccount", "t:syscalls:sys_enter_getppid", "--top", "1",
                            "-n", os.path.basename(PY)[:15], "-c", f"{PY} -c '{code}'"])
    assert rc == 0, err
    top = [ln for ln in out.splitlines() if ln.startswith("@[")]
    assert len(top) == 1 and top[0].startswith("@[tracepoint:syscalls:sys_enter_getppid]: ")
    assert int(top[0].rsplit(" ", 1)[1]) >= 300, out


def test_execsnoop_shows_file_arguments_and_result() -> None:
    rc, out, err = run_cli(["tools", "execsnoop", "-c", "/bin/true kpt-a kpt-b; /nonexistent-kpt"])
    assert rc == 0, err
    lines: List[List[str]] = [ln.split()[1:] for ln in out.splitlines() if ln.strip()]
    assert ["true", "0", "/bin/true", "kpt-a", "kpt-b"] in lines, out
    assert ["sh", "-2", "/nonexistent-kpt"] in lines, out


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_every_tool_plans_here(name: str) -> None:
    args = {"argdist": ["-H", "vfs_read:arg2"], "trace": ['do_sys_openat2 "%s", arg2'],
            "stackcount": ["t:sched:sched_switch"]}.get(name, [])
    rc, out, err = run_cli(["tools", name, *args, "--dry-run"])
    assert rc == 0, err
    assert out.startswith("engine: ") and "attach: " in out, out


@pytest.mark.parametrize("engine", ["bpf", "tracefs"])
def test_pid_option_keeps_only_that_process(engine: str) -> None:
    busy = subprocess.Popen([PY, "-c", "import os\nwhile True: os.getppid()"])
    idle = subprocess.Popen([PY, "-c", "import os, time\ntime.sleep(60)"])
    try:
        counts = []
        for proc in (busy, idle):
            rc, out, err = run_cli(["tools", "funccount", "t:syscalls:sys_enter_getppid",
                                    "-p", str(proc.pid), "--duration", "1", "--engine", engine])
            assert rc == 0, err
            m = re.search(r"^@\[tracepoint:syscalls:sys_enter_getppid\]: (\d+)$", out, re.M)
            counts.append(int(m.group(1)) if m else 0)
    finally:
        busy.kill()
        idle.kill()
        busy.wait()
        idle.wait()
    assert counts[0] > 100 and counts[1] == 0, counts
    assert session_leftovers() == []
