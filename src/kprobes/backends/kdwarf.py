"""A targeted DWARF (versions 4 and 5) reader for big files such as a kernel's debug vmlinux.

pyelftools decodes whole compilation units into Python objects; on a 630 MB
vmlinux that takes minutes.  This reader decodes only what a probe needs:

* ``.debug_aranges`` → the compilation unit (CU) that holds an address;
* that CU's top-level DIEs, skipped with ``DW_AT_sibling``, to find a function;
* the function's subtree (parameters, variables, lexical blocks, inlined
  subroutines), and single DIEs on demand (types, abstract origins);
* the CU's line program (``.debug_line``, v4 and v5 headers);
* location lists (``.debug_loclists`` v5 / ``.debug_loc`` v4), range lists
  (``.debug_rnglists`` / ``.debug_ranges``), ``.debug_str``/``.debug_line_str``,
  ``.debug_str_offsets``/``.debug_addr`` (``strx``/``addrx`` forms);
* the CFA rule at one address from ``.debug_frame``/``.eh_frame``.

Everything reads a read-only ``mmap`` of the file; nothing here prints.  Layout
facts follow the DWARF 5 standard (DWARF 4 where it differs).
"""

from __future__ import annotations

import bisect
import mmap
import os
import struct
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ..errors import ELFError

__all__ = ["Die", "DwarfFile", "LineRow", "Op", "decode_ops", "uleb", "sleb"]

# Tags
TAG_array = 0x01
TAG_enumeration = 0x04
TAG_formal_parameter = 0x05
TAG_lexical_block = 0x0B
TAG_member = 0x0D
TAG_pointer = 0x0F
TAG_compile_unit = 0x11
TAG_structure = 0x13
TAG_subroutine_type = 0x15
TAG_typedef = 0x16
TAG_union = 0x17
TAG_inlined_subroutine = 0x1D
TAG_subrange = 0x21
TAG_base_type = 0x24
TAG_const = 0x26
TAG_subprogram = 0x2E
TAG_variable = 0x34
TAG_volatile = 0x35
TAG_restrict = 0x37
TAG_atomic = 0x47
TAG_skeleton_unit = 0x4A
TAG_partial_unit = 0x3C

# Attributes
AT_sibling = 0x01
AT_location = 0x02
AT_name = 0x03
AT_byte_size = 0x0B
AT_bit_size = 0x0D
AT_stmt_list = 0x10
AT_low_pc = 0x11
AT_high_pc = 0x12
AT_comp_dir = 0x1B
AT_const_value = 0x1C
AT_inline = 0x20
AT_upper_bound = 0x2F
AT_abstract_origin = 0x31
AT_count = 0x37
AT_data_member_location = 0x38
AT_decl_file = 0x3A
AT_decl_line = 0x3B
AT_declaration = 0x3C
AT_encoding = 0x3E
AT_external = 0x3F
AT_frame_base = 0x40
AT_specification = 0x47
AT_type = 0x49
AT_entry_pc = 0x52
AT_ranges = 0x55
AT_call_file = 0x58
AT_call_line = 0x59
AT_data_bit_offset = 0x6B
AT_str_offsets_base = 0x72
AT_addr_base = 0x73
AT_rnglists_base = 0x74
AT_loclists_base = 0x8C

# Forms whose value is a reference relative to the unit
_REF_FORMS = (0x11, 0x12, 0x13, 0x14, 0x15)


def uleb(buf: Any, pos: int) -> Tuple[int, int]:
    """Unsigned LEB128 at ``pos`` → (value, next position)."""
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def sleb(buf: Any, pos: int) -> Tuple[int, int]:
    """Signed LEB128 at ``pos`` → (value, next position)."""
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            if b & 0x40:
                result -= 1 << shift
            return result, pos


class Die:
    """One debugging information entry: absolute offset, tag, attributes, children (when read)."""

    __slots__ = ("offset", "tag", "attrs", "forms", "children", "has_children", "parent", "cu")

    def __init__(self, offset: int, tag: int, attrs: Dict[int, Any], forms: Dict[int, int],
                 has_children: bool, cu: CompUnit) -> None:  # fmt: skip
        self.offset = offset
        self.tag = tag
        self.attrs = attrs
        self.forms = forms
        self.has_children = has_children
        self.children: List[Die] = []
        self.parent: Optional[Die] = None
        self.cu = cu

    def get(self, attr: int) -> Any:
        return self.attrs.get(attr)

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"<Die 0x{self.offset:x} tag=0x{self.tag:x}>"


class LineRow:
    """One row of a line table (``DW_LNS_copy`` and friends)."""

    __slots__ = ("address", "file", "line", "is_stmt", "end_sequence")

    def __init__(self, address: int, file: int, line: int, is_stmt: bool, end_sequence: bool) -> None:
        self.address = address
        self.file = file
        self.line = line
        self.is_stmt = is_stmt
        self.end_sequence = end_sequence


class Op:
    """One DWARF expression operation: ``code`` and its operands."""

    __slots__ = ("code", "args")

    def __init__(self, code: int, args: Tuple[Any, ...]) -> None:
        self.code = code
        self.args = args

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Op(0x{self.code:x}, {self.args})"


