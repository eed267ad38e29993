"""Folded stacks from maps, their parsing, the flame graph's tree, layout and SVG (offline)."""

from __future__ import annotations

import io
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kprobes.agg.aggregations import Count, Log2Hist, Sum
from kprobes.agg.bpfmap import BpfMap
from kprobes.engines.runtime import Output
from kprobes.export.flamegraph import FlameOptions, build_tree, color, layout, render_svg
from kprobes.export.folded import (
    NO_STACK,
    fold_map,
    format_folded,
    frame_name,
    parse_folded,
    stack_map_names,
)
from kprobes.lang import check, parse_program
from tests.helpers import run_cli

SVG_NS = "{http://www.w3.org/2000/svg}"

# Stacks as the BPF engine prints them as map keys: leaf first, 4-space indent.
K1 = "\n    vfs_read+5\n    ksys_read+101\n    do_syscall_64+56\n"
K2 = "\n    vfs_read+9\n    ksys_read+101\n    do_syscall_64+56\n"
K3 = "\n    schedule+12\n    do_syscall_64+70\n"
U1 = "\n    spin_inner+8\n    main+29\n    __libc_start_call_main+122\n"


def _map(name: str, entries: list, template=None) -> BpfMap:
    m = BpfMap(name, template or Count())
    for key, n in entries:
        for _ in range(n):
            m.update(key)
    return m


def test_frame_names_drop_offsets_unless_asked() -> None:
    assert frame_name("vfs_read+5") == "vfs_read"
    assert frame_name("vfs_read+5", offsets=True) == "vfs_read+5"
    assert frame_name("spin+0x1a") == "spin"
    assert frame_name("func+12 (/usr/lib/libc.so.6)") == "func (/usr/lib/libc.so.6)"
    assert frame_name("0x7f00dead") == "0x7f00dead"
    assert frame_name("a;b+3") == "a:b"  # ';' is the separator


def test_kstack_map_folds_root_first_and_merges_offsets() -> None:
    m = _map("@", [((K1,), 3), ((K2,), 2), ((K3,), 4)])
    assert fold_map(m) == [
        (("do_syscall_64", "ksys_read", "vfs_read"), 5),  # two offsets of vfs_read: one frame
        (("do_syscall_64", "schedule"), 4),
    ]
    with_offsets = dict(fold_map(m, offsets=True))
    assert with_offsets[("do_syscall_64+56", "ksys_read+101", "vfs_read+5")] == 3
    assert with_offsets[("do_syscall_64+56", "ksys_read+101", "vfs_read+9")] == 2


def test_other_key_parts_are_root_frames_and_stacks_reverse() -> None:
    m = _map("@", [((U1, "spin"), 7), (("", "idle"), 2)])
    assert format_folded([m]) == (
        f"idle;{NO_STACK} 2\n"
        "spin;__libc_start_call_main;main;spin_inner 7\n"
    )
    both = _map("@", [((K3, U1, "spin"), 1)])
    assert fold_map(both) == [(("spin", "__libc_start_call_main", "main", "spin_inner",
                                "do_syscall_64", "schedule"), 1)]


def test_several_stack_maps_are_prefixed_and_others_left_out() -> None:
    a = _map("@a", [((K3,), 1)])
    b = BpfMap("@b", Sum())
    b.update((K1,), 10)
    b.update((K1,), -3)
    plain = _map("@c", [(("x",), 5)])
    hist = BpfMap("@h", Log2Hist())
    hist.update((K1,), 4)
    assert format_folded([plain, b, hist, a]) == (
        "@a;do_syscall_64;schedule 1\n@b;do_syscall_64;ksys_read;vfs_read 7\n")


def test_output_folded_mode_prints_only_folded_stacks() -> None:
    buf = io.StringIO()
    out = Output(buf, "folded")
    out.attached(1)
    out.exit_maps([_map("@", [((K3,), 2)]), _map("@n", [(("x",), 1)])])
    assert buf.getvalue() == "do_syscall_64;schedule 2\n"
    buf = io.StringIO()
    Output(buf, "folded+offsets").exit_maps([_map("@", [((K3,), 2)])])
    assert buf.getvalue() == "do_syscall_64+70;schedule+12 2\n"


def test_stack_map_names_come_from_key_types() -> None:
    prog = "profile:hz:99 { @s[kstack, comm] = count(); @n[comm] = count(); @u[ustack] = count(); }"
    checked = check(parse_program(prog))
    assert stack_map_names(checked) == ["@s", "@u"]


def test_parse_folded_skips_what_is_not_a_stack() -> None:
    text = ("Attaching 1 probe...\n\nmain;a;b 3\nmain;a 1\nweird line\n"
            "with space;x y 2\nfrac;f 2.6\nzero;z 0\n")
    stacks, ignored = parse_folded(text)
    assert stacks == [(("main", "a", "b"), 3), (("main", "a"), 1), (("with space", "x y"), 2),
                      (("frac", "f"), 3)]
    assert ignored == 2


