"""Find a shared library by name: ``libc`` / ``libc.so.6`` / ``c`` -> a path.

bpftrace and perf accept ``uprobe:libc:malloc``; the kernel wants a path.  The
dynamic linker answers the same question from ``/etc/ld.so.cache``, written by
``ldconfig`` (glibc elf/cache.c).  Two layouts exist:

* new (glibc >= 2.32 writes only this): magic ``glibc-ld.so.cache1.1``,
  ``uint32 nlibs``, ``uint32 len_strings``, ``uint8 flags`` (2 = little endian,
  3 = big), 3 pad bytes, ``uint32 extension_offset``, 3 unused ``uint32``; then
  ``nlibs`` entries of ``int32 flags, uint32 key, uint32 value, uint32
  osversion, uint64 hwcap``.  ``key``/``value`` (soname/path) are offsets from
  the start of this header.
* old: magic ``ld.so-1.7.0``, ``uint32 nlibs``, entries of ``int32 flags,
  uint32 key, uint32 value`` with offsets from the end of the entry array; a new
  format block may follow, aligned to 8 bytes, and is then preferred.

When the cache is missing or has no match, the directories of
``/etc/ld.so.conf`` (with its ``include`` globs) and the usual library
directories are searched.  Candidates must be ELF files of the same class and
machine as a reference binary (by default the running Python), which skips
linker scripts such as ``/usr/lib/x86_64-linux-gnu/libc.so`` and libraries of a
foreign architecture.
"""

from __future__ import annotations

import difflib
import glob
import os
import re
import struct
import sys
import sysconfig
from collections.abc import Iterable

from kprobes.backends.symbols.elf import ELFFile
from kprobes.errors import ELFError, KprobesError

from ..._record import dataclass

__all__ = [
    "CacheEntry",
    "parse_ld_so_cache",
    "parse_ld_so_conf",
    "library_dirs",
    "resolve_library",
]

NEW_MAGIC = b"glibc-ld.so.cache1.1"
OLD_MAGIC = b"ld.so-1.7.0"
_NEW_HEADER = 48
_NEW_ENTRY = 24
_OLD_ENTRY = 12


@dataclass(frozen=True)
class CacheEntry:
    """One ld.so.cache entry: ``soname`` (``libc.so.6``) found at ``path``.

    ``flags`` is ldconfig's FLAG_* word (low byte: library type, e.g. 3 =
    FLAG_ELF_LIBC6; next byte: ABI such as 0x03 = x86-64 lib64); ``hwcap`` is
    non-zero for glibc-hwcaps subdirectory variants.
    """

    soname: str
    path: str
    flags: int
    hwcap: int = 0


def _cstr(data: bytes, start: int) -> str:
    if not 0 <= start < len(data):
        raise ELFError(f"ld.so.cache: string offset {start} out of range")
    end = data.find(b"\0", start)
    return data[start : end if end >= 0 else len(data)].decode("utf-8", "replace")


def _parse_new(data: bytes, base: int) -> tuple[CacheEntry, ...]:
    if len(data) < base + _NEW_HEADER:
        raise ELFError("ld.so.cache: truncated header")
    flag = data[base + 28]
    endian = ">" if flag == 3 else "<" if flag == 2 else ("<" if sys.byteorder == "little" else ">")
    (nlibs,) = struct.unpack_from(endian + "I", data, base + 20)
    if base + _NEW_HEADER + nlibs * _NEW_ENTRY > len(data):
        raise ELFError(f"ld.so.cache: {nlibs} entries do not fit in {len(data)} bytes")
    out = []
    for i in range(nlibs):
        flags, key, value, _osv, hwcap = struct.unpack_from(
            endian + "iIIIQ", data, base + _NEW_HEADER + i * _NEW_ENTRY
        )
        out.append(CacheEntry(_cstr(data, base + key), _cstr(data, base + value), flags, hwcap))
    return tuple(out)


def parse_ld_so_cache(data: bytes) -> tuple[CacheEntry, ...]:
    """Entries of an ``/etc/ld.so.cache`` image, in file order (ldconfig sorts
    them so that the preferred entry for a soname comes first)."""
    if data.startswith(NEW_MAGIC):
        return _parse_new(data, 0)
    if data.startswith(OLD_MAGIC):
        if len(data) < 16:
            raise ELFError("ld.so.cache: truncated header")
        (nlibs,) = struct.unpack_from("=I", data, 12)
        strings = 16 + nlibs * _OLD_ENTRY
        if strings > len(data):
            raise ELFError(f"ld.so.cache: {nlibs} entries do not fit in {len(data)} bytes")
        new_at = (strings + 7) & ~7
        if data[new_at : new_at + len(NEW_MAGIC)] == NEW_MAGIC:
            return _parse_new(data, new_at)
        out = []
        for i in range(nlibs):
            flags, key, value = struct.unpack_from("=iII", data, 16 + i * _OLD_ENTRY)
            out.append(CacheEntry(_cstr(data, strings + key), _cstr(data, strings + value), flags))
        return tuple(out)
    raise ELFError("ld.so.cache: unknown format (bad magic)", hint="run ldconfig to rebuild it")