def decode_ops(expr: bytes, addr_size: int = 8) -> List[Op]:
    """Decode a DWARF expression (the operations perf and kprobes care about; others end it)."""
    ops: List[Op] = []
    pos, n = 0, len(expr)
    while pos < n:
        c = expr[pos]
        pos += 1
        if 0x50 <= c <= 0x6F or 0x30 <= c <= 0x4F or c in (0x06, 0x9C, 0x9F, 0x96):  # reg, lit, deref, cfa, stack_value, nop
            ops.append(Op(c, ()))
        elif 0x70 <= c <= 0x8F or c == 0x91:  # breg, fbreg
            v, pos = sleb(expr, pos)
            ops.append(Op(c, (v,)))
        elif c in (0x90, 0x93, 0x23, 0x10):  # regx, piece, plus_uconst, constu
            v, pos = uleb(expr, pos)
            ops.append(Op(c, (v,)))
        elif c == 0x11:  # consts
            v, pos = sleb(expr, pos)
            ops.append(Op(c, (v,)))
        elif c == 0x92:  # bregx
            r, pos = uleb(expr, pos)
            v, pos = sleb(expr, pos)
            ops.append(Op(c, (r, v)))
        elif c == 0x03:  # addr
            ops.append(Op(c, (int.from_bytes(expr[pos : pos + addr_size], "little"),)))
            pos += addr_size
        elif c in (0x08, 0x09):  # const1u/s
            ops.append(Op(c, (expr[pos],)))
            pos += 1
        elif c in (0x0A, 0x0B):
            ops.append(Op(c, (int.from_bytes(expr[pos : pos + 2], "little"),)))
            pos += 2
        elif c in (0x0C, 0x0D):
            ops.append(Op(c, (int.from_bytes(expr[pos : pos + 4], "little"),)))
            pos += 4
        elif c in (0x0E, 0x0F):
            ops.append(Op(c, (int.from_bytes(expr[pos : pos + 8], "little"),)))
            pos += 8
        elif c in (0xA3, 0xF3, 0x9E):  # entry_value, GNU_entry_value, implicit_value
            ln, pos = uleb(expr, pos)
            ops.append(Op(c, (bytes(expr[pos : pos + ln]),)))
            pos += ln
        else:
            ops.append(Op(c, ()))
            break  # unknown operand layout: stop decoding here
    return ops


class CompUnit:
    """A unit header and the bases its forms need."""

    __slots__ = ("offset", "end", "version", "addr_size", "abbrev_off", "die_off", "abbrevs",
                 "str_offsets_base", "addr_base", "loclists_base", "rnglists_base", "low_pc",
                 "stmt_list", "comp_dir", "name", "top")  # fmt: skip

    def __init__(self) -> None:
        self.offset = self.end = self.version = self.addr_size = self.abbrev_off = self.die_off = 0
        self.abbrevs: Dict[int, Tuple[int, bool, List[Tuple[int, int, int]]]] = {}
        self.str_offsets_base = 8
        self.addr_base = 8
        self.loclists_base = 12
        self.rnglists_base = 12
        self.low_pc = 0
        self.stmt_list: Optional[int] = None
        self.comp_dir = ""
        self.name = ""
        self.top: Optional[Die] = None


class LineTable:
    """A CU's line program: file names and rows in libdw's order (sequences by address)."""

    def __init__(self, files: List[str], rows: List[LineRow]) -> None:
        self.files = files
        self.rows = rows
        self._addrs = [r.address for r in rows]

    def file(self, index: int) -> str:
        return self.files[index] if 0 <= index < len(self.files) else "??"

    def row_at(self, addr: int) -> Optional[LineRow]:
        """libdw's ``dwarf_getsrc_die``: the last row at or below ``addr`` (not an end of sequence)."""
        i = bisect.bisect_right(self._addrs, addr) - 1
        if i < 0:
            return None
        r = self.rows[i]
        return None if r.end_sequence else r

    def stmt_at(self, addr: int) -> Optional[LineRow]:
        """perf's ``cu_getsrc_die``: the first statement row at ``addr`` (rows sorted by address)."""
        i = bisect.bisect_right(self._addrs, addr) - 1
        if i < 0:
            return None
        lo = bisect.bisect_left(self._addrs, self._addrs[i])
        for r in self.rows[lo:]:
            if r.address > addr:
                return None
            if r.is_stmt:
                return r
        return None


