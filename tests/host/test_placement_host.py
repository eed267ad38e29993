"""Uprobe offsets inside an instruction are refused everywhere; boundaries work and count.

A program built here with gcc (-O0 -fcf-protection, so ``work`` starts with
the 4-byte ``endbr64``) calls ``work()`` N times.  ``work+1..+3`` (inside
endbr64) and a raw file offset inside an instruction are refused by
``kprobes trace``, ``kprobes -e`` and ``kprobes check``, before anything is
armed; a copy of the program running meanwhile finishes with status 0 and the
right result.  ``work+4`` (the next instruction) is accepted and counts
exactly N calls.  A libc function plus an offset inside its first
instruction is refused too (a libc uprobe would break every process).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator, List

import pytest

from kprobes.backends.symbols import resolve_library, resolve_uprobe
from kprobes.backends.symbols.placement import check_offset
from tests.conftest import require, tracefs_root
from tests.helpers import run_cli, session_leftovers

pytestmark = pytest.mark.host

N = 7
SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
int __attribute__((noinline)) work(int x) { return x * 3 + 1; }
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1, s = 0;
    if (argc > 2) { char line[16]; if (!fgets(line, sizeof line, stdin)) return 3; }
    for (int i = 0; i < n; i++) s += work(i);
    printf("%d\n", s);
    return 0;
}
"""
ENDBR64 = bytes.fromhex("f30f1efa")
REFUSED = "not on an instruction boundary"


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> str:
    if shutil.which("gcc") is None:
        require("gcc is needed to build the probed program")
    root = tracefs_root()
    if root is None or not os.path.exists(os.path.join(root, "uprobe_events")):
        require("this kernel has no uprobe_events")
    d = tmp_path_factory.mktemp("placement")
    (d / "prog.c").write_text(SOURCE)
    subprocess.run(["gcc", "-O0", "-fcf-protection", "-o", str(d / "prog"), str(d / "prog.c")], check=True)
    path = str(d / "prog")
    loc = resolve_uprobe(path, "work")
    with open(path, "rb") as f:
        f.seek(loc.offset)
        head = f.read(5)
    assert head[:4] == ENDBR64 and head[4] == 0x55, f"unexpected code at work: {head.hex()}"
    return path


@pytest.fixture()
def bystander(prog: str) -> Iterator[subprocess.Popen[str]]:
    """A copy of the program waiting on stdin while the refusals happen; must end well."""
    p = subprocess.Popen([prog, str(N), "wait"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    yield p
    if p.poll() is None:
        p.kill()
        p.wait()


def _finish(p: "subprocess.Popen[str]") -> None:
    out, _ = p.communicate("go\n", timeout=30)
    assert p.returncode == 0, f"the program ended with status {p.returncode}"
    assert int(out) == sum(3 * i + 1 for i in range(N))


def _refused_everywhere(prog: str, trace_place: str, bt_place: str, want: List[str]) -> None:
    rc, out, err = run_cli(["trace", f"p:x {trace_place}", "-c", f"{prog} {N}"])
    assert rc == 2 and REFUSED in err and "--unsafe" in err, (rc, err)
    assert all(w in err for w in want), err
    assert out == ""
    for engine in ("auto", "bpf", "tracefs"):  # every engine refuses it before attaching
        rc, out, err = run_cli(["--engine", engine, "-e", f"uprobe:{bt_place} {{ @ = count(); }}",
                                "-c", f"{prog} {N}"])
        assert rc != 0 and REFUSED in err and "--unsafe" in err, (engine, rc, err)
        assert all(w in err for w in want), err
        assert "Attaching" not in out
    rc, out, err = run_cli(["check", f"p:x {trace_place}"])
    assert rc == 2 and REFUSED in err, (rc, err)
    assert all(w in err for w in want), err
    rc, out, err = run_cli(["check", "--unsafe", f"p:x {trace_place}"])
    assert rc == 0, err
    rc, out, err = run_cli(["probe", "--add", f"p:kpplace_x {trace_place}"])
    assert rc == 2 and REFUSED in err, (rc, err)
    assert "kpplace_x" not in Path(tracefs_root() or "/nonexistent", "uprobe_events").read_text()
    assert session_leftovers() == []


@pytest.mark.parametrize("k", [1, 2, 3])
def test_inside_endbr64_is_refused(prog: str, bystander: "subprocess.Popen[str]", k: int) -> None:
    base = resolve_uprobe(prog, "work").offset
    want = [f"work+0x{k:x} is not", "`f3 0f 1e fa`", f"work (0x{base:x})", f"work+0x4 (0x{base + 4:x})"]
    _refused_everywhere(prog, f"{prog}:work+{k}", f"{prog}:work+{k}", want)
    _finish(bystander)


def test_raw_offset_inside_an_instruction_is_refused(prog: str, bystander: "subprocess.Popen[str]") -> None:
    base = resolve_uprobe(prog, "work").offset
    inside = base + 6  # inside the 3-byte mov %rsp,%rbp at work+5
    assert not check_offset(prog, inside).ok
    want = ["work+0x6 is not", "`48 89 e5`", f"work+0x5 (0x{base + 5:x})", f"work+0x8 (0x{base + 8:x})"]
    _refused_everywhere(prog, f"{prog}:0x{inside:x}", f"{prog}:0x{inside:x}", want)
    _finish(bystander)


def test_libc_offset_inside_an_instruction_is_refused() -> None:
    libc = resolve_library("libc")
    func = "atoi"
    base = resolve_uprobe(libc, func).offset
    k = next(a for a in range(1, 16) if not check_offset(libc, base + a).ok)
    rc, _out, err = run_cli(["trace", f"p:x libc:{func}+{k}", "--duration", "5"])
    assert rc == 2 and REFUSED in err and f"{func}+0x{k:x}" in err, err
    rc, _out, err = run_cli(["--engine", "tracefs", "-e", f"uprobe:libc:{func}+{k} {{ @ = count(); }}", "-c", "true"])
    assert rc != 0 and REFUSED in err, err
    rc, _out, err = run_cli(["check", f"p:x libc:{func}+{k}"])
    assert rc == 2 and REFUSED in err, err
    assert session_leftovers() == []


def test_next_boundary_is_accepted_and_counts(prog: str) -> None:
    rc, out, err = run_cli(["check", f"p:x {prog}:work+4"])
    assert rc == 0, err
    rc, out, err = run_cli(["trace", "--json", f"p:x {prog}:work+4", "-c", f"{prog} {N}"])
    assert rc == 0, err
    hits = [r for r in map(json.loads, out.splitlines()) if r.get("probe") == "x"]
    assert len(hits) == N, out
    rc, out, err = run_cli(["--engine", "tracefs", "-e", f"uprobe:{prog}:work+4 {{ @ = count(); }}", "-c", f"{prog} {N}"])
    assert rc == 0, err
    assert f"@: {N}\n" in out, out
    # the same place as a raw file offset
    off = resolve_uprobe(prog, "work").offset + 4
    rc, out, err = run_cli(["--engine", "tracefs", "-e", f"uprobe:{prog}:0x{off:x} {{ @ = count(); }}", "-c", f"{prog} {N}"])
    assert rc == 0, err
    assert f"@: {N}\n" in out, out
    assert session_leftovers() == []