def parse_ld_so_conf(path: str, *, root: str = "/", _depth: int = 0) -> list[str]:
    """Directories listed in an ld.so.conf file, following ``include`` globs.

    Relative include patterns are relative to the including file's directory;
    ``hwcap`` lines and comments are ignored; unreadable files give nothing.
    """
    try:
        with open(_under(root, path), encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    out: list[str] = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("hwcap"):
            continue
        if line.startswith("include") and line[7:8].isspace():
            for pat in line[8:].split():
                if not pat.startswith("/"):
                    pat = os.path.join(os.path.dirname(path), pat)
                for inc in sorted(glob.glob(_under(root, pat))):
                    if _depth < 8:
                        rel = "/" + os.path.relpath(inc, root) if root != "/" else inc
                        out.extend(parse_ld_so_conf(rel, root=root, _depth=_depth + 1))
            continue
        out.extend(d for d in re.split(r"[\s:,]+", line) if d.startswith("/"))
    return out


def library_dirs(*, root: str = "/") -> list[str]:
    """The search path after the cache: ld.so.conf dirs then the default ones."""
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    dirs = parse_ld_so_conf("/etc/ld.so.conf", root=root)
    dirs += [f"/lib/{multiarch}", f"/usr/lib/{multiarch}"] if multiarch else []
    dirs += ["/lib64", "/usr/lib64", "/lib", "/usr/lib", "/usr/local/lib"]
    seen: list[str] = []
    for d in dirs:
        if d not in seen:
            seen.append(d)
    return seen


def _under(root: str, path: str) -> str:
    return path if root == "/" else os.path.join(root, path.lstrip("/"))


def _wanted(name: str) -> tuple[list[str], list[str]]:
    """(exact sonames, soname prefixes) that ``name`` stands for."""
    exact = [name]
    base = name if name.startswith("lib") else "lib" + name
    if ".so" in base:
        return exact + ([base] if base != name else []), []
    return exact, [base + ".so"]


def _version_key(soname: str) -> tuple[int, ...]:
    """``libfoo.so.1.10`` sorts after ``libfoo.so.1.9``; bare ``libfoo.so`` last."""
    tail = soname.split(".so", 1)[1].lstrip(".")
    nums = tuple(int(p) for p in tail.split(".") if p.isdigit())
    return (1,) + nums if nums else (0,)


def _same_abi(path: str, like: ELFFile | None) -> bool:
    try:
        with ELFFile(path, debug_root=None) as elf:
            if like is None:
                return True
            return elf.is64 == like.is64 and elf.machine == like.machine
    except KprobesError:
        return False


def _pick(cands: Iterable[tuple[str, str]], like: ELFFile | None, root: str) -> str | None:
    """First (soname, path) whose file exists and matches the reference ABI."""
    for _soname, path in cands:
        full = _under(root, path)
        if os.path.isfile(full) and _same_abi(full, like):
            return full
    return None


def _open_reference(path: str) -> ELFFile | None:
    """The ELF whose ABI a library must match, or None when it is unreadable."""
    elf = ELFFile(path, debug_root=None)
    try:
        elf.is64  # noqa: B018 - read the header now, not inside _same_abi
    except KprobesError:
        elf.close()
        return None
    return elf


def resolve_library(
    name: str,
    *,
    root: str = "/",
    cache_path: str = "/etc/ld.so.cache",
    like: str | None = None,
) -> str:
    """Path of the shared library ``name`` (``libc``, ``c``, ``libc.so.6`` or a path).

    A name containing ``/`` is taken as a path and only checked for existence.
    Otherwise the soname is looked up in ``ld.so.cache`` (exact soname first,
    then ``lib<name>.so*`` with the highest version number), then in the
    library directories.  ``like`` is a binary whose ELF class and machine the
    library must share (default: the running interpreter).  ``root`` prefixes
    every path read, so tests can point at a fake tree.
    """
    if not name or name.strip() != name:
        raise ELFError(f"invalid library name {name!r}")
    if "/" in name:
        full = _under(root, name)
        if not os.path.isfile(full):
            raise ELFError(f"{name}: no such file", hint="check the path of the library")
        return full
    ref_path = like if like is not None else os.path.realpath(sys.executable)
    ref: ELFFile | None = _open_reference(ref_path)
    try:
        return _resolve(name, root, cache_path, ref)
    finally:
        if ref is not None:
            ref.close()


def _resolve(name: str, root: str, cache_path: str, ref: ELFFile | None) -> str:
    exact, prefixes = _wanted(name)
    entries: tuple[CacheEntry, ...] = ()
    try:
        with open(_under(root, cache_path), "rb") as fh:
            entries = parse_ld_so_cache(fh.read())
    except (OSError, ELFError):
        entries = ()  # no cache or a broken one: fall back to the directory search
    by_exact = [(e.soname, e.path) for e in entries if e.soname in exact]
    found = _pick(by_exact, ref, root)
    if found:
        return found
    by_prefix = [
        (e.soname, e.path)
        for e in entries
        if any(e.soname == p or e.soname.startswith(p + ".") for p in prefixes)
    ]
    by_prefix.sort(key=lambda sp: _version_key(sp[0]), reverse=True)
    found = _pick(by_prefix, ref, root)
    if found:
        return found
    for d in library_dirs(root=root):
        cands = [(n, os.path.join(d, n)) for n in exact]
        for p in prefixes:
            hits = glob.glob(os.path.join(_under(root, d), glob.escape(p)) + "*")
            names = [os.path.basename(h) for h in hits]
            names = [n for n in names if n == p or n.startswith(p + ".")]
            names.sort(key=_version_key, reverse=True)
            cands += [(n, os.path.join(d, n)) for n in names]
        found = _pick(cands, ref, root)
        if found:
            return found
    stems: dict[str, str] = {}
    for e in entries:
        stems.setdefault(e.soname.split(".so", 1)[0], e.soname)
    want = name.split(".so", 1)[0]
    want = want if want.startswith("lib") else "lib" + want
    close = [stems[s] for s in difflib.get_close_matches(want, sorted(stems), n=5)]
    hint = "give the full path of the library"
    if close:
        hint = "close names: " + ", ".join(close) + "; or " + hint
    raise ELFError(
        f"cannot find library {name!r} in ld.so.cache or the library directories", hint=hint
    )
