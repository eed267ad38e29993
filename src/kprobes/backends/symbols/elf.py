"""A small ELF reader for uprobes: symbols by name and their file offsets.

A uprobe is placed with ``PATH:OFFSET`` in ``uprobe_events`` where OFFSET is a
*file* offset, not a virtual address (kernel/trace/trace_uprobe.c parses it
with ``kstrtoul(..., 0, ...)`` and hands it to ``uprobe_register()`` as an
offset into the inode).  This module reads just enough ELF to turn
``/bin/bash:readline`` or ``libc:malloc+0x10`` into that offset:

* the ELF header (ELF32/ELF64, little and big endian, ``e_shnum``/``e_phnum``
  escape values stored in section 0);
* section headers (``.symtab``/``.dynsym`` with their linked string tables,
  ``.gnu.version``/``.gnu.version_d`` for ``malloc@@GLIBC_2.2.5`` names,
  ``.note.gnu.build-id``);
* program headers: the ``PT_LOAD`` segment holding a symbol's address gives
  ``offset = vaddr - p_vaddr + p_offset``.  This is the same for ``ET_EXEC``,
  PIE and shared objects: it does not depend on the load base.

The file is mapped with ``mmap`` and parsed on demand, so looking up one symbol
in a 2 MB libc touches only the headers and the symbol tables.  Nothing here
prints; problems raise :class:`kprobes.errors.ELFError` with a hint.
"""

from __future__ import annotations

import difflib
import fnmatch
import mmap
import os
import re
import stat
import struct
from collections.abc import Iterator, Sequence

from kprobes.errors import ELFError

from ..._record import dataclass

__all__ = [
    "ELFFile",
    "Section",
    "Segment",
    "Symbol",
    "UprobeLocation",
    "parse_symbol_spec",
    "check_file_offset",
    "resolve_uprobe",
    "DEBUG_ROOT",
    "symbols_matching",
]

# e_ident / e_type / e_machine values (include/uapi/linux/elf.h, elf.h)
ELFCLASS32 = 1
ELFCLASS64 = 2
ELFDATA2LSB = 1
ELFDATA2MSB = 2
ET_REL = 1
ET_EXEC = 2
ET_DYN = 3
ET_CORE = 4
EM_ARM = 40
EM_PPC64 = 21

# special section indexes
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
SHN_ABS = 0xFFF1
SHN_XINDEX = 0xFFFF
PN_XNUM = 0xFFFF

# section types
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_NOTE = 7
SHT_NOBITS = 8
SHT_DYNSYM = 11
SHT_GNU_VERDEF = 0x6FFFFFFD
SHT_GNU_VERSYM = 0x6FFFFFFF

# program header types
PT_LOAD = 1
PT_DYNAMIC = 2
PT_INTERP = 3
PT_NOTE = 4

# symbol types and bindings
STT_NOTYPE = 0
STT_OBJECT = 1
STT_FUNC = 2
STT_SECTION = 3
STT_FILE = 4
STT_GNU_IFUNC = 10
STB_LOCAL = 0
STB_GLOBAL = 1
STB_WEAK = 2
STB_GNU_UNIQUE = 10

# dynamic section
DT_NULL = 0
DT_SONAME = 14
DT_FLAGS_1 = 0x6FFFFFFB
DF_1_PIE = 0x08000000

NT_GNU_BUILD_ID = 3
VERSYM_HIDDEN = 0x8000
VERSYM_INDEX = 0x7FFF

#: Where distributions install detached debug files, looked up by build id
#: (``<DEBUG_ROOT>/.build-id/ab/cdef....debug``) when a binary is stripped.
DEBUG_ROOT = "/usr/lib/debug"

_TYPE_NAMES = {
    ET_REL: "relocatable",
    ET_EXEC: "executable",
    ET_DYN: "shared object",
    ET_CORE: "core dump",
}
_FUNC_TYPES = (STT_FUNC, STT_GNU_IFUNC)
_BIND_RANK = {STB_GLOBAL: 0, STB_GNU_UNIQUE: 0, STB_WEAK: 1, STB_LOCAL: 2}


@dataclass(frozen=True)
class Section:
    """One section header (``Elf{32,64}_Shdr``), with its resolved name."""

    index: int
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int


