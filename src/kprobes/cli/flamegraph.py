"""``kprobes flamegraph [FILE|-] [-o OUT.svg]``: folded stacks to an interactive SVG."""

from __future__ import annotations

import argparse
import sys
from typing import List

from ..errors import KprobesError
from .main import ArgParser, Streams, parse

DESCRIPTION = """\
Turn folded stacks ("root;caller;leaf COUNT" lines, as written by
'kprobes --folded', bpftrace's folded output or stackcollapse-*) into an
interactive SVG flame graph: click a frame to zoom, Search (Ctrl-F) to
highlight frames matching a regular expression, hover for samples and
percentages.  Open the SVG in a browser.

examples:
  kprobes --folded -e 'profile:hz:99 { @[kstack] = count(); }' --duration 10 > out.folded
  kprobes flamegraph out.folded -o cpu.svg --title 'CPU, 10 s'
  kprobes --folded -e 'profile:hz:99 /pid == 1234/ { @[ustack, comm] = count(); }' \\
      --duration 5 | kprobes flamegraph -o app.svg --colors aqua
"""


def build_parser() -> ArgParser:
    from ..export.flamegraph import PALETTES

    p = ArgParser(prog="kprobes flamegraph", description=DESCRIPTION,
                  usage="kprobes flamegraph [FILE|-] [-o OUT.svg] [options]",
                  formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("input", nargs="?", default="-", metavar="FILE|-",
                   help="folded stacks (default: standard input)")
    p.add_argument("-o", "--output", metavar="OUT.svg", help="write the SVG here (default: stdout)")
    p.add_argument("--title", default="Flame Graph", help="title (default 'Flame Graph')")
    p.add_argument("--subtitle", default="", help="second line under the title")
    p.add_argument("--width", type=int, default=1200, metavar="PX", help="image width (default 1200)")
    p.add_argument("--height", type=int, default=16, metavar="PX", help="frame height (default 16)")
    p.add_argument("--colors", default="hot", choices=sorted(PALETTES), help="palette (default hot)")
    p.add_argument("--countname", default="samples", help="what counts are (default samples)")
    p.add_argument("--minwidth", type=float, default=0.1, metavar="PX",
                   help="leave out frames narrower than PX pixels (default 0.1)")
    return p


def run(args: List[str], streams: Streams) -> int:
    ns = parse(build_parser(), args, streams)
    if ns is None:
        return 0
    from ..export.flamegraph import FlameOptions, render_svg
    from ..export.folded import parse_folded

    if ns.width < 100 or ns.width > 100000:
        raise KprobesError(f"--width {ns.width}: out of range", hint="give 100..100000 pixels")
    if ns.height < 8 or ns.height > 200:
        raise KprobesError(f"--height {ns.height}: out of range", hint="give 8..200 pixels")
    if ns.input == "-":
        text = sys.stdin.read()
        where = "standard input"
    else:
        try:
            with open(ns.input, encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except OSError as e:
            raise KprobesError(f"cannot read {ns.input}: {e.strerror}",
                               hint="give a file of folded stacks, or - for standard input") from None
        where = ns.input
    stacks, ignored = parse_folded(text)
    if not stacks:
        raise KprobesError(f"no folded stacks in {where}",
                           hint="lines look like 'main;foo;bar 42': "
                                "kprobes --folded -e 'profile:hz:99 { @[kstack] = count(); }'")
    if ignored:
        streams.err.write(f"kprobes flamegraph: ignored {ignored} line(s) that are not folded stacks\n")
    svg = render_svg(stacks, FlameOptions(
        title=ns.title, subtitle=ns.subtitle, width=ns.width, frame_height=ns.height,
        palette=ns.colors, count_name=ns.countname, min_width=ns.minwidth))
    if ns.output:
        try:
            with open(ns.output, "w", encoding="utf-8") as f:
                f.write(svg)
        except OSError as e:
            raise KprobesError(f"-o {ns.output}: {e.strerror}",
                               hint="give a file in a directory you can write to") from None
        total = sum(n for _, n in stacks)
        streams.err.write(f"kprobes flamegraph: {len(stacks)} stacks, {total} {ns.countname} -> {ns.output}\n")
    else:
        streams.out.write(svg)
    return 0
