"""Flame graphs for real: a BPF profile folded and rendered, and the SVG's script in Chromium.

* ``profile:hz:99`` on a gcc-built busy loop with ``--folded`` gives folded user
  stacks (comm, then main, then the looping function); ``kprobes flamegraph``
  turns them into an SVG naming those functions;
* Debian's ``chromium`` (driven by tests/chromium.py) loads a page embedding an
  SVG of known stacks, runs its search and clicks a frame; the test reads back
  the DOM (``--dump-dom``): the matched percentage, the magenta frames and the
  zoomed frame's width.  A screenshot of the graph is kept in
  ``results/flamegraph.png`` (a CI artifact).  The kernel graphs made in the VM
  go through Chromium in tests/cross/test_flamegraph_vm_in_chromium.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from kprobes.export.flamegraph import FlameOptions, render_svg
from tests import chromium
from tests.conftest import require
from tests.helpers import ROOT, run_cli, run_cli_subprocess

pytestmark = pytest.mark.host

SPIN = r"""
__attribute__((noinline)) void spin_inner(volatile unsigned long *x) {
    for (unsigned long i = 0; i < 50000000UL; i++) *x += i;
}
int main(void) { volatile unsigned long x = 0; for (;;) spin_inner(&x); }
"""


@pytest.fixture
def spinner(tmp_path: Path) -> Iterator["subprocess.Popen[bytes]"]:
    if os.geteuid() != 0:
        require("BPF profile needs root")
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to build the profiled program")
    (tmp_path / "spin.c").write_text(SPIN)
    exe = tmp_path / "kpspin"
    subprocess.run(["gcc", "-O0", "-fno-omit-frame-pointer", "-o", str(exe), str(tmp_path / "spin.c")],
                   check=True)
    proc = subprocess.Popen([str(exe)])
    time.sleep(0.1)
    yield proc
    proc.kill()
    proc.wait()


def test_profile_folded_to_flamegraph(tmp_path: Path, spinner: "subprocess.Popen[bytes]") -> None:
    prog = f"profile:hz:99 /pid == {spinner.pid}/ {{ @[ustack, comm] = count(); }}"
    r = run_cli_subprocess(["--engine", "bpf", "--folded", "-e", prog, "--duration", "1.5"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines and not any(ln.startswith("Attaching") for ln in lines)
    total = 0
    for ln in lines:
        frames, _, n = ln.rpartition(" ")
        parts = frames.split(";")
        assert parts[0] == "kpspin", ln  # comm is the root frame
        assert not any(re.search(r"\+\d+$", p) for p in parts), ln  # bare names by default
        total += int(n)
    hot = [ln for ln in lines if ln.split(" ")[0].endswith(";main;spin_inner")]
    assert hot, r.stdout
    # 99 Hz for 1.5 s: at most ~150 samples of a process that never sleeps (fewer when the
    # machine is busy and it waits for a CPU), most of them in spin_inner.
    assert 10 <= total <= 200 and sum(int(ln.rsplit(" ", 1)[1]) for ln in hot) >= total * 0.8
    folded = tmp_path / "spin.folded"
    folded.write_text(r.stdout)
    svg = tmp_path / "spin.svg"
    rc, _, err = run_cli(["flamegraph", str(folded), "-o", str(svg), "--title", "kpspin"])
    assert rc == 0, err
    text = svg.read_text()
    for name in ("kpspin", "main", "spin_inner"):
        assert f'data-n="{name}"' in text
    assert f'data-total="{total}"' in text


def test_offsets_on_request(spinner: "subprocess.Popen[bytes]") -> None:
    prog = f"profile:hz:99 /pid == {spinner.pid}/ {{ @[ustack] = count(); }}"
    r = run_cli_subprocess(["--engine", "bpf", "--folded-offsets", "-e", prog, "--duration", "0.5"])
    assert r.returncode == 0, r.stderr
    assert re.search(r"main\+\d+;spin_inner\+\d+ \d+$", r.stdout, re.M), r.stdout


def test_folded_needs_a_stack_map() -> None:
    rc, _, err = run_cli(["--folded", "-e", "tracepoint:syscalls:sys_enter_getpid { @ = count(); }"])
    assert rc == 1 and "--folded needs a map keyed by a stack" in err


# Runs in the page (tests/chromium.py: ``out`` is returned, frame/width are helpers).
PAGE_SCRIPT = r"""
    out.before = { a: width("a"), b: width("b"), c: width("c"), other: width("other") };
    out.search = window.kpflame.search("^(b|c)$");
    out.matched = document.getElementById("matched").textContent;
    out.magenta = [];
    var ms = document.querySelectorAll("g.fr.match");
    for (var i = 0; i < ms.length; i++) {
      out.magenta.push([ms[i].getAttribute("data-n"), ms[i].querySelector("rect").getAttribute("fill")]);
    }
    click(frame("a"));
    out.zoomed = { a: width("a"), b: width("b"), c: width("c"), other: width("other"),
                   main: width("main"), mainFaded: frame("main").classList.contains("par"),
                   bLabel: frame("b").querySelector("text").textContent,
                   unzoom: !document.getElementById("unzoom").classList.contains("hide") };
    click(document.getElementById("unzoom"));
    out.reset = { a: width("a"), other: width("other") };
"""


def test_flamegraph_search_and_zoom_in_chromium(tmp_path: Path) -> None:
    chromium.chromium()
    stacks = [(("main", "a", "b"), 30), (("main", "a", "c"), 10), (("main", "a"), 10),
              (("other",), 50)]
    svg = render_svg(stacks, FlameOptions(title="test", width=1020))  # 1000 px for 100 samples
    res = chromium.run_page(svg, PAGE_SCRIPT, tmp_path)
    assert "error" not in res, res
    assert res["before"] == {"a": 500.0, "b": 300.0, "c": 100.0, "other": 500.0}
    assert res["search"] == {"frames": 2, "samples": 40, "percent": 40}
    assert res["matched"] == "Matched: 40.00%"
    assert sorted(res["magenta"]) == [["b", "rgb(230,0,230)"], ["c", "rgb(230,0,230)"]]
    z = res["zoomed"]
    # a (50 samples) now fills the 1000 px; b is 30/50 of it; other is hidden; main faded, full width.
    assert z["a"] == 1000.0 and z["b"] == 600.0 and z["c"] == 200.0 and z["other"] == -1
    assert z["main"] == 1000.0 and z["mainFaded"] and z["unzoom"] and z["bLabel"] == "b"
    assert res["reset"] == {"a": 500.0, "other": 500.0}
    # A screenshot for people (CI keeps results/ as an artifact; a read-only checkout keeps none).
    shot = tmp_path / "flamegraph.svg"
    shot.write_text(svg)
    chromium.screenshot(shot.as_uri(), Path(ROOT) / "results" / "flamegraph.png", tmp_path, "1020,260")