class DwarfFile:
    """The DWARF sections of one ELF file, read through mmap."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise ELFError(f"{path}: {e.strerror}") from None
        try:
            self.mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as e:
            raise ELFError(f"{path}: cannot map ({e})") from None
        finally:
            os.close(fd)
        mm = self.mm
        if mm[:4] != b"\x7fELF" or mm[4] != 2 or mm[5] != 1:
            raise ELFError(f"{path}: not a little-endian 64-bit ELF file")
        self.machine = struct.unpack_from("<H", mm, 18)[0]
        shoff = struct.unpack_from("<Q", mm, 0x28)[0]
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", mm, 0x3A)
        heads = [struct.unpack_from("<IIQQQQIIQQ", mm, shoff + i * shentsize) for i in range(shnum)]
        stro = heads[shstrndx][4] if shstrndx < shnum else 0
        self.sections: Dict[str, Tuple[int, int, int]] = {}
        for h in heads:
            end = mm.find(b"\0", stro + h[0])
            name = mm[stro + h[0] : end].decode("latin-1")
            self.sections.setdefault(name, (h[4], h[5], h[3]))  # file offset, size, address
        self._units: Dict[int, CompUnit] = {}
        self._abbrev_cache: Dict[int, Dict[int, Tuple[int, bool, List[Tuple[int, int, int]]]]] = {}
        self._aranges: Optional[Tuple[List[int], List[Tuple[int, int]]]] = None
        self._lines: Dict[int, LineTable] = {}
        self._die_cache: Dict[int, Die] = {}
        self._fde_index: Optional[Tuple[List[int], List[Tuple[int, int, int]]]] = None

    def close(self) -> None:
        try:
            self.mm.close()
        except (BufferError, ValueError):
            pass

    # -- sections -----------------------------------------------------------------

    def sec(self, name: str) -> Tuple[int, int]:
        s = self.sections.get(name)
        return (s[0], s[1]) if s else (0, 0)

    def has(self, name: str) -> bool:
        return name in self.sections and self.sections[name][1] > 0

    def cstr(self, off: int) -> str:
        end = self.mm.find(b"\0", off)
        return self.mm[off:end].decode("utf-8", "replace")

    def read_addr(self, addr: int, size: int) -> Optional[bytes]:
        """``size`` bytes at virtual address ``addr`` from the section holding it (None if no file bytes)."""
        for off, sz, vaddr in self.sections.values():
            if vaddr and vaddr <= addr and addr + size <= vaddr + sz and off:
                return bytes(self.mm[off + addr - vaddr : off + addr - vaddr + size])
        return None

    def debug_str(self, off: int, section: str = ".debug_str") -> str:
        base, _ = self.sec(section)
        return self.cstr(base + off)

    # -- symbols ------------------------------------------------------------------

    def symbols_named(self, name: str) -> List[Tuple[int, int, int]]:
        """``.symtab`` entries called ``name``: (value, size, st_info), found without decoding the table."""
        so, ss = self.sec(".symtab")
        if not ss:
            return []
        link = next((v for k, v in self.sections.items() if k == ".strtab"), None)
        if link is None:
            return []
        to, ts = link[0], link[1]
        mm = self.mm
        key = name.encode() + b"\0"
        offs = []
        i = mm.find(key, to, to + ts)
        while i >= 0:
            offs.append(i - to)
            i = mm.find(key, i + 1, to + ts)
        out = []
        for o in offs:
            needle = struct.pack("<I", o)
            j = mm.find(needle, so, so + ss)
            while j >= 0:
                if (j - so) % 24 == 0:
                    _n, info, _other, _shndx, value, size = struct.unpack_from("<IBBHQQ", mm, j)
                    out.append((value, size, info))
                j = mm.find(needle, j + 1, so + ss)
        return out

    def symbol_at(self, addr: int) -> Optional[Tuple[str, int]]:
        """The (function or object) symbol holding ``addr``: (name, start).  Slow path: decodes .symtab."""
        so, ss = self.sec(".symtab")
        st = self.sections.get(".strtab")
        if not ss or st is None:
            return None
        best: Optional[Tuple[str, int]] = None
        for n, info, _o, shndx, value, size in struct.iter_unpack("<IBBHQQ", self.mm[so : so + ss]):
            if value <= addr < value + max(size, 1) and n and shndx and (info & 0xF) in (1, 2):
                best = (self.cstr(st[0] + n), value)
                break
        return best

    # -- units ----------------------------------------------------------------------

    def aranges(self) -> Tuple[List[int], List[Tuple[int, int]]]:
        """Sorted range starts and (end, CU offset) from ``.debug_aranges``."""
        if self._aranges is not None:
            return self._aranges
        off, size = self.sec(".debug_aranges")
        mm = self.mm
        items: List[Tuple[int, int, int]] = []
        pos, end = off, off + size
        while pos + 12 <= end:
            length = struct.unpack_from("<I", mm, pos)[0]
            nxt = pos + 4 + length
            _ver, cu_off, asz, _seg = struct.unpack_from("<HIBB", mm, pos + 4)
            p = pos + 12
            p += (-(p - off)) % (2 * asz)
            while p + 16 <= nxt:
                a, ln = struct.unpack_from("<QQ", mm, p)
                p += 16
                if a == 0 and ln == 0:
                    break
                if ln:
                    items.append((a, a + ln, cu_off))
            pos = nxt
        items.sort()
        self._aranges = ([i[0] for i in items], [(i[1], i[2]) for i in items])
        return self._aranges

    def cu_offset_at(self, addr: int) -> Optional[int]:
        starts, rest = self.aranges()
        i = bisect.bisect_right(starts, addr) - 1
        if i >= 0 and addr < rest[i][0]:
            return rest[i][1]
        return None

    def unit(self, cu_off: int) -> CompUnit:
        """The unit whose header is at ``cu_off`` in .debug_info (header and top DIE read)."""
        cu = self._units.get(cu_off)
        if cu is not None:
            return cu
        base, _size = self.sec(".debug_info")
        mm = self.mm
        p = base + cu_off
        length = struct.unpack_from("<I", mm, p)[0]
        if length >= 0xFFFFFFF0:
            raise ELFError(f"{self.path}: 64-bit DWARF is not supported")
        cu = CompUnit()
        cu.offset = cu_off
        cu.end = cu_off + 4 + length
        cu.version = struct.unpack_from("<H", mm, p + 4)[0]
        if cu.version >= 5:
            _ut, cu.addr_size, cu.abbrev_off = struct.unpack_from("<BBI", mm, p + 6)
            cu.die_off = cu_off + 12
        else:
            cu.abbrev_off, cu.addr_size = struct.unpack_from("<IB", mm, p + 6)
            cu.die_off = cu_off + 11
        cu.abbrevs = self._abbrevs(cu.abbrev_off)
        self._units[cu_off] = cu
        top, _ = self.read_die(cu, cu.die_off)
        cu.top = top
        a = top.attrs
        cu.str_offsets_base = a.get(AT_str_offsets_base, 8)
        cu.addr_base = a.get(AT_addr_base, 8)
        cu.loclists_base = a.get(AT_loclists_base, 12)
        cu.rnglists_base = a.get(AT_rnglists_base, 12)
        cu.low_pc = a.get(AT_low_pc) or 0
        cu.stmt_list = a.get(AT_stmt_list)
        cu.comp_dir = a.get(AT_comp_dir) or ""
        cu.name = a.get(AT_name) or ""
        return cu

    def unit_names(self) -> Iterator[Tuple[int, str]]:
        """(unit offset, DW_AT_name of its top DIE) for every unit, decoding only that DIE."""
        base, size = self.sec(".debug_info")
        abase, _ = self.sec(".debug_abbrev")
        mm = self.mm
        p = 0
        while p < size:
            length, version = struct.unpack_from("<IH", mm, base + p)
            if version >= 5:
                asz, aoff = struct.unpack_from("<BI", mm, base + p + 7)
                die = p + 12
            else:
                aoff, asz = struct.unpack_from("<IB", mm, base + p + 6)
                die = p + 11
            code, _ = uleb(mm, base + die)
            # find just this code in the unit's abbreviation table
            q = abase + aoff
            while True:
                c, q = uleb(mm, q)
                if c == 0:
                    break
                tag, q = uleb(mm, q)
                q += 1
                specs = []
                while True:
                    at, q = uleb(mm, q)
                    form, q = uleb(mm, q)
                    imp = 0
                    if form == 0x21:
                        imp, q = sleb(mm, q)
                    if at == 0 and form == 0:
                        break
                    specs.append((at, form, imp))
                if c == code:
                    cu = CompUnit()
                    cu.offset, cu.end, cu.version, cu.addr_size = p, p + 4 + length, version, asz
                    cu.abbrevs = {code: (tag, True, specs)}
                    d, _ = self.read_die(cu, die)
                    name = d.attrs.get(AT_name)
                    yield p, name if isinstance(name, str) else ""
                    break
            p += 4 + length

    def _abbrevs(self, off: int) -> Dict[int, Tuple[int, bool, List[Tuple[int, int, int]]]]:
        got = self._abbrev_cache.get(off)
        if got is not None:
            return got
        base, _ = self.sec(".debug_abbrev")
        mm = self.mm
        pos = base + off
        table: Dict[int, Tuple[int, bool, List[Tuple[int, int, int]]]] = {}
        while True:
            code, pos = uleb(mm, pos)
            if code == 0:
                break
            tag, pos = uleb(mm, pos)
            children = mm[pos] != 0
            pos += 1
            specs: List[Tuple[int, int, int]] = []
            while True:
                at, pos = uleb(mm, pos)
                form, pos = uleb(mm, pos)
                implicit = 0
                if form == 0x21:
                    implicit, pos = sleb(mm, pos)
                if at == 0 and form == 0:
                    break
                specs.append((at, form, implicit))
            table[code] = (tag, children, specs)
        self._abbrev_cache[off] = table
        return table

    def unit_of(self, die_off: int) -> CompUnit:
        """The unit holding a .debug_info offset (units already read, else through aranges order)."""
        for cu in self._units.values():
            if cu.offset <= die_off < cu.end:
                return cu
        # walk unit headers from the start: slow, only for DW_FORM_ref_addr into an unread unit
        base, size = self.sec(".debug_info")
        p = 0
        while p < size:
            length = struct.unpack_from("<I", self.mm, base + p)[0]
            if p <= die_off < p + 4 + length:
                return self.unit(p)
            p += 4 + length
        raise ELFError(f"{self.path}: no unit holds DIE 0x{die_off:x}")

    # -- DIEs ------------------------------------------------------------------------

    def read_die(self, cu: CompUnit, off: int) -> Tuple[Die, int]:
        """Decode the DIE at .debug_info offset ``off`` → (die, offset after its attributes)."""
        mm = self.mm
        base = self.sections[".debug_info"][0]
        pos = base + off
        code, pos = uleb(mm, pos)
        if code == 0:
            return Die(off, 0, {}, {}, False, cu), pos - base
        tag, has_children, specs = cu.abbrevs[code]
        attrs: Dict[int, Any] = {}
        forms: Dict[int, int] = {}
        asz = cu.addr_size
        for at, form, implicit in specs:
            if form == 0x16:  # indirect
                form, pos = uleb(mm, pos)
            v: Any
            if form == 0x13:  # ref4
                v = cu.offset + int.from_bytes(mm[pos : pos + 4], "little")
                pos += 4
            elif form == 0x0E or form == 0x1F:  # strp, line_strp
                so = int.from_bytes(mm[pos : pos + 4], "little")
                pos += 4
                v = self.debug_str(so, ".debug_str" if form == 0x0E else ".debug_line_str")
            elif form == 0x0B:  # data1
                v = mm[pos]
                pos += 1
            elif form == 0x05:  # data2
                v = int.from_bytes(mm[pos : pos + 2], "little")
                pos += 2
            elif form == 0x06 or form == 0x17:  # data4, sec_offset
                v = int.from_bytes(mm[pos : pos + 4], "little")
                pos += 4
            elif form == 0x07:  # data8
                v = int.from_bytes(mm[pos : pos + 8], "little")
                pos += 8
            elif form == 0x01:  # addr
                v = int.from_bytes(mm[pos : pos + asz], "little")
                pos += asz
            elif form == 0x19:  # flag_present
                v = True
            elif form == 0x21:  # implicit_const
                v = implicit
            elif form == 0x0F or form == 0x15 or form == 0x22 or form == 0x23:  # udata, ref_udata, loclistx, rnglistx
                v, pos = uleb(mm, pos)
                if form == 0x15:
                    v += cu.offset
            elif form == 0x0D:  # sdata
                v, pos = sleb(mm, pos)
            elif form == 0x18 or form == 0x09:  # exprloc, block
                ln, pos = uleb(mm, pos)
                v = bytes(mm[pos : pos + ln])
                pos += ln
            elif form == 0x0A:  # block1
                ln = mm[pos]
                v = bytes(mm[pos + 1 : pos + 1 + ln])
                pos += 1 + ln
            elif form == 0x03:
                ln = int.from_bytes(mm[pos : pos + 2], "little")
                v = bytes(mm[pos + 2 : pos + 2 + ln])
                pos += 2 + ln
            elif form == 0x04:
                ln = int.from_bytes(mm[pos : pos + 4], "little")
                v = bytes(mm[pos + 4 : pos + 4 + ln])
                pos += 4 + ln
            elif form == 0x0C:  # flag
                v = mm[pos] != 0
                pos += 1
            elif form == 0x08:  # string
                end = mm.find(b"\0", pos)
                v = mm[pos:end].decode("utf-8", "replace")
                pos = end + 1
            elif form == 0x11:  # ref1
                v = cu.offset + mm[pos]
                pos += 1
            elif form == 0x12:
                v = cu.offset + int.from_bytes(mm[pos : pos + 2], "little")
                pos += 2
            elif form == 0x14:
                v = cu.offset + int.from_bytes(mm[pos : pos + 8], "little")
                pos += 8
            elif form == 0x10:  # ref_addr (absolute)
                v = int.from_bytes(mm[pos : pos + (4 if cu.version >= 3 else asz)], "little")
                pos += 4 if cu.version >= 3 else asz
            elif form == 0x20 or form == 0x24:  # ref_sig8, ref_sup8
                v = int.from_bytes(mm[pos : pos + 8], "little")
                pos += 8
            elif form == 0x1C or form == 0x1D:  # ref_sup4, strp_sup
                v = int.from_bytes(mm[pos : pos + 4], "little")
                pos += 4
            elif form == 0x1E:  # data16
                v = bytes(mm[pos : pos + 16])
                pos += 16
            elif form in (0x1A, 0x25, 0x26, 0x27, 0x28):  # strx*
                if form == 0x1A:
                    idx, pos = uleb(mm, pos)
                else:
                    n = form - 0x24
                    idx = int.from_bytes(mm[pos : pos + n], "little")
                    pos += n
                v = self._strx(cu, idx)
            elif form in (0x1B, 0x29, 0x2A, 0x2B, 0x2C):  # addrx*
                if form == 0x1B:
                    idx, pos = uleb(mm, pos)
                else:
                    n = form - 0x28
                    idx = int.from_bytes(mm[pos : pos + n], "little")
                    pos += n
                v = self._addrx(cu, idx)
            else:
                raise ELFError(f"{self.path}: unknown DWARF form 0x{form:x} at DIE 0x{off:x}")
            attrs[at] = v
            forms[at] = form
        return Die(off, tag, attrs, forms, has_children, cu), pos - base

    def _strx(self, cu: CompUnit, idx: int) -> str:
        base, _ = self.sec(".debug_str_offsets")
        so = struct.unpack_from("<I", self.mm, base + cu.str_offsets_base + 4 * idx)[0]
        return self.debug_str(so)

    def _addrx(self, cu: CompUnit, idx: int) -> int:
        base, _ = self.sec(".debug_addr")
        return int(struct.unpack_from("<Q", self.mm, base + cu.addr_base + 8 * idx)[0])

    def die_at(self, off: int) -> Die:
        """The single DIE at an absolute offset (no children), cached."""
        d = self._die_cache.get(off)
        if d is None:
            d, _ = self.read_die(self.unit_of(off), off)
            self._die_cache[off] = d
        return d

    def iter_top(self, cu: CompUnit) -> Iterator[Die]:
        """The unit DIE's children, skipping subtrees through ``DW_AT_sibling``."""
        top = cu.top
        assert top is not None
        _, pos = self.read_die(cu, cu.die_off)
        if not top.has_children:
            return
        while pos < cu.end:
            d, nxt = self.read_die(cu, pos)
            if d.tag == 0:
                return
            yield d
            if d.has_children:
                sib = d.attrs.get(AT_sibling)
                nxt = sib if sib is not None else self._skip_children(cu, nxt)
            pos = nxt

    def _skip_children(self, cu: CompUnit, pos: int) -> int:
        while True:
            d, pos = self.read_die(cu, pos)
            if d.tag == 0:
                return pos
            if d.has_children:
                sib = d.attrs.get(AT_sibling)
                pos = sib if sib is not None else self._skip_children(cu, pos)

    def subtree(self, die: Die) -> Die:
        """Read ``die``'s children recursively (in place) and return it."""
        if not die.has_children or die.children:
            return die
        cu = die.cu
        _, pos = self.read_die(cu, die.offset)
        stack = [die]
        while stack and pos < cu.end:
            d, pos = self.read_die(cu, pos)
            if d.tag == 0:
                stack.pop()
                continue
            d.parent = stack[-1]
            stack[-1].children.append(d)
            if d.has_children:
                stack.append(d)
        return die

    # -- ranges, locations ---------------------------------------------------------------

    def ranges(self, die: Die) -> List[Tuple[int, int]]:
        """[lo, hi) address ranges of a DIE (low/high pc or DW_AT_ranges)."""
        a = die.attrs
        lo = a.get(AT_low_pc)
        if lo is not None and AT_high_pc in a:
            hi = a[AT_high_pc]
            if die.forms.get(AT_high_pc) != 0x01:
                hi = lo + hi
            return [(lo, hi)]
        r = a.get(AT_ranges)
        if r is None:
            return []
        cu = die.cu
        if cu.version >= 5:
            off = r
            base_sec, _ = self.sec(".debug_rnglists")
            if die.forms.get(AT_ranges) == 0x23:  # rnglistx
                off = cu.rnglists_base + struct.unpack_from("<I", self.mm, base_sec + cu.rnglists_base + 4 * r)[0]
            return self._rnglist(cu, base_sec + off)
        base_sec, _ = self.sec(".debug_ranges")
        return self._ranges_v4(cu, base_sec + r)

    def _rnglist(self, cu: CompUnit, pos: int) -> List[Tuple[int, int]]:
        mm = self.mm
        base = cu.low_pc
        out: List[Tuple[int, int]] = []
        while True:
            k = mm[pos]
            pos += 1
            if k == 0:
                return out
            if k == 1:
                i, pos = uleb(mm, pos)
                base = self._addrx(cu, i)
            elif k == 2:
                i, pos = uleb(mm, pos)
                j, pos = uleb(mm, pos)
                out.append((self._addrx(cu, i), self._addrx(cu, j)))
            elif k == 3:
                i, pos = uleb(mm, pos)
                ln, pos = uleb(mm, pos)
                s = self._addrx(cu, i)
                out.append((s, s + ln))
            elif k == 4:
                s, pos = uleb(mm, pos)
                e, pos = uleb(mm, pos)
                out.append((base + s, base + e))
            elif k == 5:
                base = struct.unpack_from("<Q", mm, pos)[0]
                pos += 8
            elif k == 6:
                s, e = struct.unpack_from("<QQ", mm, pos)
                pos += 16
                out.append((s, e))
            elif k == 7:
                s = struct.unpack_from("<Q", mm, pos)[0]
                ln, pos = uleb(mm, pos + 8)
                out.append((s, s + ln))
            else:
                return out

    def _ranges_v4(self, cu: CompUnit, pos: int) -> List[Tuple[int, int]]:
        base = cu.low_pc
        out: List[Tuple[int, int]] = []
        while True:
            s, e = struct.unpack_from("<QQ", self.mm, pos)
            pos += 16
            if s == 0 and e == 0:
                return out
            if s == 0xFFFFFFFFFFFFFFFF:
                base = e
            else:
                out.append((base + s, base + e))

    def location(self, die: Die, attr: int, addr: int) -> Optional[bytes]:
        """The expression of ``attr`` (location or frame base) that applies at ``addr``, or None."""
        v = die.attrs.get(attr)
        if v is None:
            return None
        form = die.forms.get(attr)
        if isinstance(v, bytes):
            return v
        cu = die.cu
        if cu.version >= 5:
            sec, _ = self.sec(".debug_loclists")
            off = v
            if form == 0x22:  # loclistx
                off = cu.loclists_base + struct.unpack_from("<I", self.mm, sec + cu.loclists_base + 4 * v)[0]
            return self._loclist(cu, sec + off, addr)
        sec, _ = self.sec(".debug_loc")
        return self._loc_v4(cu, sec + v, addr)

    def location_entries(self, die: Die, attr: int) -> List[Tuple[int, int, bytes]]:
        """All (lo, hi, expression) entries of a location list (a single expression: whole range)."""
        v = die.attrs.get(attr)
        if v is None:
            return []
        if isinstance(v, bytes):
            return [(0, 1 << 64, v)]
        out: List[Tuple[int, int, bytes]] = []
        cu = die.cu
        if cu.version >= 5:
            sec, _ = self.sec(".debug_loclists")
            off = v
            if die.forms.get(attr) == 0x22:
                off = cu.loclists_base + struct.unpack_from("<I", self.mm, sec + cu.loclists_base + 4 * v)[0]
            self._loclist(cu, sec + off, None, out)
        else:
            sec, _ = self.sec(".debug_loc")
            self._loc_v4(cu, sec + v, None, out)
        return out

    def _loclist(self, cu: CompUnit, pos: int, addr: Optional[int],
                 out: Optional[List[Tuple[int, int, bytes]]] = None) -> Optional[bytes]:  # fmt: skip
        mm = self.mm
        base = cu.low_pc
        while True:
            k = mm[pos]
            pos += 1
            if k == 0:
                return None
            lo = hi = -1
            if k == 1:
                i, pos = uleb(mm, pos)
                base = self._addrx(cu, i)
                continue
            if k == 6:
                base = struct.unpack_from("<Q", mm, pos)[0]
                pos += 8
                continue
            if k == 2:
                i, pos = uleb(mm, pos)
                j, pos = uleb(mm, pos)
                lo, hi = self._addrx(cu, i), self._addrx(cu, j)
            elif k == 3:
                i, pos = uleb(mm, pos)
                ln, pos = uleb(mm, pos)
                lo = self._addrx(cu, i)
                hi = lo + ln
            elif k == 4:
                s, pos = uleb(mm, pos)
                e, pos = uleb(mm, pos)
                lo, hi = base + s, base + e
            elif k == 5:
                lo, hi = 0, 1 << 64
            elif k == 7:
                lo, hi = struct.unpack_from("<QQ", mm, pos)
                pos += 16
            elif k == 8:
                lo = struct.unpack_from("<Q", mm, pos)[0]
                ln, pos = uleb(mm, pos + 8)
                hi = lo + ln
            else:
                return None
            ln, pos = uleb(mm, pos)
            if out is not None:
                out.append((lo, hi, bytes(mm[pos : pos + ln])))
            elif addr is not None and lo <= addr < hi:
                return bytes(mm[pos : pos + ln])
            pos += ln

    def _loc_v4(self, cu: CompUnit, pos: int, addr: Optional[int],
                out: Optional[List[Tuple[int, int, bytes]]] = None) -> Optional[bytes]:  # fmt: skip
        mm = self.mm
        base = cu.low_pc
        while True:
            s, e = struct.unpack_from("<QQ", mm, pos)
            pos += 16
            if s == 0 and e == 0:
                return None
            if s == 0xFFFFFFFFFFFFFFFF:
                base = e
                continue
            ln = struct.unpack_from("<H", mm, pos)[0]
            pos += 2
            lo, hi = base + s, base + e
            if out is not None:
                out.append((lo, hi, bytes(mm[pos : pos + ln])))
            elif addr is not None and lo <= addr < hi:
                return bytes(mm[pos : pos + ln])
            pos += ln

    # -- line tables ---------------------------------------------------------------------

    def line_table(self, cu: CompUnit) -> LineTable:
        """Decode the unit's whole line program (once per unit)."""
        if cu.stmt_list is None:
            return LineTable([], [])
        got = self._lines.get(cu.stmt_list)
        if got is not None:
            return got
        base, _ = self.sec(".debug_line")
        lt = self._decode_lines(base + cu.stmt_list)
        self._lines[cu.stmt_list] = lt
        return lt

    def _entry_formats(self, pos: int) -> Tuple[List[Tuple[int, int]], int]:
        mm = self.mm
        n = mm[pos]
        pos += 1
        fmts = []
        for _ in range(n):
            ct, pos = uleb(mm, pos)
            fm, pos = uleb(mm, pos)
            fmts.append((ct, fm))
        return fmts, pos

    def _entries(self, pos: int, fmts: Sequence[Tuple[int, int]]) -> Tuple[List[Tuple[str, int]], int]:
        mm = self.mm
        count, pos = uleb(mm, pos)
        out = []
        for _ in range(count):
            name, d = "", 0
            for ct, fm in fmts:
                v: Any = None
                if fm == 0x1F or fm == 0x0E:
                    so = struct.unpack_from("<I", mm, pos)[0]
                    pos += 4
                    v = self.debug_str(so, ".debug_line_str" if fm == 0x1F else ".debug_str")
                elif fm == 0x08:
                    end = mm.find(b"\0", pos)
                    v = mm[pos:end].decode("utf-8", "replace")
                    pos = end + 1
                elif fm == 0x0F:
                    v, pos = uleb(mm, pos)
                elif fm in (0x0B, 0x05, 0x06, 0x07, 0x1E):
                    n = {0x0B: 1, 0x05: 2, 0x06: 4, 0x07: 8, 0x1E: 16}[fm]
                    v = int.from_bytes(mm[pos : pos + n], "little")
                    pos += n
                elif fm == 0x09:
                    ln, pos = uleb(mm, pos)
                    pos += ln
                else:
                    raise ELFError(f"{self.path}: unsupported line table form 0x{fm:x}")
                if ct == 1:
                    name = str(v)
                elif ct == 2:
                    d = int(v)
            out.append((name, d))
        return out, pos

    def _decode_lines(self, start: int) -> LineTable:
        mm = self.mm
        length = struct.unpack_from("<I", mm, start)[0]
        end = start + 4 + length
        version = struct.unpack_from("<H", mm, start + 4)[0]
        pos = start + 6
        if version >= 5:
            pos += 2  # address_size, segment_selector_size
        header_length = struct.unpack_from("<I", mm, pos)[0]
        pos += 4
        prog = pos + header_length
        min_inst = mm[pos]
        pos += 1
        if version >= 4:
            pos += 1  # maximum_operations_per_instruction (VLIW only)
        default_is_stmt = mm[pos] != 0
        line_base = struct.unpack_from("<b", mm, pos + 1)[0]
        line_range = mm[pos + 2]
        opcode_base = mm[pos + 3]
        pos += 4
        std_lens = list(mm[pos : pos + opcode_base - 1])
        pos += opcode_base - 1
        files: List[str] = []
        if version >= 5:
            dfmt, pos = self._entry_formats(pos)
            dirs_e, pos = self._entries(pos, dfmt)
            dirs = [n for n, _ in dirs_e]
            ffmt, pos = self._entry_formats(pos)
            files_e, pos = self._entries(pos, ffmt)
            for name, d in files_e:
                files.append(name if name.startswith("/") or not (0 <= d < len(dirs)) else f"{dirs[d]}/{name}")
        else:
            dirs = [""]
            while mm[pos] != 0:
                e = mm.find(b"\0", pos)
                dirs.append(mm[pos:e].decode("utf-8", "replace"))
                pos = e + 1
            pos += 1
            files.append("")  # index 0 is unused before DWARF 5
            while mm[pos] != 0:
                e = mm.find(b"\0", pos)
                name = mm[pos:e].decode("utf-8", "replace")
                pos = e + 1
                d, pos = uleb(mm, pos)
                _t, pos = uleb(mm, pos)
                _s, pos = uleb(mm, pos)
                files.append(name if name.startswith("/") or d == 0 or d >= len(dirs) else f"{dirs[d]}/{name}")
        # the state machine; rows are kept per sequence, sequences then sorted by address
        seqs: List[List[LineRow]] = []
        cur: List[LineRow] = []
        pos = prog
        addr, file, line, is_stmt = 0, 1, 1, default_is_stmt
        while pos < end:
            op = mm[pos]
            pos += 1
            if op >= opcode_base:
                adj = op - opcode_base
                addr += (adj // line_range) * min_inst
                line += line_base + adj % line_range
                cur.append(LineRow(addr, file, line, is_stmt, False))
            elif op == 0:
                ln, pos = uleb(mm, pos)
                sub = mm[pos]
                if sub == 1:
                    cur.append(LineRow(addr, file, line, is_stmt, True))
                    seqs.append(cur)
                    cur = []
                    addr, file, line, is_stmt = 0, 1, 1, default_is_stmt
                elif sub == 2:
                    addr = int.from_bytes(mm[pos + 1 : pos + ln], "little")
                pos += ln
            elif op == 1:
                cur.append(LineRow(addr, file, line, is_stmt, False))
            elif op == 2:
                v, pos = uleb(mm, pos)
                addr += v * min_inst
            elif op == 3:
                v, pos = sleb(mm, pos)
                line += v
            elif op == 4:
                file, pos = uleb(mm, pos)
            elif op == 5:
                _c, pos = uleb(mm, pos)
            elif op == 6:
                is_stmt = not is_stmt
            elif op == 8:
                addr += ((255 - opcode_base) // line_range) * min_inst
            elif op == 9:
                addr += struct.unpack_from("<H", mm, pos)[0]
                pos += 2
            elif op in (7, 10, 11):
                pass
            else:
                for _ in range(std_lens[op - 1]):
                    _v, pos = uleb(mm, pos)
        if cur:
            seqs.append(cur)
        seqs.sort(key=lambda s: s[0].address)
        rows = [r for s in seqs for r in s]
        return LineTable(files, rows)

    # -- call frame information -----------------------------------------------------------

    def cfa_at(self, addr: int) -> Optional[Tuple[int, int]]:
        """The CFA rule ``(DWARF register, offset)`` at ``addr``, or None (no FDE, or an expression)."""
        for sec, is_eh in ((".eh_frame", True), (".debug_frame", False)):
            if not self.has(sec):
                continue
            fde = self._find_fde(sec, is_eh, addr)
            if fde is not None:
                return self._run_cfi(sec, is_eh, fde, addr)
        return None

    def _find_fde(self, sec: str, is_eh: bool, addr: int) -> Optional[int]:
        if is_eh:
            return None  # vmlinux has no .eh_frame; user binaries go through pyelftools
        if self._fde_index is None:
            base, size = self.sec(sec)
            mm = self.mm
            items: List[Tuple[int, int, int]] = []
            pos = 0
            while pos + 4 <= size:
                length = struct.unpack_from("<I", mm, base + pos)[0]
                if length == 0:
                    pos += 4
                    continue
                cie_id = struct.unpack_from("<I", mm, base + pos + 4)[0]
                if cie_id != 0xFFFFFFFF:
                    start, rng = struct.unpack_from("<QQ", mm, base + pos + 8)
                    items.append((start, start + rng, pos))
                pos += 4 + length
            items.sort()
            self._fde_index = ([i[0] for i in items], items)
        starts, items = self._fde_index
        i = bisect.bisect_right(starts, addr) - 1
        if i >= 0 and addr < items[i][1]:
            return items[i][2]
        return None

    def _run_cfi(self, sec: str, is_eh: bool, fde_pos: int, addr: int) -> Optional[Tuple[int, int]]:
        base, _ = self.sec(sec)
        mm = self.mm
        flen = struct.unpack_from("<I", mm, base + fde_pos)[0]
        cie_off = struct.unpack_from("<I", mm, base + fde_pos + 4)[0]
        start = struct.unpack_from("<Q", mm, base + fde_pos + 8)[0]
        fde_insns = (base + fde_pos + 24, base + fde_pos + 4 + flen)
        clen = struct.unpack_from("<I", mm, base + cie_off)[0]
        p = base + cie_off + 8
        version = mm[p]
        p += 1
        e = mm.find(b"\0", p)
        aug = mm[p:e]
        p = e + 1
        if version >= 4:
            p += 2  # address_size, segment_size
        code_align, p = uleb(mm, p)
        data_align, p = sleb(mm, p)
        if version == 1:
            p += 1
        else:
            _ra, p = uleb(mm, p)
        if aug.startswith(b"z"):
            alen, p = uleb(mm, p)
            p += alen
        state = {"reg": -1, "off": 0, "ok": True}
        stack: List[Tuple[Any, Any, Any]] = []
        loc = start

        def run(pos: int, stop: int, limit: Optional[int]) -> bool:
            nonlocal loc
            while pos < stop:
                op = mm[pos]
                pos += 1
                hi, lo6 = op & 0xC0, op & 0x3F
                delta = -1
                if hi == 0x40:
                    delta = lo6 * code_align
                elif hi == 0x80:
                    _v, pos = uleb(mm, pos)
                elif hi == 0xC0:
                    pass
                elif op == 0x01:
                    loc = struct.unpack_from("<Q", mm, pos)[0]
                    pos += 8
                    if limit is not None and loc > limit:
                        return False
                elif op in (0x02, 0x03, 0x04):
                    n = {0x02: 1, 0x03: 2, 0x04: 4}[op]
                    delta = int.from_bytes(mm[pos : pos + n], "little") * code_align
                    pos += n
                elif op == 0x0C:
                    state["reg"], pos = uleb(mm, pos)
                    state["off"], pos = uleb(mm, pos)
                    state["ok"] = True
                elif op == 0x12:
                    state["reg"], pos = uleb(mm, pos)
                    o, pos = sleb(mm, pos)
                    state["off"] = o * data_align
                    state["ok"] = True
                elif op == 0x0D:
                    state["reg"], pos = uleb(mm, pos)
                elif op == 0x0E:
                    state["off"], pos = uleb(mm, pos)
                elif op == 0x13:
                    o, pos = sleb(mm, pos)
                    state["off"] = o * data_align
                elif op == 0x0F:
                    ln, pos = uleb(mm, pos)
                    pos += ln
                    state["ok"] = False
                elif op == 0x0A:
                    stack.append((state["reg"], state["off"], state["ok"]))
                elif op == 0x0B:
                    if stack:
                        state["reg"], state["off"], state["ok"] = stack.pop()
                elif op in (0x05, 0x09, 0x14):
                    _a, pos = uleb(mm, pos)
                    _b, pos = uleb(mm, pos)
                elif op in (0x11, 0x15):
                    _a, pos = uleb(mm, pos)
                    _b, pos = sleb(mm, pos)
                elif op in (0x06, 0x07, 0x08, 0x2E):
                    _a, pos = uleb(mm, pos)
                elif op in (0x10, 0x16):
                    _a, pos = uleb(mm, pos)
                    ln, pos = uleb(mm, pos)
                    pos += ln
                elif op == 0x2F:
                    _a, pos = uleb(mm, pos)
                    _b, pos = uleb(mm, pos)
                elif op == 0x00:
                    pass
                else:
                    return False
                if delta >= 0:
                    loc += delta
                    if limit is not None and loc > limit:
                        return False
            return True

        run(p, base + cie_off + 4 + clen, None)
        run(fde_insns[0], fde_insns[1], addr)
        if not state["ok"] or state["reg"] < 0:
            return None
        return int(state["reg"]), int(state["off"])
