"""Stacks and profile with ``--engine bpf`` on this host's kernel (tracepoints, uprobes, perf events).

* ustack on a uprobe of a gcc-built program with a known call chain
  (main -> a -> b, frame pointers kept) names b, a, main in that order, with the
  same offsets bpftrace prints (compared with bpftrace 0.17 when it is here);
* kstack on a syscall tracepoint shows the syscall entry path;
* profile:hz:N samples a busy loop in the function that loops.

The probed programs keep running while the maps are printed (an interval
probe prints them), so their mappings can still be read, as bpftrace needs too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator, List

import pytest

from tests.conftest import require
from tests.helpers import run_cli

pytestmark = pytest.mark.host

CHAIN = r"""
#include <unistd.h>
#include <stdlib.h>
__attribute__((noinline)) int b(int x) { return getppid() + x; }
__attribute__((noinline)) int a(int x) { return b(x + 1) + 1; }
int main(int argc, char **argv) {
    int n = atoi(argv[1]), s = 0;
    for (int i = 0; i < n; i++) { s += a(i); usleep(50000); }
    return s & 1;
}
"""
SPIN = r"""
__attribute__((noinline)) void spin_inner(volatile unsigned long *x) {
    for (unsigned long i = 0; i < 50000000UL; i++) *x += i;
}
int main(void) { volatile unsigned long x = 0; for (;;) spin_inner(&x); }
"""


def _ready() -> None:
    if os.geteuid() != 0:
        require("BPF engine tests need root")
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to build the probed programs")


def _build(d: Path, name: str, src: str) -> str:
    (d / f"{name}.c").write_text(src)
    subprocess.run(["gcc", "-O1", "-fno-omit-frame-pointer", "-o", str(d / name), str(d / f"{name}.c")],
                   check=True)
    return str(d / name)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[List["subprocess.Popen[bytes]"]]:
    procs: List["subprocess.Popen[bytes]"] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def _stack_keys(out: str, name: str = "") -> List[List[str]]:
    """Frames of every ``@name[<stack>]: N`` entry of a printed map."""
    return [[ln.strip() for ln in m.group(1).strip("\n").split("\n")]
            for m in re.finditer(r"@" + re.escape(name) + r"\[\n(.*?)\n\]: \d+", out, re.S)]


def test_ustack_on_a_uprobe_names_the_call_chain(tmp_path: Path, running: List["subprocess.Popen[bytes]"]) -> None:
    _ready()
    exe = _build(tmp_path, "chain", CHAIN)
    prog = f"uprobe:{exe}:b {{ @[ustack] = count(); }} interval:ms:600 {{ print(@); exit(); }}"
    running.append(subprocess.Popen([exe, "400"]))
    time.sleep(0.1)
    rc, out, err = run_cli(["--engine", "bpf", "-e", prog])
    assert rc == 0, err
    stacks = _stack_keys(out.split("\n\n\n")[0])
    assert stacks, out
    top = stacks[-1]  # the most frequent (maps print in ascending count)
    assert [f.split("+")[0] for f in top[:3]] == ["b", "a", "main"], out
    assert top[0] == "b+0"
    if shutil.which("bpftrace"):  # the same frames, offsets included
        bt = subprocess.run(["bpftrace", "-e", prog], capture_output=True, text=True, timeout=60)
        theirs = _stack_keys(bt.stdout.split("\n\n\n")[0])
        assert theirs and theirs[-1][:3] == top[:3], bt.stdout + bt.stderr


def test_kstack_on_a_syscall_tracepoint_shows_the_entry_path(tmp_path: Path) -> None:
    _ready()
    exe = _build(tmp_path, "chain", CHAIN)
    prog = ('tracepoint:syscalls:sys_enter_getppid /comm == "chain"/ { @[kstack] = count(); '
            '@u[ustack(perf, 4), kstack(2)] = count(); printf("%s", kstack(1)); }')
    rc, out, err = run_cli(["--engine", "bpf", "-c", f"{exe} 3", "-e", prog])
    assert rc == 0, err
    (frames,) = _stack_keys(out)
    names = [f.split("+")[0] for f in frames]
    assert "do_syscall_64" in names and any(n.startswith("entry_SYSCALL_64") for n in names), out
    assert all(re.fullmatch(r"[\w.]+\+\d+", f) for f in frames), frames
    assert "@[\n    " + frames[0] + "\n" in out and "]: 3\n" in out
    # printf indents 8, as bpftrace does
    assert out.count(f"\n        {frames[0]}\n") == 3
    # a tuple of a perf-mode user stack (process gone: addresses) and a 2-frame kernel stack
    assert re.search(r"@u\[\n(\t[0-9a-f]+ 0x[0-9a-f]+ \(\[unknown\]\)\n)+, \n    [\w.]+\+\d+\n    [\w.]+\+\d+\n\]: 3",
                     out), out


def test_profile_samples_a_busy_loop(tmp_path: Path, running: List["subprocess.Popen[bytes]"]) -> None:
    _ready()
    exe = _build(tmp_path, "spin", SPIN)
    p = subprocess.Popen([exe])
    running.append(p)
    time.sleep(0.1)
    prog = (f"profile:hz:199 /pid == {p.pid}/ {{ @[ustack(1)] = count(); @n = count(); @cpu[cpu] = count(); }}"
            " interval:ms:1500 { print(@); print(@n); exit(); }")
    rc, out, err = run_cli(["--engine", "bpf", "-e", prog])
    assert rc == 0, err
    first = out.split("\n\n\n")[0]
    n = int(re.search(r"@n: (\d+)", first).group(1))  # type: ignore[union-attr]
    # 199 Hz for 1.5 s on a loop that never sleeps: ~300 samples when it has a CPU to itself
    assert 60 <= n <= 1.5 * 199 * (os.cpu_count() or 1) + 20, out
    stacks = _stack_keys(first)
    hot = sum(int(m) for m in re.findall(r"spin_inner\+\d+\n\]: (\d+)", first))
    assert stacks and hot >= 0.9 * n, out
