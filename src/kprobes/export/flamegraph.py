"""Folded stacks to an interactive SVG flame graph (our own renderer, in the spirit of
flamegraph.pl and inferno).

Model: :func:`build_tree` merges the stacks into a tree (identical prefixes are one
node; a node's value is the samples of every stack through it); :func:`layout`
places every node as a :class:`Frame` in *sample units* — ``x`` is the number of
samples left of it, ``w`` its samples, ``depth`` 0 for the root ``all`` frame —
with children sorted by name, left to right, so siblings never overlap and a
parent's children sum to at most its width (the rest is its own samples).

The SVG draws the root at the bottom (a flame).  Every frame is one
``<g class="fr">`` holding a ``<title>`` (the tooltip: name, samples,
percentage), a ``<rect>`` and a ``<text>`` label, with its sample coordinates
in ``data-x``/``data-w``/``data-d`` and its name in ``data-n``, so the script
can re-place frames when zooming without any other state.  The embedded
script (plain ES5, no libraries) gives:

* click a frame: zoom so that it fills the width; its ancestors stay, faded, full
  width; frames outside its range hide; ``Reset Zoom`` (or a click on the root)
  undoes it;
* ``Search`` (or Ctrl-F): a regular expression; matching frames turn magenta and
  ``Matched: P%`` tells the share of samples under any match (nested matches
  counted once); a click on ``Search`` again clears it; ``?s=REGEX`` in the URL
  searches on load;
* hovering a frame writes its name, samples and percentage on the bottom line;
* ``window.kpflame`` (``search``, ``clearSearch``, ``zoom``, ``unzoom``) for
  scripts and tests.

Frames narrower than ``min_width`` pixels at full view are left out (as
flamegraph.pl does), which keeps huge profiles small; their samples still count in
their parents.
"""

from __future__ import annotations

import hashlib
from typing import Dict, List, Optional, Sequence, Tuple
from xml.sax.saxutils import escape, quoteattr

from .._record import dataclass, field

__all__ = ["Node", "Frame", "build_tree", "layout", "render_svg", "PALETTES", "FlameOptions"]

Folded = Tuple[Tuple[str, ...], int]

#: name -> (red range, green range, blue range); a frame's colour is picked in
#: these ranges by a hash of its name, so one function has one colour everywhere.
PALETTES: Dict[str, Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]] = {
    "hot": ((200, 255), (60, 215), (0, 60)),
    "mem": ((0, 60), (170, 230), (40, 170)),
    "io": ((60, 140), (80, 160), (190, 255)),
    "red": ((200, 255), (60, 130), (60, 130)),
    "green": ((60, 130), (190, 255), (60, 130)),
    "blue": ((80, 140), (130, 200), (215, 255)),
    "aqua": ((40, 100), (180, 230), (190, 240)),
    "yellow": ((180, 230), (180, 230), (40, 90)),
    "purple": ((170, 220), (90, 140), (190, 240)),
    "orange": ((220, 255), (140, 190), (20, 70)),
}


@dataclass
class Node:
    """One frame of the merged tree: ``value`` samples pass through it."""

    name: str
    value: int = 0
    children: Dict[str, "Node"] = field(default_factory=dict)

    @property
    def self_value(self) -> int:
        return self.value - sum(c.value for c in self.children.values())


@dataclass(frozen=True)
class Frame:
    """A placed node: ``x``/``w`` in samples, ``depth`` from the root (0)."""

    name: str
    depth: int
    x: int
    w: int


def build_tree(stacks: Sequence[Folded], root_name: str = "all") -> Node:
    """Merge folded stacks (frames root first) into one tree under ``root_name``."""
    root = Node(root_name)
    for frames, count in stacks:
        if count <= 0:
            continue
        root.value += count
        node = root
        for name in frames:
            child = node.children.get(name)
            if child is None:
                child = node.children[name] = Node(name)
            child.value += count
            node = child
    return root


