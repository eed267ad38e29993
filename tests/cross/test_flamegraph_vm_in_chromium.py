"""Runs after the VM stages (scripts/test): the flame graphs the guests made, in Chromium here.

tests/kernel/test_export_kernel.py profiles ``dd`` reading /dev/zero with
``profile:hz:99`` kernel stacks in each guest and leaves
``results/flamegraph-vm-KERNEL.{folded,svg,json}`` (the JSON, written last, names
the kernel and a function the workload ran through: ``vfs_read``).  The guest
has no browser, so this host loads each SVG in headless Chromium:

* as a standalone document (how people open it) with ``?s=^vfs_read$``: the
  SVG's own script marks every ``vfs_read`` frame and prints the percentage of
  samples the folded input puts under ``vfs_read``;
* inline in a page whose script searches, then clicks the widest ``vfs_read``
  frame: it must fill the usable width, its ancestors full width and faded,
  the frames above it scaled by the same factor, everything else hidden;
* a screenshot of the zoomed graph goes to ``results/flamegraph-vm-KERNEL.png``
  (a CI artifact).

scripts/test deletes ``results/flamegraph-vm-*`` before the VM stages (and the
VM test deletes its own kernel's files first), so only this run's graphs count.
Without any (a developer machine that skipped the VM stages) the test skips,
with ``KPROBES_REQUIRE_KERNEL=1`` (CI) it fails; ``KPROBES_KERNELS`` (set by
scripts/test) lists the kernels whose graphs must be there.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from tests import chromium
from tests.conftest import require
from tests.helpers import ROOT

RESULTS = Path(ROOT) / "results"
PREFIX = "flamegraph-vm-"


def _kernels() -> List[Optional[str]]:
    found = {p.name[len(PREFIX):-len(".svg")] for p in RESULTS.glob(PREFIX + "*.svg")}  # 6.1, 6.12
    wanted = {k for k in os.environ.get("KPROBES_KERNELS", "").split() if re.match(r"\d+\.\d+$", k)}
    kernels: List[Optional[str]] = list(sorted(found | wanted))
    return kernels or [None]


def _folded(path: Path) -> List[Tuple[List[str], int]]:
    out = []
    for ln in path.read_text().splitlines():
        frames, _, n = ln.rpartition(" ")
        out.append((frames.split(";"), int(n)))
    return out


ZOOM_SCRIPT = r"""
    var svg = document.getElementById("kpflame");
    var usable = parseFloat(svg.getAttribute("width")) - 2 * parseFloat(svg.getAttribute("data-xpad"));
    var cands = framesNamed(NAME), target = null;
    for (var i = 0; i < cands.length; i++) {
      if (!target || +cands[i].getAttribute("data-w") > +target.getAttribute("data-w")) { target = cands[i]; }
    }
    out.usable = usable;
    out.named = cands.length;
    out.before = widthOf(target);
    out.search = window.kpflame.search("^" + NAME + "$");
    out.matched = document.getElementById("matched").textContent;
    click(target);
    out.target = { x: +target.getAttribute("data-x"), w: +target.getAttribute("data-w"),
                   d: +target.getAttribute("data-d"), width: widthOf(target),
                   fill: target.querySelector("rect").getAttribute("fill") };
    out.unzoom = !document.getElementById("unzoom").classList.contains("hide");
    out.frames = [];
    var gs = document.querySelectorAll("g.fr");
    for (var j = 0; j < gs.length; j++) {
      var g = gs[j];
      out.frames.push([g.getAttribute("data-n"), +g.getAttribute("data-x"), +g.getAttribute("data-w"),
                       +g.getAttribute("data-d"), widthOf(g), g.classList.contains("par")]);
    }