def test_tree_merges_identical_prefixes_and_widths_sum() -> None:
    stacks = [(("main", "a", "b"), 3), (("main", "a"), 1), (("main", "c"), 2),
              (("main", "a", "b"), 4), (("other",), 5)]
    root = build_tree(stacks)
    assert root.value == 15
    main = root.children["main"]
    assert main.value == 10 and main.self_value == 0
    assert list(main.children) == ["a", "c"]  # one "a" node for three stacks
    assert main.children["a"].value == 8 and main.children["a"].self_value == 1
    frames = layout(root)
    assert frames[0].name == "all" and frames[0].w == 15 and frames[0].x == 0
    by_parent: dict = {}
    for f in frames:
        assert f.w > 0
    # Children lie inside their parent and side by side, in name order.
    spans = {(f.depth, f.name): (f.x, f.x + f.w) for f in frames}
    assert spans[(1, "main")] == (0, 10) and spans[(1, "other")] == (10, 15)
    assert spans[(2, "a")] == (0, 8) and spans[(2, "c")] == (8, 10)
    assert spans[(3, "b")] == (0, 7)
    for f in frames:
        kids = [g for g in frames if g.depth == f.depth + 1 and f.x <= g.x < f.x + f.w]
        by_parent[(f.depth, f.name)] = kids
        assert sum(k.w for k in kids) <= f.w
        assert all(k.x + k.w <= f.x + f.w for k in kids)
    assert sum(k.w for k in by_parent[(0, "all")]) == 15


def test_svg_is_well_formed_and_escapes_names() -> None:
    nasty = 'op<T>&"x" \'q\''
    stacks = [(("main", nasty), 3), (("main", "plain"), 1)]
    svg = render_svg(stacks, FlameOptions(title="t <&> t", width=1000))
    root = ET.fromstring(svg.encode("utf-8"))
    frames = root.findall(f".//{SVG_NS}g[@class='fr']")
    names = {g.get("data-n"): g for g in frames}
    assert set(names) == {"all", "main", nasty, "plain"}
    title = names[nasty].find(f"{SVG_NS}title")
    assert title is not None and title.text == f"{nasty} (3 samples, 75.00%)"
    # Pixel widths: 10 px padding on each side, 980 px for 4 samples.
    rect = names[nasty].find(f"{SVG_NS}rect")
    assert rect is not None and float(rect.get("width", "0")) == pytest.approx(735.0)
    assert float(names["all"].find(f"{SVG_NS}rect").get("width", "0")) == pytest.approx(980.0)
    assert any(t.text == "t <&> t" for t in root.iter(f"{SVG_NS}text"))
    # Control characters and undecodable bytes stay out of the XML.
    ET.fromstring(render_svg([(("bad\x01name", "x\udcff"), 1)]).encode("utf-8"))


def test_narrow_frames_are_left_out_but_counted() -> None:
    stacks = [(("big",), 100000), (("tiny",), 1)]
    svg = render_svg(stacks, FlameOptions(width=200))
    assert 'data-n="big"' in svg and 'data-n="tiny"' not in svg
    assert 'data-total="100001"' in svg


def test_colors_are_stable_and_in_range() -> None:
    assert color("vfs_read") == color("vfs_read")
    r, g, b = (int(v) for v in color("vfs_read", "mem")[4:-1].split(","))
    assert 0 <= r <= 60 and 170 <= g <= 230 and 40 <= b <= 170


def test_cli_flamegraph_file_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "in.folded"
    src.write_text("Attaching 1 probe...\nmain;work 5\nmain;idle 5\n")
    out = tmp_path / "out.svg"
    rc, _, err = run_cli(["flamegraph", str(src), "-o", str(out), "--title", "T", "--colors", "io"])
    assert rc == 0, err
    assert "ignored 1 line" in err and "2 stacks, 10 samples" in err
    assert 'data-n="work"' in out.read_text()
    monkeypatch.setattr(sys, "stdin", io.StringIO("a;b 1\n"))
    rc, svg, _ = run_cli(["flamegraph"])
    assert rc == 0 and svg.startswith("<?xml") and 'data-n="b"' in svg
    (tmp_path / "empty").write_text("nothing here\n")
    rc, _, err = run_cli(["flamegraph", str(tmp_path / "empty")])
    assert rc == 1 and "no folded stacks" in err and "hint:" in err
    rc, _, err = run_cli(["flamegraph", str(tmp_path / "missing")])
    assert rc == 1 and "cannot read" in err
    rc, _, err = run_cli(["flamegraph", str(src), "--colors", "plaid"])
    assert rc == 2