def layout(root: Node) -> List[Frame]:
    """Every node as a frame, parents before children, siblings sorted by name."""
    out: List[Frame] = []
    todo: List[Tuple[Node, int, int]] = [(root, 0, 0)]
    while todo:
        node, depth, x = todo.pop()
        out.append(Frame(node.name, depth, x, node.value))
        cx = x
        placed = []
        for name in sorted(node.children):
            child = node.children[name]
            placed.append((child, depth + 1, cx))
            cx += child.value
        todo.extend(reversed(placed))
    return out


def color(name: str, palette: str = "hot") -> str:
    """``rgb(r,g,b)`` of a frame: stable per name within the palette's ranges."""
    ranges = PALETTES.get(palette, PALETTES["hot"])
    digest = hashlib.blake2b(name.encode("utf-8", "surrogateescape"), digest_size=6).digest()
    rgb = []
    for i, (lo, hi) in enumerate(ranges):
        v = int.from_bytes(digest[2 * i:2 * i + 2], "big") / 65535.0
        rgb.append(int(lo + (hi - lo) * v))
    return "rgb({},{},{})".format(*rgb)


@dataclass
class FlameOptions:
    title: str = "Flame Graph"
    subtitle: str = ""
    width: int = 1200
    frame_height: int = 16
    font_size: int = 12
    min_width: float = 0.1
    palette: str = "hot"
    count_name: str = "samples"


def _label(name: str, width_px: float, font_size: int) -> str:
    fit = int((width_px - 6) / (font_size * 0.59))
    if fit < 3:
        return ""
    return name if len(name) <= fit else name[:fit - 2] + ".."


