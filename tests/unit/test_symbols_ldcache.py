"""ld.so.cache parsing and library-name resolution, on caches and trees built here."""

from __future__ import annotations

import os
import shutil
import struct
import sys
from pathlib import Path

import pytest

from kprobes.backends.symbols.ldcache import (
    CacheEntry,
    library_dirs,
    parse_ld_so_cache,
    parse_ld_so_conf,
    resolve_library,
)
from kprobes.errors import ELFError


def new_cache(
    entries: list[tuple[str, str, int]], *, big: bool = False, prefix_len: int = 0
) -> bytes:
    """A glibc-ld.so.cache1.1 image; string offsets count from its own header."""
    e = ">" if big else "<"
    strings = bytearray()
    offs = []
    table_start = 48 + 24 * len(entries)
    for key, value, _ in entries:
        k = table_start + len(strings)
        strings += key.encode() + b"\0"
        v = table_start + len(strings)
        strings += value.encode() + b"\0"
        offs.append((k, v))
    hdr = b"glibc-ld.so.cache1.1" + struct.pack(
        e + "IIB3xI12x", len(entries), len(strings), 3 if big else 2, 0
    )
    assert len(hdr) == 48
    body = b"".join(
        struct.pack(e + "iIIIQ", flags, k, v, 0, 0) for (k, v), (_, _, flags) in zip(offs, entries)
    )
    return hdr + body + bytes(strings)


def old_cache(entries: list[tuple[str, str, int]], *, with_new: bool) -> bytes:
    """The pre-2.32 layout: ld.so-1.7.0, optionally followed by a new-format block."""
    strings = bytearray()
    offs = []
    for key, value, _ in entries:
        k = len(strings)
        strings += key.encode() + b"\0"
        v = len(strings)
        strings += value.encode() + b"\0"
        offs.append((k, v))
    out = bytearray(b"ld.so-1.7.0\0" + struct.pack("=I", len(entries)))
    for (k, v), (_, _, flags) in zip(offs, entries):
        out += struct.pack("=iII", flags, k, v)
    if with_new:
        while len(out) % 8:
            out += b"\0"
        # the new block's strings are its own; the old ones are unused then
        return bytes(out) + new_cache([(k, "/new" + v, f) for k, v, f in entries])
    return bytes(out + strings)


ENTRIES = [
    ("libfoo.so.2", "/usr/lib/libfoo.so.2", 0x303),
    ("libfoo.so.1", "/usr/lib/libfoo.so.1", 0x303),
    ("libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6", 0x303),
]


@pytest.mark.parametrize("big", [False, True])
def test_new_format(big: bool) -> None:
    got = parse_ld_so_cache(new_cache(ENTRIES, big=big))
    assert got == tuple(CacheEntry(k, v, f) for k, v, f in ENTRIES)


def test_old_format_alone_and_with_new_block() -> None:
    alone = parse_ld_so_cache(old_cache(ENTRIES, with_new=False))
    assert [(e.soname, e.path) for e in alone] == [(k, v) for k, v, _ in ENTRIES]
    combo = parse_ld_so_cache(old_cache(ENTRIES, with_new=True))
    assert [e.path for e in combo] == ["/new" + v for _, v, _ in ENTRIES]


def test_bad_caches() -> None:
    with pytest.raises(ELFError, match="bad magic"):
        parse_ld_so_cache(b"garbage" * 10)
    data = new_cache(ENTRIES)
    with pytest.raises(ELFError, match="do not fit"):
        parse_ld_so_cache(data[:60])


def test_host_cache_parses_and_has_libc() -> None:
    if not os.path.exists("/etc/ld.so.cache"):
        pytest.skip("no /etc/ld.so.cache")
    with open("/etc/ld.so.cache", "rb") as fh:
        entries = parse_ld_so_cache(fh.read())
    assert entries
    assert all(e.path.startswith("/") for e in entries)
    libc = [e for e in entries if e.soname == "libc.so.6"]
    if libc:
        assert os.path.exists(libc[0].path)


# -- resolution in a fake root ----------------------------------------------------------


