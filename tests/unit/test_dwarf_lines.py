"""DWARF line tables, variables and fetcharg locations on a small C program compiled here (gcc -g -O0)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kprobes.backends.dwarf import (
    DebugInfo,
    DwarfError,
    FunctionSource,
    ProbePoint,
    SourceLine,
    Variable,
    debug_package_hint,
    find_debug_vmlinux,
    format_listing,
    format_variables,
)
from kprobes.backends.persist import ProbeManager
from kprobes.backends.tracefs.fs import TraceFS
from kprobes.errors import ELFError, FeatureMissing

SOURCE = """\
#include <stdio.h>

struct acc {
    long total;
    int steps;
    char name[8];
};

static long work(int n, struct acc *a)
{
    long sum = 0;
    for (int i = 0; i < n; i++) {
        long sq = (long)i * i + 7;
        sum += sq;
        a->steps++;
    }

    a->total = sum;
    return sum;
}

int main(int argc, char **argv)
{
    struct acc a = {0, 0, "acc"};
    long r = work(argc + 2, &a);
    printf("%ld %d %s\\n", r, a.steps, argv[0]);
    return 0;
}
"""


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    d = tmp_path_factory.mktemp("dwarf")
    (d / "prog.c").write_text(SOURCE)
    subprocess.run(["gcc", "-g", "-O0", "-o", str(d / "prog"), str(d / "prog.c")], check=True)
    subprocess.run(["gcc", "-O0", "-o", str(d / "nodebug"), str(d / "prog.c")], check=True)
    return d


def _line_of(text: str) -> int:
    return SOURCE.splitlines().index(text) + 1


def test_listing_numbers_lines_from_the_declaration(prog: Path) -> None:
    with DebugInfo(str(prog / "prog")) as d:
        src = d.source("work")
    decl = _line_of("static long work(int n, struct acc *a)")
    assert src.decl_line == decl and src.source_found
    assert src.file == str(prog / "prog.c")
    by_rel = {ln.relative: ln for ln in src.lines}
    assert by_rel[0].text == "static long work(int n, struct acc *a)"
    assert not by_rel[0].probeable  # gcc starts the function at the '{' line
    body = _line_of("        sum += sq;") - decl
    assert by_rel[body].probeable and by_rel[body].text == "        sum += sq;"
    blank = _line_of("    a->total = sum;") - decl - 1
    assert by_rel[blank].text == "" and not by_rel[blank].probeable
    assert src.lines[-1].text == "}"
    text = format_listing(src)
    assert text.splitlines()[0] == f"<work@{prog / 'prog.c'}:0>"
    assert f"{body:7d}          sum += sq;" in text.splitlines()
    assert "         static long work(int n, struct acc *a)" in text.splitlines()


def test_point_at_line_and_entry(prog: Path) -> None:
    decl = _line_of("static long work(int n, struct acc *a)")
    body = _line_of("        sum += sq;") - decl
    with DebugInfo(str(prog / "prog")) as d:
        pt = d.point("work", body)
        entry = d.point("work")
        after = d.point("work", skip_prologue=True)
        with pytest.raises(DwarfError, match="has no code") as ei:
            d.point("work", body + 2)  # the loop's closing brace: no code of its own at -O0
        assert "probeable lines" in (ei.value.hint or "")
        with pytest.raises(DwarfError, match="not in the debug info"):
            d.point("no_such_function")
    assert pt.line == decl + body and pt.offset == pt.address - entry.address > 0
    assert entry.offset == 0 and after.address > entry.address


def test_variables_in_scope_at_a_loop_line(prog: Path) -> None:
    decl = _line_of("static long work(int n, struct acc *a)")
    with DebugInfo(str(prog / "prog")) as d:
        pt = d.point("work", _line_of("        sum += sq;") - decl)
        names = {v.name: v for v in d.variables(pt)}
        outside = d.point("work", _line_of("    a->total = sum;") - decl)
        names_out = {v.name for v in d.variables(outside)}
    assert set(names) == {"n", "a", "sum", "i", "sq"}
    assert names["n"].is_param and not names["sq"].is_param
    assert names["sq"].type_name == "long int" and names["sq"].fetch_type == "s64"
    assert names["a"].type_name == "struct acc*" and names["a"].fetch_type == "x64"
    assert names["i"].fetch_type == "s32"
    # -O0 x86-64: frame base is the CFA, rbp+16 after the prologue: locals are -N(%bp)
    assert all(v.fetcharg and v.fetcharg.endswith("(%bp)") for v in names.values())
    assert "i" not in names_out and "sq" not in names_out  # the loop's block has ended
    text = format_variables(pt, list(names.values()))
    assert text.splitlines()[0].startswith("Available variables at work:")
    assert "\tsq" in text


def test_member_paths_and_strings(prog: Path) -> None:
    decl = _line_of("int main(int argc, char **argv)")
    with DebugInfo(str(prog / "prog")) as d:
        pt = d.point("main", _line_of('    printf("%ld %d %s\\n", r, a.steps, argv[0]);') - decl)
        a_loc = {v.name: v for v in d.variables(pt)}["a"].fetcharg
        steps = d.fetcharg(pt, "a.steps")
        name = d.fetcharg(pt, "a.name")
        total = d.fetcharg(pt, "a.total", "x64")
        argv = d.fetcharg(pt, "argv")
        decl_w = _line_of("static long work(int n, struct acc *a)")
        pw = d.point("work", _line_of("        a->steps++;") - decl_w)
        arrow = d.fetcharg(pw, "a->steps")
        with pytest.raises(DwarfError, match="no member"):
            d.fetcharg(pt, "a.nope")
        with pytest.raises(DwarfError, match="not a scalar"):
            d.fetcharg(pt, "a")
        with pytest.raises(DwarfError, match="no variable 'zz'"):
            d.fetcharg(pt, "zz")
        with pytest.raises(DwarfError, match="needs a pointer"):
            d.fetcharg(pt, "a->steps")
    assert a_loc is not None
    off = int(a_loc.split("(")[0])
    assert steps == ("steps", f"{off + 8:+d}(%bp):s32")
    assert name == ("name", f"{off + 12:+d}(%bp):string")
    assert total == ("total", f"{off:+d}(%bp):x64")
    assert argv[1].endswith(":x64")
    a_work = arrow[1].split("(", 1)[1].rsplit(")", 1)[0]
    assert arrow == ("steps", f"+8({a_work}):s32")


def test_build_uprobe_line_definition(prog: Path) -> None:
    decl = _line_of("static long work(int n, struct acc *a)")
    body = _line_of("        sum += sq;") - decl
    mgr = ProbeManager(TraceFS("/nonexistent"))
    definition, group = mgr.build(f"work:{body} sq i total=a->total", binary=str(prog / "prog"))
    words = definition.split()
    assert group is None
    assert words[0] == f"p:work_L{body}"
    with DebugInfo(str(prog / "prog")) as d:
        addr = d.point("work", body).address
    from kprobes.backends.symbols.elf import ELFFile

    with ELFFile(str(prog / "prog")) as elf:
        assert words[1] == f"{prog / 'prog'}:0x{elf.vaddr_to_offset(addr):x}"
    assert [w.split("=")[0] for w in words[2:]] == ["sq", "i", "total"]
    assert words[2].endswith(":s64") and words[4].startswith("total=+0(")
    params, _ = mgr.build("work $params", binary=str(prog / "prog"))
    assert [w.split("=")[0] for w in params.split()[2:]] == ["a", "n"]


def test_no_debug_info_is_a_clear_error(prog: Path) -> None:
    with DebugInfo(str(prog / "nodebug")) as d:
        with pytest.raises(ELFError, match="no DWARF debug info"):
            d.source("work")


def test_format_listing_is_perf_layout() -> None:
    src = FunctionSource("f", "/src/f.c", 10, (
        SourceLine(10, 0, "int f(void)", False), SourceLine(11, 1, "{", True),
        SourceLine(12, 2, "", False), SourceLine(13, 3, "\treturn 1;", True),
        SourceLine(14, 4, None, True),
    ), True)  # fmt: skip
    assert format_listing(src) == (
        "<f@/src/f.c:0>\n         int f(void)\n      1  {\n\n      3  \treturn 1;\n      4\n"
    )
    pt = ProbePoint("f", 0x1010, 16, 13, 3, "/src/f.c")
    text = format_variables(pt, [Variable("x", "int", True, "%di", "s32"),
                                 Variable("y", "long", False, None, None, why_not="optimized out")])  # fmt: skip
    assert text == ("Available variables at f:3\n        @<f+16>\n                int\tx\n"
                    "                (long\ty: optimized out)\n")  # fmt: skip


@pytest.mark.parametrize(
    "os_release, package",
    [
        ('ID=debian\n', "linux-image-REL-dbg"),
        ('ID=ubuntu\nID_LIKE=debian\n', "linux-image-REL-dbgsym"),
        ('ID=fedora\n', "kernel-debuginfo"),
        ('ID="rocky"\nID_LIKE="rhel centos fedora"\n', "kernel-debuginfo"),
        ('ID=arch\n', "linux-image-REL-dbgsym"),  # unknown: every family is named
    ],
)
def test_missing_kernel_debuginfo_names_the_package(tmp_path: Path, os_release: str, package: str) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text(os_release)
    with pytest.raises(FeatureMissing) as ei:
        find_debug_vmlinux(release="6.1.0-9-amd64", root=str(tmp_path))
    text = ei.value.format()
    assert package.replace("REL", "6.1.0-9-amd64") in text
    assert str(tmp_path / "usr/lib/debug/boot/vmlinux-6.1.0-9-amd64") in text
    assert "-k VMLINUX" in text
    if "debian" in os_release and "ubuntu" not in os_release:
        assert "linux-image-amd64-dbg" in debug_package_hint("6.1.0-9-amd64", os_release)


def test_debug_vmlinux_found_in_distribution_paths(tmp_path: Path) -> None:
    for rel in ("usr/lib/debug/lib/modules/6.12.0/vmlinux", "usr/lib/debug/boot/vmlinux-6.1.0"):
        os.makedirs(tmp_path / os.path.dirname(rel), exist_ok=True)
        (tmp_path / rel).write_bytes(b"\x7fELF")
    assert find_debug_vmlinux(release="6.12.0", root=str(tmp_path)).endswith("modules/6.12.0/vmlinux")
    assert find_debug_vmlinux(release="6.1.0", root=str(tmp_path)).endswith("boot/vmlinux-6.1.0")
    with pytest.raises(FeatureMissing, match="no such file"):
        find_debug_vmlinux(str(tmp_path / "missing"), root=str(tmp_path))
