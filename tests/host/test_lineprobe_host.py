"""A source-line uprobe reading a local variable in a loop, through the CLI (probe -L/--add, record, script)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require, tracefs_root
from tests.helpers import ROOT

pytestmark = pytest.mark.host

SOURCE = """\
#include <stdio.h>
#include <stdlib.h>

static long work(int n)
{
    long sum = 0;
    for (int i = 0; i < n; i++) {
        long sq = (long)i * i + 7 * i + 3;
        sum += sq;
        printf("sq=%ld i=%d\\n", sq, i);
    }
    return sum;
}

int main(int argc, char **argv)
{
    long total = work(argc > 1 ? atoi(argv[1]) : 5);
    printf("sum=%ld\\n", total);
    return 0;
}
"""


def kprobes(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kprobes.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)  # fmt: skip


@pytest.fixture()
def prog(tmp_path: Path) -> Path:
    if shutil.which("gcc") is None:
        require("gcc is needed to build the probed program")
    root = tracefs_root()
    if root is None or not os.path.exists(os.path.join(root, "uprobe_events")):
        require("this kernel has no uprobe_events")
    (tmp_path / "loop.c").write_text(SOURCE)
    subprocess.run(["gcc", "-g", "-O0", "-o", str(tmp_path / "loop"), str(tmp_path / "loop.c")], check=True)
    return tmp_path / "loop"


def test_line_probe_reads_loop_local(prog: Path, tmp_path: Path) -> None:
    listing = kprobes("probe", "-x", str(prog), "-L", "work")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0] == f"<work@{prog.parent / 'loop.c'}:0>"
    body = [ln for ln in lines if ln.endswith("sum += sq;")]
    assert body and re.match(r"^\s+\d+  ", body[0]), lines
    rel = int(body[0].split()[0])

    group = f"lineprobe_{os.getpid()}"
    data = str(tmp_path / "rec.data")
    try:
        add = kprobes("probe", "-x", str(prog), "--group", group, "--add", f"work:{rel} sq i")
        assert add.returncode == 0, add.stderr
        assert f"{group}:work_L{rel}" in add.stdout
        rec = kprobes("record", "-e", f"{group}:work_L{rel}", "-o", data, "--", str(prog), "6")
        assert rec.returncode == 0, rec.stderr
        script = kprobes("script", "-i", data)
        assert script.returncode == 0, script.stderr
    finally:
        kprobes("probe", "--del", f"{group}:*")
    printed = re.findall(r"sq=(-?\d+) i=(\d+)", rec.stdout)  # what the program computed
    probed = re.findall(r"sq=(-?\d+) i=(\d+)", script.stdout)  # what the probe read
    assert len(printed) == 6
    assert probed == printed, (script.stdout, rec.stdout)
    assert f"sum={sum(int(s) for s, _ in printed)}" in rec.stdout
    events = open(os.path.join(tracefs_root() or "", "uprobe_events")).read()
    assert group not in events