def _clean(text: str) -> str:
    """Characters XML 1.0 allows: controls dropped, lone surrogates (undecodable bytes) replaced."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return "".join(ch for ch in text if ch in "\t\n\r" or ord(ch) >= 0x20)


def _xml(text: str) -> str:
    """Text content safe in XML (``& < >`` escaped)."""
    return escape(_clean(text))


def _attr(text: str) -> str:
    """A quoted attribute value safe in XML."""
    return quoteattr(_clean(text))


def render_svg(stacks: Sequence[Folded], opts: Optional[FlameOptions] = None) -> str:
    """The interactive SVG of ``stacks`` (see the module docstring)."""
    o = opts or FlameOptions()
    if o.palette not in PALETTES:
        from ..errors import KprobesError

        raise KprobesError(f"unknown colour palette {o.palette!r}",
                           hint="one of: " + ", ".join(sorted(PALETTES)))
    root = build_tree(stacks)
    total = root.value
    frames = layout(root)
    xpad = 10
    usable = o.width - 2 * xpad
    scale = usable / total if total else 0.0
    shown = [f for f in frames if f.w * scale >= o.min_width]
    depth = max((f.depth for f in shown), default=0) + 1
    top = o.font_size * 3 + (o.font_size + 6 if o.subtitle else 0)
    bottom = o.font_size * 2 + 10
    height = top + depth * o.frame_height + bottom
    fs = o.font_size
    out: List[str] = []
    w = out.append
    w('<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n')
    w(f'<svg version="1.1" xmlns="http://www.w3.org/2000/svg" width="{o.width}" '
      f'height="{height}" viewBox="0 0 {o.width} {height}" id="kpflame" '
      f'data-total="{total}" data-xpad="{xpad}" data-fs="{fs}" data-fh="{o.frame_height}" '
      f'data-top="{top}" data-depth="{depth}" data-unit={_attr(o.count_name)}>\n')
    w("<style>\n"
      "#kpflame text { font-family: Verdana, sans-serif; fill: #000; }\n"
      f"#kpflame .fr text {{ font-size: {fs}px; pointer-events: none; }}\n"
      "#kpflame .fr:hover rect { stroke: #000; stroke-width: 0.5; cursor: pointer; }\n"
      "#kpflame .fr.par { opacity: 0.5; }\n"
      f"#kpflame .btn {{ cursor: pointer; font-size: {fs}px; }}\n"
      "#kpflame .hide { display: none; }\n"
      "</style>\n")
    w(f'<rect x="0" y="0" width="{o.width}" height="{height}" fill="#f4f4ee"/>\n')
    w(f'<text x="{o.width / 2}" y="{fs * 2}" text-anchor="middle" '
      f'style="font-size:{fs + 5}px">{_xml(o.title)}</text>\n')
    if o.subtitle:
        w(f'<text x="{o.width / 2}" y="{fs * 3 + 4}" text-anchor="middle" fill="#555">'
          f"{_xml(o.subtitle)}</text>\n")
    w(f'<text id="unzoom" class="btn hide" x="{xpad}" y="{fs * 2}">Reset Zoom</text>\n')
    w(f'<text id="search" class="btn" x="{o.width - xpad - 110}" y="{fs * 2}">Search</text>\n')
    w(f'<text id="matched" x="{o.width - xpad}" y="{height - fs + 2}" text-anchor="end"></text>\n')
    w(f'<text id="details" x="{xpad}" y="{height - fs + 2}"> </text>\n')
    w('<g id="frames">\n')
    for f in shown:
        x = xpad + f.x * scale
        width = f.w * scale
        y = top + (depth - 1 - f.depth) * o.frame_height
        pct = 100.0 * f.w / total if total else 0.0
        fill = "rgb(220,220,220)" if f.depth == 0 else color(f.name, o.palette)
        tip = f"{f.name} ({f.w:,} {o.count_name}, {pct:.2f}%)"
        w(f'<g class="fr" data-n={_attr(f.name)} data-x="{f.x}" data-w="{f.w}" data-d="{f.depth}">'
          f"<title>{_xml(tip)}</title>"
          f'<rect x="{x:.2f}" y="{y}" width="{width:.2f}" height="{o.frame_height - 1}" '
          f'rx="2" ry="2" fill="{fill}"/>'
          f'<text x="{x + 3:.2f}" y="{y + o.frame_height - 4}">{_xml(_label(f.name, width, fs))}</text>'
          "</g>\n")
    w("</g>\n")
    w("<script><![CDATA[\n" + _SCRIPT + "\n]]></script>\n")
    w("</svg>\n")
    return "".join(out)


# The viewer script: written for this module (ES5, no dependencies).
_SCRIPT = r"""
(function () {
  "use strict";
  var svg = document.getElementById("kpflame");
  if (!svg) { return; }
  var num = function (el, a) { return parseFloat(el.getAttribute(a)); };
  var total = num(svg, "data-total"), xpad = num(svg, "data-xpad"), fs = num(svg, "data-fs");
  var unit = svg.getAttribute("data-unit");
  var usable = num(svg, "width") - 2 * xpad;
  var $ = function (id) { return svg.querySelector("#" + id); };
  var details = $("details");
  var matchedText = $("matched"), unzoomBtn = $("unzoom"), searchBtn = $("search");
  var frames = [];
  var nodes = svg.querySelectorAll("g.fr");
  for (var i = 0; i < nodes.length; i++) {
    var g = nodes[i], r = g.querySelector("rect");
    frames.push({ g: g, rect: r, text: g.querySelector("text"), name: g.getAttribute("data-n"),
                  x: num(g, "data-x"), w: num(g, "data-w"), d: num(g, "data-d"),
                  fill: r.getAttribute("fill") });
  }
  var state = { zoomed: null, term: null };

  function label(f, px) {
    var fit = Math.floor((px - 6) / (fs * 0.59));
    var t = f.name;
    if (fit < 3) { t = ""; } else if (t.length > fit) { t = t.substring(0, fit - 2) + ".."; }
    f.text.textContent = t;
  }
  function place(f, x, px) {
    f.rect.setAttribute("x", x.toFixed(2));
    f.rect.setAttribute("width", px.toFixed(2));
    f.text.setAttribute("x", (x + 3).toFixed(2));
    label(f, px);
  }
  function pct(n) { return total ? (100 * n / total).toFixed(2) : "0.00"; }

  function zoom(target) {
    var scale = usable / target.w;
    for (var i = 0; i < frames.length; i++) {
      var f = frames[i];
      var inside = f.d >= target.d && f.x >= target.x && f.x + f.w <= target.x + target.w;
      var above = f.d < target.d && f.x <= target.x && f.x + f.w >= target.x + target.w;
      if (inside) {
        f.g.style.display = "";
        f.g.classList.remove("par");
        place(f, xpad + (f.x - target.x) * scale, f.w * scale);
      } else if (above) {
        f.g.style.display = "";
        f.g.classList.add("par");
        place(f, xpad, usable);
      } else {
        f.g.style.display = "none";
      }
    }
    state.zoomed = target.d === 0 ? null : target;
    if (state.zoomed) { unzoomBtn.classList.remove("hide"); } else { unzoomBtn.classList.add("hide"); }
    if (state.term !== null) { search(state.term); }
  }
  function unzoom() {
    var root = null;
    for (var i = 0; i < frames.length; i++) { if (frames[i].d === 0) { root = frames[i]; } }
    if (root) { zoom(root); }
  }

  function regex(term) {
    try { return new RegExp(term); } catch (e) {
      return new RegExp(term.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
    }
  }
  function search(term) {
    var re = regex(term), spans = [], count = 0;
    state.term = term;
    for (var i = 0; i < frames.length; i++) {
      var f = frames[i];
      if (f.d > 0 && re.test(f.name)) {
        f.rect.setAttribute("fill", "rgb(230,0,230)");
        f.g.classList.add("match");
        spans.push([f.x, f.x + f.w]);
        count++;
      } else {
        f.rect.setAttribute("fill", f.fill);
        f.g.classList.remove("match");
      }
    }
    spans.sort(function (a, b) { return a[0] - b[0]; });
    var covered = 0, end = -1;
    for (var j = 0; j < spans.length; j++) {
      var s = Math.max(spans[j][0], end), e = spans[j][1];
      if (e > s) { covered += e - s; }
      if (e > end) { end = e; }
    }
    matchedText.textContent = count ? "Matched: " + pct(covered) + "%" : "Matched: none";
    searchBtn.textContent = "Clear search";
    return { frames: count, samples: covered, percent: total ? 100 * covered / total : 0 };
  }
  function clearSearch() {
    state.term = null;
    for (var i = 0; i < frames.length; i++) {
      frames[i].rect.setAttribute("fill", frames[i].fill);
      frames[i].g.classList.remove("match");
    }
    matchedText.textContent = "";
    searchBtn.textContent = "Search";
  }
  function ask() {
    if (state.term !== null) { clearSearch(); return; }
    var term = window.prompt("Search (regular expression):", "");
    if (term) { search(term); }
  }
  function frameOf(el) {
    while (el && el !== svg) {
      if (el.classList && el.classList.contains("fr")) { return el; }
      el = el.parentNode;
    }
    return null;
  }
  function find(g) {
    for (var i = 0; i < frames.length; i++) { if (frames[i].g === g) { return frames[i]; } }
    return null;
  }

  svg.addEventListener("click", function (ev) {
    var g = frameOf(ev.target);
    if (g) { zoom(find(g)); return; }
    if (ev.target === unzoomBtn) { unzoom(); } else if (ev.target === searchBtn) { ask(); }
  });
  svg.addEventListener("mouseover", function (ev) {
    var g = frameOf(ev.target), f = g && find(g);
    if (f) { details.textContent = f.name + " (" + f.w.toLocaleString() + " " + unit + ", " + pct(f.w) + "%)"; }
  });
  svg.addEventListener("mouseout", function () { details.textContent = " "; });
  window.addEventListener("keydown", function (ev) {
    if (ev.keyCode === 114 || ((ev.ctrlKey || ev.metaKey) && ev.keyCode === 70)) { ev.preventDefault(); ask(); }
  });

  window.kpflame = {
    search: search, clearSearch: clearSearch, unzoom: unzoom,
    zoom: function (name) {
      for (var i = 0; i < frames.length; i++) { if (frames[i].name === name) { zoom(frames[i]); return true; } }
      return false;
    }
  };
  var m = /[?&]s=([^&]*)/.exec(window.location.search || "");
  if (m) { search(decodeURIComponent(m[1])); }
})();
"""
