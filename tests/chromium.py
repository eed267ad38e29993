"""Headless Chromium (Debian's ``chromium``) driving a flame-graph SVG, for tests.

``run_page(svg, body, workdir)`` embeds the SVG in an HTML page with a script:
``body`` is JavaScript that fills the object ``out`` (helpers ``frame(name)``,
``framesNamed(name)``, ``widthOf(g)``, ``width(name)`` and ``click(g)`` are in
scope); Chromium loads the page with ``--dump-dom`` and the test gets ``out``
back as a dict (``out.error`` holds an exception the script raised).
``dump_svg(path, query, workdir)`` loads a standalone SVG file (as users open it)
and returns its DOM after the SVG's own script ran; ``screenshot`` saves a PNG.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional

from tests.conftest import require

TIMEOUT = 180  # a cold Chromium on a loaded 2-core machine takes seconds, not minutes

PRELUDE = r"""
function framesNamed(name) {
  var gs = document.querySelectorAll("g.fr"), r = [];
  for (var i = 0; i < gs.length; i++) { if (gs[i].getAttribute("data-n") === name) { r.push(gs[i]); } }
  return r;
}
function frame(name) { var r = framesNamed(name); return r.length ? r[0] : null; }
function widthOf(g) {
  return g && g.style.display !== "none" ? parseFloat(g.querySelector("rect").getAttribute("width")) : -1;
}
function width(name) { return widthOf(frame(name)); }
function click(el) {
  var target = el.querySelector ? (el.querySelector("rect") || el) : el;
  target.dispatchEvent(new MouseEvent("click", { bubbles: true }));
}
"""


def chromium() -> str:
    """The browser's path; skip (developer machine) or fail (CI) without it."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    require("chromium is not installed (apt-get install chromium; scripts/install-vm-deps does)")
    raise AssertionError  # unreachable


def _args(workdir: Path) -> List[str]:
    return [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            f"--user-data-dir={workdir / 'chromium-profile'}"]


def page_html(svg: str, body: str) -> str:
    """An HTML page holding ``svg`` inline and a script that runs ``body``."""
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body style='margin:0'>"
            + svg[svg.index("<svg"):]
            + '\n<pre id="result">pending</pre>\n<script>\n(function () {\n  var out = {};\n'
            + PRELUDE + "  try {\n" + body + "\n  } catch (e) { out.error = String(e); }\n"
            + '  document.getElementById("result").textContent = JSON.stringify(out);\n'
            + "})();\n</script>\n</body></html>")


def run_page(svg: str, body: str, workdir: Path, name: str = "page.html") -> Dict[str, Any]:
    """Load ``page_html(svg, body)`` in Chromium and return the script's ``out``."""
    page = workdir / name
    page.write_text(page_html(svg, body))
    r = subprocess.run(_args(workdir) + ["--dump-dom", page.as_uri()], capture_output=True,
                       text=True, timeout=TIMEOUT)
    m = re.search(r'<pre id="result">(.*?)</pre>', r.stdout, re.S)
    assert m, f"no result in the DOM (rc {r.returncode}): {r.stderr[-2000:]}"
    res: Dict[str, Any] = json.loads(html.unescape(m.group(1)))
    return res


def dump_svg(svg_file: Path, workdir: Path, query: str = "") -> str:
    """The DOM of the standalone SVG document ``svg_file`` (``query``: e.g. ``?s=TERM``)."""
    r = subprocess.run(_args(workdir) + ["--dump-dom", svg_file.as_uri() + query],
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert "<svg" in r.stdout, f"no SVG in the DOM (rc {r.returncode}): {r.stderr[-2000:]}"
    return r.stdout


def screenshot(uri: str, png: Path, workdir: Path, size: str) -> Optional[str]:
    """Save what Chromium shows of ``uri`` (``size``: "W,H") to ``png``; an error text or None."""
    try:
        png.parent.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(_args(workdir) + ["--hide-scrollbars", f"--window-size={size}", f"--screenshot={png}", uri],
                           capture_output=True, text=True, timeout=TIMEOUT)
    except OSError as e:  # a read-only checkout keeps no artifact
        return str(e)
    if r.returncode != 0 or not png.exists():
        return f"rc {r.returncode}: {r.stderr[-500:]}"
    return None