@dataclass(frozen=True)
class Segment:
    """One program header (``Elf{32,64}_Phdr``)."""

    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    align: int

    def contains_vaddr(self, vaddr: int) -> bool:
        """True when ``vaddr`` is backed by file bytes of this segment."""
        return self.vaddr <= vaddr < self.vaddr + self.filesz


@dataclass(frozen=True)
class Symbol:
    """One ``Elf{32,64}_Sym`` entry.

    ``name`` is the bare name (``malloc``); ``version`` the symbol version from
    ``.gnu.version_d`` (``GLIBC_2.2.5``) or ``None``; ``default_version`` is True
    for ``@@`` (the version new links bind to) and False for ``@`` (hidden,
    compatibility).  ``table`` is ``".symtab"`` or ``".dynsym"``.
    """

    name: str
    value: int
    size: int
    type: int
    bind: int
    shndx: int
    table: str
    version: str | None = None
    default_version: bool = True

    @property
    def is_defined(self) -> bool:
        return self.shndx != SHN_UNDEF

    @property
    def is_function(self) -> bool:
        return self.type in _FUNC_TYPES

    @property
    def is_ifunc(self) -> bool:
        return self.type == STT_GNU_IFUNC

    @property
    def versioned_name(self) -> str:
        """``malloc@@GLIBC_2.2.5`` as readelf prints it, or the bare name."""
        if self.version is None:
            return self.name
        return f"{self.name}{'@@' if self.default_version else '@'}{self.version}"


@dataclass(frozen=True)
class UprobeLocation:
    """Where a uprobe goes: the ``PATH:OFFSET`` of ``uprobe_events``.

    ``vaddr`` is the symbol's link-time virtual address plus ``addend``;
    ``offset`` the matching file offset.  ``ifunc`` warns that the symbol is a
    GNU indirect function: its code is the *resolver*, run once by the dynamic
    linker, not the implementation that callers reach.
    """

    path: str
    symbol: str
    addend: int
    vaddr: int
    offset: int
    size: int
    ifunc: bool = False

    def render(self) -> str:
        """``PATH:0xOFFSET`` as written after ``p:GRP/EVENT`` in uprobe_events."""
        return f"{self.path}:0x{self.offset:x}"


_SPEC_RE = re.compile(r"^(?P<name>[^+\s]+?)(?:\+(?P<off>0[xX][0-9a-fA-F]+|[0-9]+))?$")


def parse_symbol_spec(spec: str) -> tuple[str, int]:
    """Split ``SYMBOL[+OFFS]`` (OFFS decimal or 0x-hex) into name and addend."""
    m = _SPEC_RE.match(spec.strip())
    if m is None:
        raise ELFError(
            f"invalid symbol specification {spec!r}",
            hint="use NAME or NAME+OFFSET, e.g. readline or malloc+0x10",
        )
    off = m.group("off")
    return m.group("name"), int(off, 0) if off else 0


def _bare(name: str) -> tuple[str, str | None, bool]:
    """``foo@@V`` -> (foo, V, True); ``foo@V`` -> (foo, V, False); ``foo`` -> (foo, None, True)."""
    if "@@" in name:
        base, ver = name.split("@@", 1)
        return base, ver, True
    if "@" in name:
        base, ver = name.split("@", 1)
        return base, ver, False
    return name, None, True