@pytest.fixture()
def fake_root(tmp_path: Path) -> Path:
    """A tree with real ELF files (copies of the running python) at library paths."""
    exe = os.path.realpath(sys.executable)
    for rel in (
        "usr/lib/libfoo.so.1",
        "usr/lib/libfoo.so.2",
        "opt/extra/libbar.so.3",
        "usr/lib64/libbaz.so.1.9",
        "usr/lib64/libbaz.so.1.10",
    ):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(exe, p)
    # a linker script must never be picked
    (tmp_path / "usr/lib/libqux.so").write_text("/* GNU ld script */ GROUP ( x )\n")
    (tmp_path / "etc/ld.so.conf.d").mkdir(parents=True)
    (tmp_path / "etc/ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n# c\n")
    (tmp_path / "etc/ld.so.conf.d/extra.conf").write_text("/opt/extra\n")
    (tmp_path / "etc/ld.so.cache").write_bytes(
        new_cache(
            [
                ("libfoo.so.1", "/usr/lib/libfoo.so.1", 0x303),
                ("libfoo.so.2", "/usr/lib/libfoo.so.2", 0x303),
                ("libgone.so.1", "/usr/lib/libgone.so.1", 0x303),
            ]
        )
    )
    return tmp_path


def test_resolve_exact_soname_and_prefix(fake_root: Path) -> None:
    r = str(fake_root)
    assert resolve_library("libfoo.so.1", root=r) == str(fake_root / "usr/lib/libfoo.so.1")
    # highest version wins for a bare name, with or without the lib prefix
    assert resolve_library("libfoo", root=r) == str(fake_root / "usr/lib/libfoo.so.2")
    assert resolve_library("foo", root=r) == str(fake_root / "usr/lib/libfoo.so.2")


def test_resolve_falls_back_to_conf_dirs_and_default_dirs(fake_root: Path) -> None:
    r = str(fake_root)
    assert "/opt/extra" in parse_ld_so_conf("/etc/ld.so.conf", root=r)
    assert "/opt/extra" in library_dirs(root=r)
    assert resolve_library("libbar", root=r) == str(fake_root / "opt/extra/libbar.so.3")
    # numeric, not lexical, version order: 1.10 > 1.9
    assert resolve_library("baz", root=r) == str(fake_root / "usr/lib64/libbaz.so.1.10")


def test_resolve_skips_missing_and_non_elf(fake_root: Path) -> None:
    r = str(fake_root)
    with pytest.raises(ELFError, match="cannot find library 'libgone'"):
        resolve_library("libgone", root=r)  # in the cache but the file is gone
    with pytest.raises(ELFError, match="cannot find"):
        resolve_library("libqux", root=r)  # only a linker script


def test_resolve_suggests_close_names(fake_root: Path) -> None:
    with pytest.raises(ELFError) as ei:
        resolve_library("libfo", root=str(fake_root))
    assert ei.value.hint and "libfoo.so" in ei.value.hint


def test_resolve_abi_filter(fake_root: Path, tmp_path: Path) -> None:
    """A library of another ELF class/machine than the reference is skipped."""
    other = tmp_path / "ref32"
    # a bare ELF32 little-endian header for EM_386, no sections or segments
    ident = b"\x7fELF" + bytes([1, 1, 1]) + b"\0" * 9
    other.write_bytes(
        ident + struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, 0, 0, 0, 0, 52, 32, 0, 40, 0, 0)
    )
    # sanity: the same tree resolves with the default reference (this python)
    assert resolve_library("libfoo", root=str(fake_root))
    with pytest.raises(ELFError):
        resolve_library("libfoo", root=str(fake_root), like=str(other))


def test_paths_and_bad_names(fake_root: Path) -> None:
    assert resolve_library("/usr/lib/libfoo.so.1", root=str(fake_root)).endswith("libfoo.so.1")
    with pytest.raises(ELFError, match="no such file"):
        resolve_library("/nope/libx.so", root=str(fake_root))
    with pytest.raises(ELFError, match="invalid"):
        resolve_library("", root=str(fake_root))


def test_host_libc() -> None:
    try:
        path = resolve_library("libc")
    except ELFError as exc:
        pytest.skip(f"no glibc on this machine: {exc}")
    assert os.path.isfile(path)
    assert resolve_library("c") == path
    assert resolve_library(os.path.basename(path)) == path