"""


@pytest.mark.parametrize("kernel", _kernels())
def test_vm_flamegraph_zooms_in_chromium(kernel: Optional[str], tmp_path: Path) -> None:
    if kernel is None:
        require(f"no {PREFIX}*.svg in {RESULTS}: run the VM stage first "
                "(scripts/test, or scripts/vmrun -- .venv/bin/python -m pytest tests/kernel/test_export_kernel.py)")
        return
    svg_file, folded_file, meta_file = (RESULTS / f"{PREFIX}{kernel}.{s}" for s in ("svg", "folded", "json"))
    missing = [p.name for p in (svg_file, folded_file, meta_file) if not p.exists()]
    assert not missing, f"the {kernel} VM stage left no {missing} in results/ (did its flame graph test fail?)"
    meta = json.loads(meta_file.read_text())
    assert meta["kernel"].startswith(kernel + ".") and meta["kernel"] != os.uname().release, meta
    name = meta["frame"]
    svg = svg_file.read_text()

    # What the folded input says about the frame: the samples under it, and the widest node.
    stacks = _folded(folded_file)
    total = sum(n for _, n in stacks)
    assert total == meta["total"] and f'data-total="{total}"' in svg
    under = sum(n for frames, n in stacks if name in frames)
    nodes: Dict[Tuple[str, ...], int] = defaultdict(int)
    for frames, n in stacks:
        if name in frames:
            nodes[tuple(frames[:frames.index(name) + 1])] += n
    assert under and nodes, f"{name} is in no stack of {folded_file}"
    matched = f"Matched: {100 * under / total:.2f}%"

    # 1. The SVG file as people open it, with its own search from the URL.
    dom = chromium.dump_svg(svg_file, tmp_path, "?s=%5E" + name + "%24")
    m = re.search(r'<text id="matched"[^>]*>([^<]*)</text>', dom)
    assert m and m.group(1) == matched, (m and m.group(1), matched)
    assert dom.count('class="fr match"') == svg.count(f'data-n="{name}"') >= len(nodes)

    # 2. Search and click-to-zoom in a page.
    res = chromium.run_page(svg, ZOOM_SCRIPT.replace("NAME", json.dumps(name)), tmp_path)
    assert "error" not in res, res
    usable = res["usable"]
    assert res["named"] == svg.count(f'data-n="{name}"')
    assert res["search"]["samples"] == under and res["matched"] == matched
    t = res["target"]
    assert t["w"] == max(nodes.values())  # the widest vfs_read node, as the folded input has it
    assert res["before"] == pytest.approx(usable * t["w"] / total, abs=0.01)
    assert t["width"] == pytest.approx(usable, abs=0.01), t  # zoomed: the full width
    assert t["fill"] == "rgb(230,0,230)" and res["unzoom"]  # still a search match; Reset Zoom shown
    scale = usable / t["w"]
    inside = hidden = 0
    for fname, x, w, d, width, faded in res["frames"]:
        if d < t["d"] and x <= t["x"] and x + w >= t["x"] + t["w"]:  # an ancestor
            assert faded and width == pytest.approx(usable, abs=0.01), (fname, width)
        elif d >= t["d"] and x >= t["x"] and x + w <= t["x"] + t["w"]:  # the frame and above it
            assert not faded and width == pytest.approx(w * scale, abs=0.01), (fname, w, width)
            inside += 1
        else:
            assert width == -1, (fname, width)  # outside the zoomed range: hidden
            hidden += 1
    assert inside >= 2, res["frames"]  # vfs_read and what it called
    assert hidden == len(res["frames"]) - inside - t["d"]

    # 3. A screenshot of the zoomed graph (a CI artifact).
    png = RESULTS / f"{PREFIX}{kernel}.png"
    png.unlink(missing_ok=True)
    page = tmp_path / "zoomed.html"
    page.write_text(chromium.page_html(svg, ZOOM_SCRIPT.replace("NAME", json.dumps(name))))
    height = re.search(r'<svg [^>]*height="(\d+)"', svg)
    width = re.search(r'<svg [^>]*width="(\d+)"', svg)
    assert height and width
    err = chromium.screenshot(page.as_uri(), png, tmp_path, f"{width.group(1)},{height.group(1)}")
    assert err is None, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