class ELFFile:
    """Lazy reader over one ELF file.

    The constructor only records the path; the file is opened and mapped on
    first use.  Use as a context manager (or call :meth:`close`) to release the
    mapping.  Every table is parsed once and cached.
    """

    def __init__(self, path: str, *, debug_root: str | None = DEBUG_ROOT) -> None:
        self.path = path
        self.debug_root = debug_root
        self._map: mmap.mmap | None = None
        self._hdr: dict[str, int] | None = None
        self._sections: tuple[Section, ...] | None = None
        self._segments: tuple[Segment, ...] | None = None
        self._symtabs: dict[str, tuple[Symbol, ...]] = {}
        self._by_name: dict[str, list[Symbol]] | None = None
        self._debug_file: ELFFile | None = None
        self._debug_checked = False
        # Set from e_ident by _read_header(); every reader goes through _header first.
        self._endian = "<"
        self._is64 = True

    # -- lifetime -----------------------------------------------------------

    def __enter__(self) -> ELFFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._debug_file is not None:
            self._debug_file.close()
        if self._map is not None:
            self._map.close()
            self._map = None

    @property
    def _data(self) -> mmap.mmap:
        if self._map is None:
            self._map = self._open()
        return self._map

    def _open(self) -> mmap.mmap:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise ELFError(
                f"{self.path}: no such file",
                hint="give the full path of the binary or a library name such as libc",
            ) from None
        except IsADirectoryError:
            raise ELFError(
                f"{self.path}: is a directory, not an ELF file",
                hint="give the path of an executable or a shared library inside it",
            ) from None
        except PermissionError:
            raise ELFError(
                f"{self.path}: permission denied", hint="run as root or make the file readable"
            ) from None
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise ELFError(f"{self.path}: is a directory, not an ELF file")
            if not stat.S_ISREG(st.st_mode):
                raise ELFError(
                    f"{self.path}: not a regular file",
                    hint="uprobes need a compiled executable or shared library",
                )
            size = st.st_size
            if size < 16:
                raise ELFError(
                    f"{self.path}: not an ELF file ({size} bytes)",
                    hint="uprobes need a compiled executable or shared library",
                )
            data = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            raise ELFError(
                f"{self.path}: cannot map file: {exc}",
                hint="uprobes need a readable executable or shared library",
            ) from None
        finally:
            os.close(fd)
        magic = bytes(data[:4])
        if magic != b"\x7fELF":
            data.close()
            raise ELFError(
                f"{self.path}: not an ELF file (bad magic {magic!r})",
                hint="uprobes need a compiled executable or shared library, "
                "not a script or a linker script",
            )
        return data

    # -- header ---------------------------------------------------------------

    def _unpack(self, fmt: str, offset: int) -> tuple[int, ...]:
        data = self._data
        full = self._endian + fmt
        if offset < 0 or offset + struct.calcsize(full) > len(data):
            raise ELFError(f"{self.path}: truncated ELF file (read past end at 0x{offset:x})")
        return struct.unpack_from(full, data, offset)

    @property
    def _header(self) -> dict[str, int]:
        if self._hdr is None:
            self._hdr = self._read_header()
        return self._hdr

    def _read_header(self) -> dict[str, int]:
        data = self._data
        cls, enc = data[4], data[5]
        if cls not in (ELFCLASS32, ELFCLASS64):
            raise ELFError(f"{self.path}: unknown ELF class {cls}")
        if enc not in (ELFDATA2LSB, ELFDATA2MSB):
            raise ELFError(f"{self.path}: unknown ELF data encoding {enc}")
        self._endian = "<" if enc == ELFDATA2LSB else ">"
        self._is64 = cls == ELFCLASS64
        fmt = "HHIQQQIHHHHHH" if self._is64 else "HHIIIIIHHHHHH"
        keys = (
            "type",
            "machine",
            "version",
            "entry",
            "phoff",
            "shoff",
            "flags",
            "ehsize",
            "phentsize",
            "phnum",
            "shentsize",
            "shnum",
            "shstrndx",
        )
        hdr = dict(zip(keys, self._unpack(fmt, 16)))
        # Extended numbering: the real counts live in section header 0.
        if hdr["shoff"] and (
            hdr["shnum"] == 0 or hdr["shstrndx"] == SHN_XINDEX or hdr["phnum"] == PN_XNUM
        ):
            s0 = self._raw_section(hdr["shoff"], 0)
            if hdr["shnum"] == 0:
                hdr["shnum"] = s0[5]
            if hdr["shstrndx"] == SHN_XINDEX:
                hdr["shstrndx"] = s0[6]
            if hdr["phnum"] == PN_XNUM:
                hdr["phnum"] = s0[7]
        return hdr

    @property
    def is64(self) -> bool:
        """True for ELFCLASS64."""
        self._header  # noqa: B018 - sets _is64
        return self._is64

    @property
    def little_endian(self) -> bool:
        self._header  # noqa: B018 - sets _endian
        return self._endian == "<"

    @property
    def elf_type(self) -> int:
        """``e_type``: ET_EXEC (fixed address), ET_DYN (PIE or shared object)..."""
        return self._header["type"]

    @property
    def machine(self) -> int:
        """``e_machine`` (EM_X86_64 = 62, EM_AARCH64 = 183, ...)."""
        return self._header["machine"]

    @property
    def entry(self) -> int:
        return self._header["entry"]

    @property
    def is_pie(self) -> bool:
        """A position-independent executable.

        An ET_DYN file with ``DF_1_PIE`` in ``DT_FLAGS_1`` (binutils >= 2.26
        sets it).  Without a DT_FLAGS_1 entry an ET_DYN file with PT_INTERP is
        taken as PIE unless it has a DT_SONAME.  ET_EXEC is never PIE (``ld -pie
        -Ttext-segment`` writes ET_EXEC with DF_1_PIE set; it loads at a fixed
        address).
        """
        if self.elf_type != ET_DYN:
            return False
        dyn = self.dynamic_entries()
        if DT_FLAGS_1 in dyn:
            return bool(dyn[DT_FLAGS_1] & DF_1_PIE)
        # Older linkers: an interpreter and no soname.  libc.so.6 has PT_INTERP
        # (it can be run) but also DT_SONAME.
        return DT_SONAME not in dyn and any(s.type == PT_INTERP for s in self.segments())

    def dynamic_entries(self) -> dict[int, int]:
        """``d_tag -> d_val`` from PT_DYNAMIC (first occurrence of each tag)."""
        seg = next((p for p in self.segments() if p.type == PT_DYNAMIC), None)
        out: dict[int, int] = {}
        if seg is None:
            return out
        fmt, size = ("qQ", 16) if self._is64 else ("iI", 8)
        for i in range(seg.filesz // size):
            tag, val = self._unpack(fmt, seg.offset + i * size)
            if tag == DT_NULL:
                break
            out.setdefault(tag, val)
        return out

    @property
    def is_shared_object(self) -> bool:
        """An ET_DYN file that is not a PIE (a library such as libc.so.6)."""
        return self.elf_type == ET_DYN and not self.is_pie

    # -- sections and segments ----------------------------------------------------

    def _raw_section(self, shoff: int, index: int) -> tuple[int, ...]:
        if self._is64:
            return self._unpack("IIQQQQIIQQ", shoff + index * 64)
        return self._unpack("IIIIIIIIII", shoff + index * 40)

    def sections(self) -> tuple[Section, ...]:
        """All section headers (empty when the file has none, e.g. sstrip'ed)."""
        if self._sections is None:
            self._sections = self._read_sections()
        return self._sections

    def _read_sections(self) -> tuple[Section, ...]:
        hdr = self._header
        if not hdr["shoff"] or not hdr["shnum"]:
            return ()
        raw = [self._raw_section(hdr["shoff"], i) for i in range(hdr["shnum"])]
        names = raw[hdr["shstrndx"]] if hdr["shstrndx"] < len(raw) else None
        out = []
        for i, r in enumerate(raw):
            (name, typ, flags, addr, off, size, link, info, _align, entsize) = r
            text = self._cstring(names[4] + name, names[4] + names[5]) if names else ""
            out.append(Section(i, text, typ, flags, addr, off, size, link, info, entsize))
        return tuple(out)

    def section(self, name: str) -> Section | None:
        """The first section called ``name``, or None."""
        for s in self.sections():
            if s.name == name:
                return s
        return None

    def segments(self) -> tuple[Segment, ...]:
        """All program headers (empty for relocatable objects)."""
        if self._segments is None:
            hdr = self._header
            out = []
            for i in range(hdr["phnum"] if hdr["phoff"] else 0):
                if self._is64:
                    t, fl, off, va, _pa, fsz, msz, al = self._unpack(
                        "IIQQQQQQ", hdr["phoff"] + i * 56
                    )
                else:
                    t, off, va, _pa, fsz, msz, fl, al = self._unpack(
                        "IIIIIIII", hdr["phoff"] + i * 32
                    )
                out.append(Segment(t, fl, off, va, fsz, msz, al))
            self._segments = tuple(out)
        return self._segments

    def _cstring(self, start: int, limit: int) -> str:
        data = self._data
        limit = min(limit, len(data))
        if start >= limit:
            return ""
        end = data.find(b"\0", start, limit)
        if end < 0:
            end = limit
        return data[start:end].decode("utf-8", "replace")

    # -- symbols --------------------------------------------------------------------

    def symbols(self, table: str = ".symtab") -> tuple[Symbol, ...]:
        """Every entry of ``.symtab`` or ``.dynsym`` (empty when absent).

        ``.dynsym`` entries carry their version when ``.gnu.version`` is present.
        """
        if table not in self._symtabs:
            self._symtabs[table] = self._read_symbols(table)
        return self._symtabs[table]

    def _read_symbols(self, table: str) -> tuple[Symbol, ...]:
        want = SHT_SYMTAB if table == ".symtab" else SHT_DYNSYM
        sec = next((s for s in self.sections() if s.type == want), None)
        if sec is None or sec.type == SHT_NOBITS:
            return ()
        secs = self.sections()
        if sec.link >= len(secs):
            raise ELFError(f"{self.path}: {table} links to missing string table {sec.link}")
        strtab = secs[sec.link]
        str_lo, str_hi = strtab.offset, strtab.offset + strtab.size
        entsize = sec.entsize or (24 if self._is64 else 16)
        count = sec.size // entsize
        versions = self._versions(count) if want == SHT_DYNSYM else None
        fmt = self._endian + ("IBBHQQ" if self._is64 else "IIIBBH")
        st = struct.Struct(fmt)
        data = self._data
        if sec.offset + count * entsize > len(data):
            raise ELFError(f"{self.path}: truncated ELF file ({table} runs past end)")
        out = []
        for i in range(1, count):  # entry 0 is the reserved null symbol
            if self._is64:
                name, info, _other, shndx, value, size = st.unpack_from(
                    data, sec.offset + i * entsize
                )
            else:
                name, value, size, info, _other, shndx = st.unpack_from(
                    data, sec.offset + i * entsize
                )
            text = self._cstring(str_lo + name, str_hi) if name else ""
            base, ver, default = _bare(text)
            if versions is not None and ver is None:
                ver, default = versions[i] if i < len(versions) else (None, True)
            out.append(Symbol(base, value, size, info & 0xF, info >> 4, shndx, table, ver, default))
        return tuple(out)

    def _versions(self, count: int) -> list[tuple[str | None, bool]] | None:
        """Per-dynsym-entry (version name, is default) from .gnu.version/_d."""
        versym = next((s for s in self.sections() if s.type == SHT_GNU_VERSYM), None)
        verdef = next((s for s in self.sections() if s.type == SHT_GNU_VERDEF), None)
        if versym is None or verdef is None:
            return None
        secs = self.sections()
        strtab = secs[verdef.link] if verdef.link < len(secs) else None
        if strtab is None:
            return None
        names: dict[int, str] = {}
        off = verdef.offset
        for _ in range(verdef.info or 0xFFFF):
            _ver, _flags, ndx, cnt, _hash, aux, nxt = self._unpack("HHHHIII", off)
            if cnt:
                vda_name = self._unpack("I", off + aux)[0]
                names[ndx] = self._cstring(strtab.offset + vda_name, strtab.offset + strtab.size)
            if not nxt:
                break
            off += nxt
        out: list[tuple[str | None, bool]] = []
        n = min(count, versym.size // 2)
        raw = struct.unpack_from(f"{self._endian}{n}H", self._data, versym.offset)
        for v in raw:
            idx = v & VERSYM_INDEX
            # 0 = local, 1 = global unversioned; definitions use verdef indexes >= 2
            name = names.get(idx) if idx >= 2 else None
            out.append((name, not v & VERSYM_HIDDEN))
        return out

    def _index(self) -> dict[str, list[Symbol]]:
        if self._by_name is None:
            idx: dict[str, list[Symbol]] = {}
            for table in (".symtab", ".dynsym"):
                for sym in self.symbols(table):
                    if sym.name and sym.type not in (STT_SECTION, STT_FILE):
                        idx.setdefault(sym.name, []).append(sym)
            self._by_name = idx
        return self._by_name

    @property
    def stripped(self) -> bool:
        """True when there is no ``.symtab`` (only exported ``.dynsym`` names remain)."""
        return not self.symbols(".symtab")

    def build_id(self) -> str | None:
        """The ``NT_GNU_BUILD_ID`` note as lowercase hex, or None.

        Looks in SHT_NOTE sections first and falls back to PT_NOTE segments so
        that files without section headers still answer.
        """
        areas = [(s.offset, s.size) for s in self.sections() if s.type == SHT_NOTE]
        if not areas:
            areas = [(p.offset, p.filesz) for p in self.segments() if p.type == PT_NOTE]
        for start, size in areas:
            off, end = start, start + size
            while off + 12 <= end:
                namesz, descsz, ntype = self._unpack("III", off)
                name_off = off + 12
                desc_off = name_off + ((namesz + 3) & ~3)
                if desc_off + descsz > end:
                    break
                if (
                    ntype == NT_GNU_BUILD_ID
                    and self._data[name_off : name_off + namesz] == b"GNU\0"
                ):
                    return bytes(self._data[desc_off : desc_off + descsz]).hex()
                off = desc_off + ((descsz + 3) & ~3)
        return None

    def debug_file(self) -> ELFFile | None:
        """The detached debug file ``<debug_root>/.build-id/xx/yyyy.debug``, if installed."""
        if not self._debug_checked:
            self._debug_checked = True
            bid = self.build_id()
            if bid and self.debug_root and len(bid) > 2:
                cand = os.path.join(self.debug_root, ".build-id", bid[:2], bid[2:] + ".debug")
                if os.path.isfile(cand):
                    self._debug_file = ELFFile(cand, debug_root=None)
        return self._debug_file

    # -- lookups ------------------------------------------------------------------------

    def find_symbol(self, name: str) -> Symbol:
        """The defined function called ``name`` (bare or ``name@VER``/``name@@VER``).

        Preference: defined FUNC/IFUNC over other types; the default version
        (``@@``) over hidden ones; GLOBAL over WEAK over LOCAL; ``.symtab`` over
        ``.dynsym``.  A stripped binary's detached debug file (by build id) is
        consulted when the name is not in the binary itself.
        """
        base, ver, default = _bare(name)
        cands = [s for s in self._index().get(base, ()) if s.is_defined and s.value]
        if ver is not None:
            cands = [
                s for s in cands if s.version == ver and ("@@" not in name or s.default_version)
            ]
        dbg = self.debug_file() if not cands and self.stripped else None
        if dbg is not None:
            cands = [s for s in dbg._index().get(base, ()) if s.is_defined and s.value]
        if not cands:
            raise self._not_found(name, base)

        def rank(s: Symbol) -> tuple[int, int, int, int]:
            return (
                0 if s.is_function else 1,
                0 if s.default_version else 1,
                _BIND_RANK.get(s.bind, 3),
                0 if s.table == ".symtab" else 1,
            )

        best = min(cands, key=rank)
        if best.type not in (STT_FUNC, STT_GNU_IFUNC, STT_NOTYPE):
            kind = "a data object" if best.type == STT_OBJECT else f"of ELF type {best.type}"
            raise ELFError(
                f"{self.path}: {best.name!r} is {kind}, not a function",
                hint="uprobes go on code; pick a function that uses it",
            )
        return best

    def _not_found(self, name: str, base: str) -> ELFError:
        undefined = [s for s in self._index().get(base, ()) if not s.is_defined]
        if undefined:
            return ELFError(
                f"{self.path}: {base!r} is imported, not defined here",
                hint=f"{base} lives in a shared library that {os.path.basename(self.path)} "
                "links against; probe that library instead (e.g. libc:" + base + ")",
            )
        names = self.function_names()
        if not names and not self._index():
            return ELFError(
                f"{self.path}: no symbols at all (stripped binary)",
                hint="install the debug symbols (the -dbgsym/-debuginfo package) or probe "
                "an address: PATH:0xOFFSET",
            )
        close = difflib.get_close_matches(base, names, n=5, cutoff=0.6)
        msg = f"{self.path}: no function {name!r}"
        hints = []
        if close:
            msg += "\nclose names: " + ", ".join(close)
        if self.stripped:
            hints.append(
                f"the binary is stripped: only its {len(names)} exported "
                "functions are visible; install its debug symbols "
                "(-dbgsym/-debuginfo package) to see static functions"
            )
        else:
            hints.append(
                "it may be static and inlined away, or spelled differently; "
                "list names with a glob such as '" + base[:3] + "*'"
            )
        return ELFError(msg, hint="; ".join(hints))

    def function_names(self, pattern: str = "*") -> list[str]:
        """Sorted, unique names of defined functions matching the shell glob ``pattern``.

        Used for uprobe wildcards (``uprobe:/bin/bash:read*``) and listings.
        """
        out = {
            s.name
            for syms in self._index().values()
            for s in syms
            if s.is_function and s.is_defined and s.value
        }
        dbg = self.debug_file() if self.stripped else None
        if dbg is not None:
            out.update(dbg.function_names())
        return sorted(n for n in out if fnmatch.fnmatchcase(n, pattern))

    def functions(self, pattern: str = "*") -> Iterator[Symbol]:
        """The preferred :class:`Symbol` for every function name matching ``pattern``."""
        for name in self.function_names(pattern):
            yield self.find_symbol(name)

    def vaddr_to_offset(self, vaddr: int) -> int:
        """The file offset backing link-time virtual address ``vaddr``.

        Finds the PT_LOAD segment whose file-backed range holds ``vaddr`` and
        returns ``vaddr - p_vaddr + p_offset``.  Relocatable objects (no program
        headers) use the section that holds it.
        """
        for seg in self.segments():
            if seg.type == PT_LOAD and seg.contains_vaddr(vaddr):
                return vaddr - seg.vaddr + seg.offset
        for seg in self.segments():
            if seg.type == PT_LOAD and seg.vaddr <= vaddr < seg.vaddr + seg.memsz:
                raise ELFError(
                    f"{self.path}: address 0x{vaddr:x} is in .bss "
                    "(zero-filled memory with no file bytes): not code"
                )
        raise ELFError(
            f"{self.path}: address 0x{vaddr:x} is not in any loadable segment",
            hint="the symbol is not code that gets mapped at run time",
        )

    def _entry_address(self, sym: Symbol) -> int:
        """The address of the first instruction of function ``sym``."""
        value = sym.value
        if self.machine == EM_ARM and sym.is_function:
            value &= ~1  # Thumb functions have bit 0 set in st_value
        if self.machine == EM_PPC64 and self._is64 and self._header["flags"] & 3 != 2:
            opd = self.section(".opd")  # ELFv1: st_value points at a function descriptor
            if opd is not None and opd.addr <= value < opd.addr + opd.size:
                value = self._unpack("Q", value - opd.addr + opd.offset)[0]
        return value

    def locate(self, spec: str) -> UprobeLocation:
        """Resolve ``SYMBOL[+OFFS]`` to a :class:`UprobeLocation` in this file."""
        name, addend = parse_symbol_spec(spec)
        sym = self.find_symbol(name)
        if sym.size and addend >= sym.size:
            raise ELFError(
                f"{self.path}: offset +0x{addend:x} is past the end of "
                f"{sym.name} ({sym.size} bytes)",
                hint="an offset must point inside the function",
            )
        vaddr = self._entry_address(sym) + addend
        return UprobeLocation(
            self.path,
            sym.versioned_name,
            addend,
            vaddr,
            self.vaddr_to_offset(vaddr),
            sym.size,
            sym.is_ifunc,
        )

    def describe(self) -> str:
        """One line for listings: class, endianness, type."""
        kind = "PIE executable" if self.is_pie else _TYPE_NAMES.get(self.elf_type, "unknown")
        return f"ELF{'64' if self.is64 else '32'} {'LSB' if self.little_endian else 'MSB'} {kind}"


def resolve_uprobe(path: str, spec: str, *, debug_root: str | None = DEBUG_ROOT) -> UprobeLocation:
    """Open ``path`` and resolve ``SYMBOL[+OFFS]`` to a file offset."""
    with ELFFile(path, debug_root=debug_root) as elf:
        return elf.locate(spec)


def check_file_offset(path: str, offset: int) -> None:
    """A raw uprobe place ``PATH:OFFSET``: ``path`` is an ELF file and ``offset`` is inside it.

    The kernel answers both mistakes with a bare EINVAL; this names them.
    """
    with ELFFile(path, debug_root=None) as elf:
        elf.elf_type  # noqa: B018 - reads and checks the ELF header
        size = os.path.getsize(path)
        if offset >= size:
            raise ELFError(
                f"{path}: offset 0x{offset:x} is past the end of the file ({size} bytes)",
                hint="a uprobe offset is a file offset into the binary; use a symbol "
                "(PATH:SYMBOL or PATH:SYMBOL+OFFS) or take the offset from objdump -d / readelf",
            )


def symbols_matching(path: str, patterns: Sequence[str]) -> list[str]:
    """Function names in ``path`` matching any of the glob ``patterns``."""
    with ELFFile(path) as elf:
        out = set()
        for p in patterns:
            out.update(elf.function_names(p))
        return sorted(out)
