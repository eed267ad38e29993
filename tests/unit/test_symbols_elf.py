"""ELF reader on binaries gcc builds here, checked against readelf and arithmetic."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kprobes.backends.symbols.elf import ELFFile, resolve_uprobe, symbols_matching
from kprobes.backends.symbols.ldcache import resolve_library
from kprobes.errors import ELFError

GCC = shutil.which("gcc") or shutil.which("cc")
READELF = shutil.which("readelf")

PROG = r"""
#include <stdio.h>
int kp_counter;
__attribute__((noinline)) int kp_target(int x) { kp_counter += x; return x * 3 + 1; }
__attribute__((noinline)) static int kp_static(int x) { return x ^ 5; }
__attribute__((noinline)) int kp_other(int x) { return kp_static(x) + 2; }
int main(int argc, char **argv) {
    int s = 0;
    for (int i = 0; i < 5; i++) s += kp_target(i) + kp_other(i);
    printf("%d\n", s);
    return 0;
}
"""

LIB = r"""
__attribute__((noinline)) int kp_lib_fn(int x) { return x + 7; }
__attribute__((noinline)) int kp_lib_other(int x) { return x - 7; }
"""

# name -> (source, extra gcc flags).  "pie_moved"/"shared_moved" put code at a
# virtual address that differs from its file offset in a position-independent
# file, so vaddr == offset cannot pass by accident.
BUILDS = {
    "nopie": (PROG, ["-no-pie", "-fno-pie"]),
    "pie": (PROG, ["-pie", "-fPIE"]),
    "pie_moved": (PROG, ["-pie", "-fPIE", "-Wl,--section-start=.text=0x30000"]),
    "shared": (LIB, ["-shared", "-fPIC"]),
    "shared_moved": (LIB, ["-shared", "-fPIC", "-Wl,-Ttext-segment=0x10000"]),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if GCC is None:
        pytest.skip("no C compiler (gcc) on this machine")
    d = tmp_path_factory.mktemp("elfbin")
    out: dict[str, str] = {}
    for name, (src, flags) in BUILDS.items():
        c = d / f"{name}.c"
        c.write_text(src)
        target = d / (f"lib{name}.so" if "shared" in name else name)
        subprocess.run(
            [GCC, "-O1", "-g0", *flags, "-o", str(target), str(c)], check=True, capture_output=True
        )
        out[name] = str(target)
    stripped = d / "stripped"
    shutil.copy(out["pie"], stripped)
    subprocess.run(["strip", "--strip-all", str(stripped)], check=True, capture_output=True)
    out["stripped"] = str(stripped)
    return out


def readelf_symbols(path: str) -> dict[str, tuple[int, int, str]]:
    """name -> (value, size, type) from ``readelf -sW`` (defined symbols)."""
    text = subprocess.run(
        [READELF or "readelf", "-sW", path], check=True, capture_output=True, text=True
    ).stdout
    out: dict[str, tuple[int, int, str]] = {}
    for line in text.splitlines():
        m = re.match(r"\s*\d+:\s+([0-9a-f]+)\s+(\d+)\s+(\w+)\s+\w+\s+\w+\s+(\w+)\s+(\S+)", line)
        if m and m.group(4) != "UND":
            out.setdefault(m.group(5), (int(m.group(1), 16), int(m.group(2)), m.group(3)))
    return out


def readelf_loads(path: str) -> list[tuple[int, int, int]]:
    """(offset, vaddr, filesz) of each LOAD from ``readelf -lW``."""
    text = subprocess.run(
        [READELF or "readelf", "-lW", path], check=True, capture_output=True, text=True
    ).stdout
    return [
        (int(m.group(1), 16), int(m.group(2), 16), int(m.group(3), 16))
        for m in re.finditer(
            r"LOAD\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x[0-9a-f]+\s+"
            r"0x([0-9a-f]+)",
            text,
        )
    ]


def expected_offset(path: str, vaddr: int) -> int:
    for off, va, fsz in readelf_loads(path):
        if va <= vaddr < va + fsz:
            return vaddr - va + off
    raise AssertionError(f"0x{vaddr:x} not in a LOAD of {path}")


needs_readelf = pytest.mark.skipif(READELF is None, reason="binutils (readelf) not installed")


@needs_readelf
@pytest.mark.parametrize("name", list(BUILDS))
def test_symbols_and_offsets_match_readelf(built: dict[str, str], name: str) -> None:
    path = built[name]
    ref = readelf_symbols(path)
    funcs = (
        ["kp_lib_fn", "kp_lib_other"]
        if "shared" in name
        else ["kp_target", "kp_other", "kp_static", "main"]
    )
    with ELFFile(path) as elf:
        for fn in funcs:
            loc = elf.locate(fn)
            value, size, typ = ref[fn]
            assert typ == "FUNC"
            assert (loc.vaddr, loc.size) == (value, size)
            assert loc.offset == expected_offset(path, value)
        names = elf.function_names("kp_*")
        assert set(names) == {
            n for n, (_, _, t) in ref.items() if n.startswith("kp_") and t == "FUNC"
        }


def test_offset_differs_from_vaddr_where_expected(built: dict[str, str]) -> None:
    """Guards the arithmetic itself, without readelf."""
    for name in ("nopie", "pie_moved", "shared_moved"):
        with ELFFile(built[name]) as elf:
            fn = "kp_lib_fn" if "shared" in name else "kp_target"
            loc = elf.locate(fn)
            assert loc.offset != loc.vaddr
            seg = next(s for s in elf.segments() if s.type == 1 and s.contains_vaddr(loc.vaddr))
            assert loc.offset == loc.vaddr - seg.vaddr + seg.offset
            # the bytes at that offset are the function's first instruction, not padding
            with open(built[name], "rb") as fh:
                fh.seek(loc.offset)
                assert fh.read(1) not in (b"", b"\x00")


def test_file_kinds(built: dict[str, str]) -> None:
    kinds = {n: ELFFile(built[n]) for n in ("nopie", "pie", "shared")}
    try:
        assert not kinds["nopie"].is_pie and not kinds["nopie"].is_shared_object
        assert kinds["pie"].is_pie and not kinds["pie"].is_shared_object
        assert kinds["shared"].is_shared_object and not kinds["shared"].is_pie
        assert kinds["pie"].describe() == "ELF64 LSB PIE executable"
    finally:
        for e in kinds.values():
            e.close()


def test_plus_offset_and_spec_errors(built: dict[str, str]) -> None:
    base = resolve_uprobe(built["nopie"], "kp_target")
    assert resolve_uprobe(built["nopie"], "kp_target+0x2").offset == base.offset + 2
    assert resolve_uprobe(built["nopie"], "kp_target+3").offset == base.offset + 3
    with pytest.raises(ELFError, match="invalid symbol"):
        resolve_uprobe(built["nopie"], "kp_target+zz")


@needs_readelf
def test_build_id_matches_readelf(built: dict[str, str]) -> None:
    text = subprocess.run(
        ["readelf", "-n", built["pie"]], check=True, capture_output=True, text=True
    ).stdout
    m = re.search(r"Build ID:\s*([0-9a-f]+)", text)
    with ELFFile(built["pie"]) as elf:
        assert elf.build_id() == (m.group(1) if m else None)


def test_imported_symbol_points_to_library(built: dict[str, str]) -> None:
    with pytest.raises(ELFError, match="imported") as ei:
        resolve_uprobe(built["nopie"], "printf")
    assert ei.value.hint and "libc:printf" in ei.value.hint


def test_not_found_suggests_close_names(built: dict[str, str]) -> None:
    with pytest.raises(ELFError) as ei:
        resolve_uprobe(built["nopie"], "kp_targte")
    assert "close names: kp_target" in ei.value.message


def test_stripped_binary(built: dict[str, str], tmp_path: Path) -> None:
    with ELFFile(built["stripped"], debug_root=str(tmp_path)) as elf:
        assert elf.stripped
        with pytest.raises(ELFError) as ei:
            elf.locate("kp_target")
        assert ei.value.hint and "debug symbols" in ei.value.hint


def test_stripped_binary_uses_detached_debug_file(built: dict[str, str], tmp_path: Path) -> None:
    with ELFFile(built["stripped"]) as elf:
        bid = elf.build_id()
    assert bid
    dbg = tmp_path / ".build-id" / bid[:2] / f"{bid[2:]}.debug"
    dbg.parent.mkdir(parents=True)
    subprocess.run(
        ["objcopy", "--only-keep-debug", built["pie"], str(dbg)], check=True, capture_output=True
    )
    with ELFFile(built["stripped"], debug_root=str(tmp_path)) as elf, ELFFile(built["pie"]) as full:
        got, want = elf.locate("kp_static"), full.locate("kp_static")
        assert (got.vaddr, got.offset, got.size) == (want.vaddr, want.offset, want.size)
        assert got.path == built["stripped"]
        assert "kp_static" in elf.function_names("kp_*")


def test_not_elf(tmp_path: Path) -> None:
    p = tmp_path / "x.txt"
    p.write_text("hello world, not an ELF\n")
    with pytest.raises(ELFError, match="not an ELF"):
        resolve_uprobe(str(p), "main")
    with pytest.raises(ELFError, match="directory"):
        resolve_uprobe(str(tmp_path), "main")


def test_symbols_matching_globs(built: dict[str, str]) -> None:
    got = symbols_matching(built["nopie"], ["kp_t*", "mai?"])
    assert got == ["kp_target", "main"]


# -- the host's own libraries ---------------------------------------------------------


def test_host_libc_malloc_in_dynsym() -> None:
    try:
        libc = resolve_library("libc")
    except ELFError as exc:
        pytest.skip(f"no glibc here: {exc}")
    assert os.path.basename(libc).startswith("libc.so")
    with ELFFile(libc) as elf:
        dyn = [s for s in elf.symbols(".dynsym") if s.name == "malloc" and s.is_defined]
        assert dyn, "malloc must be exported by libc"
        loc = elf.locate("malloc")
        assert loc.vaddr == dyn[0].value or any(loc.vaddr == s.value for s in dyn)
        assert elf.vaddr_to_offset(loc.vaddr) == loc.offset
        if READELF:
            ref = readelf_symbols(libc)
            key = next(k for k in ref if k.split("@")[0] == "malloc")
            assert ref[key][0] == loc.vaddr
            assert loc.offset == expected_offset(libc, loc.vaddr)


def test_host_bash_readline() -> None:
    bash = "/bin/bash"
    if not os.path.exists(bash):
        pytest.skip("no /bin/bash")
    with ELFFile(bash) as elf:
        if "readline" not in elf.function_names("readline"):
            pytest.skip("this bash does not export readline")
        loc = elf.locate("readline")
        assert loc.size > 0
        if READELF:
            assert readelf_symbols(bash)["readline"][0] == loc.vaddr
            assert loc.offset == expected_offset(bash, loc.vaddr)
        assert "readline" in elf.function_names("read*")
