"""Source lines and local variables from DWARF, for line probes (``perf probe -L/-V`` and ``FUNC:LINE VAR``).

Reads ``.debug_info``/``.debug_line``/``.debug_frame``/``.eh_frame`` with
pyelftools (pure Python; the optional ``dwarf`` extra).  Everything is relative
to a function: line numbers are counted from the function's ``DW_AT_decl_line``
(line 0 is the line that declares it, as perf prints them), and a variable is
turned into the fetcharg that reads it at one probe address:

* ``DW_OP_regN`` → ``%REG``;
* ``DW_OP_bregN OFF`` → ``+OFF(%REG)``;
* ``DW_OP_fbreg OFF`` → relative to the function's frame base
  (``DW_AT_frame_base``): ``DW_OP_call_frame_cfa`` is the CFA found in the call
  frame information at that address (``CFA = REG + N``: ``+(N+OFF)(%REG)``), or
  a register/breg frame base;
* ``DW_OP_addr A`` → a static variable (``@SYMBOL+OFF`` for the kernel,
  ``@+FILEOFFSET`` for uprobes);
* ``var->member`` dereferences (``+MOFF(VALUE)``), ``var.member`` adds the
  member's offset; a ``char *`` read as ``:string`` becomes ``+0(VALUE):string``
  and a ``char[N]`` array is read as a string where it lies.

Values the compiler computes (``DW_OP_stack_value``, pieces, entry values) have
no fetcharg and are reported as such.  Register numbers follow the psABI DWARF
numbering (x86-64, AArch64) and become tracefs register names.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from .._record import dataclass
from ..errors import ELFError, FeatureMissing, KprobesError

__all__ = [
    "DebugInfo",
    "FunctionSource",
    "SourceLine",
    "ProbePoint",
    "Variable",
    "DwarfError",
    "find_debug_vmlinux",
    "debug_package_hint",
    "debug_vmlinux_candidates",
    "format_listing",
    "format_variables",
]

# psABI DWARF register numbers → tracefs names.
_X86_64_DWARF = ("ax", "dx", "cx", "bx", "si", "di", "bp", "sp",
                 "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "ip")  # fmt: skip
_ARM64_DWARF = tuple(f"x{i}" for i in range(31)) + ("sp",)
_REGS = {"x86_64": _X86_64_DWARF, "arm64": _ARM64_DWARF}
_MACHINES = {"x64": "x86_64", "AArch64": "arm64"}

_ATE_SIGNED = (5, 6, 13)  # DW_ATE_signed, signed_char, signed_fixed
_ATE_CHAR = (6, 8)  # signed_char, unsigned_char
_SKIP_TAGS = ("DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type",
              "DW_TAG_restrict_type", "DW_TAG_atomic_type")  # fmt: skip


class DwarfError(KprobesError):
    """Debug info that does not have what was asked (no such function, line, variable)."""


@dataclass(frozen=True)
class SourceLine:
    """One source line of a function: absolute and relative number, text, probeable or not."""

    number: int
    relative: int
    text: Optional[str]
    probeable: bool


@dataclass(frozen=True)
class FunctionSource:
    """``-L FUNC``: the function's file, first line and lines (text None when the source is absent)."""

    function: str
    file: str
    decl_line: int
    lines: Tuple[SourceLine, ...]
    source_found: bool


@dataclass(frozen=True)
class ProbePoint:
    """An address inside ``function``: ``offset`` from its entry, the source line it starts."""

    function: str
    address: int
    offset: int
    line: int
    relative_line: int
    file: str


@dataclass(frozen=True)
class Variable:
    """A variable in scope at a probe point; ``fetcharg`` is None when it has no location there."""

    name: str
    type_name: str
    is_param: bool
    fetcharg: Optional[str]
    fetch_type: Optional[str]
    why_not: Optional[str] = None


# ---------------------------------------------------------------------- kernel debug files


def debug_vmlinux_candidates(release: str, root: str = "/") -> List[str]:
    """Where distributions put the debug vmlinux for kernel ``release``."""
    rels = [
        f"usr/lib/debug/boot/vmlinux-{release}",  # Debian, Ubuntu
        f"usr/lib/debug/lib/modules/{release}/vmlinux",  # Fedora, RHEL, Ubuntu ddebs
        f"lib/modules/{release}/build/vmlinux",  # self-built kernels
        f"boot/vmlinux-{release}",  # some distributions (uncompressed, with debug info)
    ]
    return [os.path.join(root, r) for r in rels]


def debug_package_hint(release: str, os_release: str) -> str:
    """The package (and command) that provides the debug vmlinux on this distribution."""
    info: Dict[str, str] = {}
    for line in os_release.splitlines():
        key, sep, val = line.partition("=")
        if sep:
            info[key.strip()] = val.strip().strip('"')
    ids = [info.get("ID", "")] + info.get("ID_LIKE", "").split()
    if "ubuntu" in ids:
        return (f"install linux-image-{release}-dbgsym (from the ddebs.ubuntu.com repository: "
                f"apt install linux-image-{release}-dbgsym)")  # fmt: skip
    if "debian" in ids:
        return (f"install linux-image-{release}-dbg (or linux-image-amd64-dbg for the "
                f"current default kernel): apt install linux-image-{release}-dbg")  # fmt: skip
    if any(i in ids for i in ("fedora", "rhel", "centos", "rocky", "almalinux")):
        return f"install kernel-debuginfo: dnf debuginfo-install kernel-{release}"
    return (f"install your distribution's kernel debug package: Debian linux-image-{release}-dbg "
            f"(or linux-image-amd64-dbg), Ubuntu linux-image-{release}-dbgsym, Fedora kernel-debuginfo")  # fmt: skip


def find_debug_vmlinux(
    explicit: Optional[str] = None,
    *,
    release: Optional[str] = None,
    root: str = "/",
    os_release_path: Optional[str] = None,
) -> str:
    """The kernel's debug vmlinux: ``explicit`` (``-k``) or the first distribution path that exists.

    Raises :class:`~kprobes.errors.FeatureMissing` naming the package that provides it.
    """
    rel = release or os.uname().release
    if explicit:
        if not os.path.isfile(explicit):
            raise FeatureMissing(f"{explicit}: no such file", hint="give the path of a vmlinux with debug info")
        return explicit
    cands = debug_vmlinux_candidates(rel, root)
    for c in cands:
        if os.path.isfile(c):
            return c
    text = ""
    for p in (os_release_path or os.path.join(root, "etc/os-release"), os.path.join(root, "usr/lib/os-release")):
        try:
            with open(p) as f:
                text = f.read()
            break
        except OSError:
            continue
    raise FeatureMissing(
        f"no kernel debug info for {rel}: line probes and local variables need a vmlinux with DWARF "
        "(looked in " + ", ".join(cands) + ")",
        hint=debug_package_hint(rel, text) + "; or pass one with -k VMLINUX",
    )


# ---------------------------------------------------------------------- locations


@dataclass(frozen=True)
class _Loc:
    """Where a value is: in register ``reg`` (``base`` None) or in memory at ``base``+``off``.

    ``base`` is fetcharg text whose value is an address (``%bp``, ``+8(%di)``), or
    ``@`` for a static address rendered by ``static`` (``off`` is then the address).
    """

    reg: Optional[str] = None
    base: Optional[str] = None
    off: int = 0

    def value(self, static: Callable[[int], str]) -> str:
        """Fetcharg text that reads the value."""
        if self.reg is not None:
            return f"%{self.reg}"
        if self.base == "@":
            return static(self.off)
        return f"{'+' if self.off >= 0 else '-'}{abs(self.off)}({self.base})"

    def member(self, off: int) -> _Loc:
        if self.reg is not None:
            raise DwarfError("a struct held in a register has no address; read the whole register instead")
        return _Loc(base=self.base, off=self.off + off)


def _attr(die: Any, name: str) -> Any:
    a = die.attributes.get(name)
    return None if a is None else a.value


def _name(die: Any) -> Optional[str]:
    n = _attr(die, "DW_AT_name")
    if n is not None:
        return n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n)
    for ref in ("DW_AT_abstract_origin", "DW_AT_specification"):
        if ref in die.attributes:
            try:
                return _name(die.get_DIE_from_attribute(ref))
            except Exception:  # noqa: BLE001 - broken references: treat as unnamed
                return None
    return None


class DebugInfo:
    """DWARF of one ELF file (a user binary or a kernel vmlinux).

    ``kernel`` selects how static variables are addressed (``@SYMBOL`` vs ``@+FILEOFF``).
    Opening is lazy; use as a context manager.
    """

    def __init__(self, path: str, *, kernel: bool = False) -> None:
        self.path = path
        self.kernel = kernel
        self._file: Any = None
        self._elf: Any = None
        self._dwarf: Any = None
        self._funcs: Dict[str, Tuple[Any, Any]] = {}
        self._fdes: Optional[List[Any]] = None
        self.arch = "x86_64"

    def __enter__(self) -> DebugInfo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- opening -------------------------------------------------------------

    def _open(self) -> Any:
        if self._dwarf is not None:
            return self._dwarf
        try:
            from elftools.elf.elffile import ELFFile
        except ImportError:
            raise FeatureMissing("DWARF support needs pyelftools",
                                 hint="pip install 'kprobes[dwarf]' (or: pip install pyelftools)") from None  # fmt: skip
        path = self.path
        if not self.kernel:
            from .symbols.elf import ELFFile as OwnELF

            with OwnELF(path) as own:
                if own.section(".debug_info") is None:
                    dbg = own.debug_file()
                    if dbg is not None:
                        path = dbg.path
        try:
            self._file = open(path, "rb")
        except OSError as e:
            raise ELFError(f"{path}: {e.strerror}") from None
        try:
            self._elf = ELFFile(self._file)
        except Exception as e:  # noqa: BLE001 - pyelftools raises its own errors
            raise ELFError(f"{path}: not an ELF file ({e})") from None
        if not self._elf.has_dwarf_info() or self._elf.get_section_by_name(".debug_info") is None:
            raise ELFError(
                f"{self.path} has no DWARF debug info",
                hint="compile with -g, or install the binary's debug package (its .build-id file)",
            )
        self.arch = _MACHINES.get(self._elf.get_machine_arch(), self._elf.get_machine_arch())
        self._dwarf = self._elf.get_dwarf_info()
        return self._dwarf

    def _reg(self, num: int) -> str:
        regs = _REGS.get(self.arch)
        if regs is None or num >= len(regs):
            raise DwarfError(f"DWARF register {num} has no tracefs name on {self.arch}")
        return regs[num]

    # -- functions -----------------------------------------------------------

    def _candidate_cus(self, name: str) -> Iterator[Any]:
        dw = self._open()
        seen = set()
        symtab = self._elf.get_section_by_name(".symtab")
        if symtab is not None and hasattr(symtab, "get_symbol_by_name"):
            aranges = dw.get_aranges()
            for sym in symtab.get_symbol_by_name(name) or ():
                if aranges is None:
                    break
                off = aranges.cu_offset_at_addr(sym["st_value"])
                if off is not None and off not in seen:
                    seen.add(off)
                    yield dw.get_CU_at(off)
        for cu in dw.iter_CUs():
            if cu.cu_offset not in seen:
                yield cu

    def _function(self, name: str) -> Tuple[Any, Any]:
        if name in self._funcs:
            return self._funcs[name]
        for cu in self._candidate_cus(name):
            for die in cu.iter_DIEs():
                if die.tag == "DW_TAG_subprogram" and "DW_AT_low_pc" in die.attributes and _name(die) == name:
                    self._funcs[name] = (cu, die)
                    return cu, die
        raise DwarfError(
            f"function {name!r} is not in the debug info of {self.path}",
            hint="it may be inlined everywhere (no out-of-line copy) or named differently (.isra/.constprop)",
        )

    def _ranges(self, cu: Any, die: Any) -> List[Tuple[int, int]]:
        low = _attr(die, "DW_AT_low_pc")
        if low is not None and "DW_AT_high_pc" in die.attributes:
            hi_attr = die.attributes["DW_AT_high_pc"]
            high = hi_attr.value if hi_attr.form == "DW_FORM_addr" else low + hi_attr.value
            return [(low, high)]
        if "DW_AT_ranges" not in die.attributes:
            return []
        rl = self._open().range_lists()
        if rl is None:
            return []
        try:
            entries = rl.get_range_list_at_offset(_attr(die, "DW_AT_ranges"), cu=cu)
        except Exception:  # noqa: BLE001 - rnglistx forms pyelftools cannot follow
            return []
        base = _attr(cu.get_top_DIE(), "DW_AT_low_pc") or 0
        out = []
        for e in entries:
            if hasattr(e, "base_address"):
                base = e.base_address
            elif getattr(e, "is_absolute", False):
                out.append((e.begin_offset, e.end_offset))
            else:
                out.append((base + e.begin_offset, base + e.end_offset))
        return out

    def _file_name(self, cu: Any, lp: Any, index: int) -> str:
        entries = lp["file_entry"]
        i = index if lp.header["version"] >= 5 else index - 1
        if not 0 <= i < len(entries):
            return "??"
        fe = entries[i]
        fname = fe.name.decode("utf-8", "replace") if isinstance(fe.name, bytes) else str(fe.name)
        dirs = lp["include_directory"]
        di = fe.dir_index if lp.header["version"] >= 5 else fe.dir_index - 1
        d = ""
        if 0 <= di < len(dirs):
            d = dirs[di].decode("utf-8", "replace") if isinstance(dirs[di], bytes) else str(dirs[di])
        comp = _attr(cu.get_top_DIE(), "DW_AT_comp_dir")
        comp_s = comp.decode("utf-8", "replace") if isinstance(comp, bytes) else (comp or "")
        return os.path.normpath(os.path.join(comp_s, d, fname))

    def _rows(self, name: str) -> Tuple[Any, Any, str, int, List[Tuple[int, int]], List[Tuple[int, int, bool]]]:
        """(cu, die, file, decl_line, ranges, [(address, line, is_stmt)] in the function's file)."""
        cu, die = self._function(name)
        lp = self._open().line_program_for_CU(cu)
        if lp is None:
            raise DwarfError(f"{self.path}: no line table for {name!r}")
        decl_file = _attr(die, "DW_AT_decl_file")
        if decl_file is None and "DW_AT_specification" in die.attributes:
            decl_file = _attr(die.get_DIE_from_attribute("DW_AT_specification"), "DW_AT_decl_file")
        decl_line = _attr(die, "DW_AT_decl_line")
        if decl_line is None and "DW_AT_specification" in die.attributes:
            decl_line = _attr(die.get_DIE_from_attribute("DW_AT_specification"), "DW_AT_decl_line")
        file = self._file_name(cu, lp, decl_file or 1)
        ranges = self._ranges(cu, die)
        rows: List[Tuple[int, int, bool]] = []
        names: Dict[int, str] = {}
        for entry in lp.get_entries():
            st = entry.state
            if st is None or st.end_sequence:
                continue
            if not any(lo <= st.address < hi for lo, hi in ranges):
                continue
            fn = names.get(st.file)
            if fn is None:
                fn = names[st.file] = self._file_name(cu, lp, st.file)
            if fn == file:
                rows.append((st.address, st.line, bool(st.is_stmt)))
        if decl_line is None:
            decl_line = min((ln for _, ln, _ in rows), default=0)
        return cu, die, file, int(decl_line), ranges, rows

    def source(self, name: str, *, source_dirs: Sequence[str] = ()) -> FunctionSource:
        """The function's lines for ``-L``: from its declaration to its last line in the line table."""
        _cu, _die, file, decl, _ranges, rows = self._rows(name)
        probeable = {ln for _, ln, stmt in rows if stmt and ln >= decl}
        last = max(probeable, default=decl)
        text = _read_source(file, source_dirs)
        lines = tuple(
            SourceLine(n, n - decl, text[n - 1] if text and n - 1 < len(text) else None, n in probeable)
            for n in range(decl, last + 1)
        )
        return FunctionSource(name, file, decl, lines, text is not None)

    def point(self, name: str, relative_line: Optional[int] = None, *, offset: int = 0,
              skip_prologue: bool = False) -> ProbePoint:  # fmt: skip
        """The address of ``FUNC:RLN`` (first statement of that line), ``FUNC+OFFS``, or the entry.

        ``skip_prologue`` moves an entry probe past the prologue (the second line
        of the function), where parameters have been stored where DWARF says.
        """
        _cu, _die, file, decl, ranges, rows = self._rows(name)
        entry = ranges[0][0] if ranges else 0
        if relative_line is not None:
            want = decl + relative_line
            addrs = sorted(a for a, ln, stmt in rows if ln == want and stmt)
            if not addrs:
                near = sorted({ln - decl for _, ln, s in rows if s and ln >= decl})
                raise DwarfError(
                    f"line {relative_line} of {name} ({file}:{want}) has no code",
                    hint="probeable lines (relative): " + " ".join(str(n) for n in near[:40])
                    + f"; see: kprobes probe -L {name}",
                )
            addr = addrs[0]
            return ProbePoint(name, addr, addr - entry, want, relative_line, file)
        addr = entry + offset
        if skip_prologue and not offset:
            later = sorted((a, ln) for a, ln, s in rows if s and a > entry)
            first_line = next((ln for a, ln, s in sorted(rows) if a == entry), decl)
            nxt = next((a for a, ln in later if ln != first_line), None)
            if nxt is not None:
                addr = nxt
        line = max((ln for a, ln, _ in sorted(rows) if a <= addr), default=decl)
        return ProbePoint(name, addr, addr - entry, line, line - decl, file)

    # -- variables -----------------------------------------------------------

    def variables(self, pt: ProbePoint, static: Optional[Callable[[int], str]] = None) -> List[Variable]:
        """Parameters and locals in scope at ``pt`` (inner scopes hide outer names), sorted by name."""
        cu, die = self._function(pt.function)
        found: Dict[str, Variable] = {}
        for var_die, is_param in self._scope(cu, die, pt.address):
            name = _name(var_die)
            if not name:
                continue
            tdie = self._type(var_die)
            tname = self._type_name(tdie)
            rd = static or self._static_default
            try:
                loc = self._location(cu, die, var_die, pt.address)
            except DwarfError as e:
                found[name] = Variable(name, tname, is_param, None, None, why_not=e.message)
                continue
            try:
                fetch, ftype = self._value_fetch(loc, tdie, None, rd)
                found[name] = Variable(name, tname, is_param, fetch, ftype)
            except DwarfError:  # an aggregate: readable member by member
                found[name] = Variable(name, tname, is_param, loc.value(rd), None)
        return sorted(found.values(), key=lambda v: v.name)

    def fetcharg(self, pt: ProbePoint, expr: str, type_override: Optional[str] = None,
                 static: Optional[Callable[[int], str]] = None) -> Tuple[str, str]:  # fmt: skip
        """``VAR``, ``VAR->member``, ``VAR.member`` at ``pt`` → (field name, ``FETCHARG:TYPE``)."""
        cu, die = self._function(pt.function)
        parts = _split_path(expr)
        head = parts[0][1]
        var_die = None
        for d, _is_param in self._scope(cu, die, pt.address):
            if _name(d) == head:
                var_die = d
        if var_die is None:
            names = sorted({n for n in (_name(d) for d, _ in self._scope(cu, die, pt.address)) if n})
            raise DwarfError(
                f"no variable {head!r} in scope at {pt.function}:{pt.relative_line}",
                hint="available: " + (", ".join(names) or "none") + f"; see: kprobes probe -V {pt.function}:{pt.relative_line}",
            )
        loc = self._location(cu, die, var_die, pt.address)
        tdie = self._type(var_die)
        for op, member in parts[1:]:
            if op == "->":
                target = self._strip(tdie)
                if target is None or target.tag != "DW_TAG_pointer_type":
                    raise DwarfError(f"{expr}: '->{member}' needs a pointer, {self._type_name(tdie)} is not one")
                pointee = self._type(target)
                moff, mtype = self._member(pointee, member, expr)
                loc = _Loc(base=loc.value(static or self._static_default), off=moff)
            else:
                moff, mtype = self._member(tdie, member, expr)
                loc = loc.member(moff)
            tdie = mtype
        fetch, ftype = self._value_fetch(loc, tdie, type_override, static or self._static_default)
        return parts[-1][1], fetch + (f":{ftype}" if ftype else "")

    def _static_default(self, addr: int) -> str:
        if self.kernel:
            return f"@0x{addr:x}"
        from .symbols.elf import ELFFile as OwnELF

        with OwnELF(self.path) as own:
            return f"@+0x{own.vaddr_to_offset(addr):x}"

    def _scope(self, cu: Any, die: Any, addr: int) -> List[Tuple[Any, bool]]:
        out: List[Tuple[Any, bool]] = []

        def walk(parent: Any) -> None:
            for child in parent.iter_children():
                if child.tag == "DW_TAG_formal_parameter":
                    out.append((child, True))
                elif child.tag == "DW_TAG_variable":
                    out.append((child, False))
                elif child.tag == "DW_TAG_lexical_block":
                    if any(lo <= addr < hi for lo, hi in self._ranges(cu, child)):
                        walk(child)

        walk(die)
        return out

    def _type(self, die: Any) -> Any:
        if "DW_AT_type" not in die.attributes:
            if "DW_AT_abstract_origin" in die.attributes:
                return self._type(die.get_DIE_from_attribute("DW_AT_abstract_origin"))
            return None
        return die.get_DIE_from_attribute("DW_AT_type")

    def _strip(self, tdie: Any) -> Any:
        while tdie is not None and tdie.tag in _SKIP_TAGS:
            tdie = self._type(tdie)
        return tdie

    def _type_name(self, tdie: Any) -> str:
        if tdie is None:
            return "void"
        tag = tdie.tag
        if tag == "DW_TAG_pointer_type":
            return self._type_name(self._type(tdie)) + "*"
        if tag == "DW_TAG_const_type":
            return "const " + self._type_name(self._type(tdie))
        if tag == "DW_TAG_volatile_type":
            return "volatile " + self._type_name(self._type(tdie))
        if tag in ("DW_TAG_restrict_type", "DW_TAG_atomic_type"):
            return self._type_name(self._type(tdie))
        if tag == "DW_TAG_array_type":
            n = self._array_len(tdie)
            return self._type_name(self._type(tdie)) + (f"[{n}]" if n is not None else "[]")
        prefix = {"DW_TAG_structure_type": "struct ", "DW_TAG_union_type": "union ",
                  "DW_TAG_enumeration_type": "enum "}.get(tag, "")  # fmt: skip
        return prefix + (_name(tdie) or "(anon)")

    def _array_len(self, tdie: Any) -> Optional[int]:
        for sub in tdie.iter_children():
            if sub.tag == "DW_TAG_subrange_type":
                if "DW_AT_count" in sub.attributes:
                    return int(_attr(sub, "DW_AT_count"))
                if "DW_AT_upper_bound" in sub.attributes:
                    return int(_attr(sub, "DW_AT_upper_bound")) + 1
        return None

    def _member(self, tdie: Any, member: str, expr: str) -> Tuple[int, Any]:
        st = self._strip(tdie)
        if st is None or st.tag not in ("DW_TAG_structure_type", "DW_TAG_union_type"):
            raise DwarfError(f"{expr}: {self._type_name(tdie)} has no members")
        for m in st.iter_children():
            if m.tag != "DW_TAG_member":
                continue
            if _name(m) == member:
                off = _attr(m, "DW_AT_data_member_location") or 0
                if not isinstance(off, int):
                    raise DwarfError(f"{expr}: member {member!r} has a computed location")
                return off, self._type(m)
            if _name(m) is None:  # anonymous struct/union: look inside
                try:
                    inner_off, inner_t = self._member(self._type(m), member, expr)
                    return (_attr(m, "DW_AT_data_member_location") or 0) + inner_off, inner_t
                except DwarfError:
                    continue
        names = [n for n in (_name(m) for m in st.iter_children() if m.tag == "DW_TAG_member") if n]
        raise DwarfError(f"{expr}: {self._type_name(st)} has no member {member!r}",
                         hint="members: " + ", ".join(names))  # fmt: skip

    def _value_fetch(self, loc: _Loc, tdie: Any, type_override: Optional[str],
                     static: Callable[[int], str]) -> Tuple[str, Optional[str]]:  # fmt: skip
        """Fetcharg text and type that read a value of type ``tdie`` at ``loc``."""
        t = self._strip(tdie)
        tag = t.tag if t is not None else None
        is_char_ptr = is_char_arr = False
        if tag in ("DW_TAG_pointer_type", "DW_TAG_array_type"):
            elem = self._strip(self._type(t))
            if elem is not None and elem.tag == "DW_TAG_base_type" and _attr(elem, "DW_AT_encoding") in _ATE_CHAR:
                is_char_ptr = tag == "DW_TAG_pointer_type"
                is_char_arr = tag == "DW_TAG_array_type"
        if type_override in ("string", "ustring"):
            if is_char_arr:
                if loc.reg is not None:
                    raise DwarfError("a char array in a register cannot be read as a string")
                return loc.value(static), type_override
            if tag != "DW_TAG_pointer_type" and not is_char_ptr:
                raise DwarfError(f"{self._type_name(tdie)} is not a char pointer or array: no :{type_override}")
            return f"+0({loc.value(static)})", type_override
        if is_char_arr and type_override is None:
            if loc.reg is None:
                return loc.value(static), "string"
        if tag in ("DW_TAG_structure_type", "DW_TAG_union_type", "DW_TAG_array_type"):
            raise DwarfError(
                f"{self._type_name(tdie)} is not a scalar",
                hint="read a member (VAR.member / VAR->member) or give a type (VAR:x64)",
            )
        if type_override is not None:
            return loc.value(static), type_override
        _ = is_char_ptr
        return loc.value(static), self._scalar_type(t)

    def _scalar_type(self, t: Any) -> Optional[str]:
        if t is None:
            return None
        size = _attr(t, "DW_AT_byte_size")
        if t.tag == "DW_TAG_pointer_type":
            return f"x{8 * (size or 8)}"
        if t.tag == "DW_TAG_enumeration_type":
            return f"s{8 * (size or 4)}"
        if t.tag == "DW_TAG_base_type" and size in (1, 2, 4, 8):
            enc = _attr(t, "DW_AT_encoding")
            if enc == 4:  # float: kprobes has no float types, show the bits
                return f"x{8 * size}"
            return f"{'s' if enc in _ATE_SIGNED else 'u'}{8 * size}"
        return None

    # -- location expressions -------------------------------------------------

    def _ops(self, cu: Any, expr: Sequence[int]) -> List[Tuple[str, List[Any]]]:
        from elftools.dwarf.dwarf_expr import DWARFExprParser

        return [(op.op_name, list(op.args)) for op in DWARFExprParser(cu.structs).parse_expr(list(expr))]

    def _expr_at(self, cu: Any, die: Any, attr_name: str, addr: int) -> List[Tuple[str, List[Any]]]:
        from elftools.dwarf.locationlists import (
            BaseAddressEntry,
            LocationEntry,
            LocationExpr,
            LocationParser,
        )

        attr = die.attributes.get(attr_name)
        if attr is None:
            raise DwarfError("optimized out (no location)")
        parser = LocationParser(self._open().location_lists())
        parsed = parser.parse_from_attribute(attr, cu["version"], die)
        if isinstance(parsed, LocationExpr):
            return self._ops(cu, parsed.loc_expr)
        base = _attr(cu.get_top_DIE(), "DW_AT_low_pc") or 0
        for e in parsed:
            if isinstance(e, BaseAddressEntry):
                base = e.base_address
            elif isinstance(e, LocationEntry):
                lo, hi = (e.begin_offset, e.end_offset) if e.is_absolute else (base + e.begin_offset, base + e.end_offset)
                if lo <= addr < hi:
                    return self._ops(cu, e.loc_expr)
        raise DwarfError("optimized out at this address (no location list entry covers it)")

    def _location(self, cu: Any, func: Any, var: Any, addr: int) -> _Loc:
        ops = self._expr_at(cu, var, "DW_AT_location", addr)
        if not ops:
            raise DwarfError("optimized out (empty location)")
        name, args = ops[0]
        if len(ops) != 1:
            raise DwarfError(f"computed location ({', '.join(n for n, _ in ops)}): no fetcharg can read it")
        if name.startswith("DW_OP_reg") and name != "DW_OP_regx":
            return _Loc(reg=self._reg(int(name[len("DW_OP_reg"):])))
        if name == "DW_OP_regx":
            return _Loc(reg=self._reg(int(args[0])))
        if name.startswith("DW_OP_breg") and name != "DW_OP_bregx":
            return _Loc(base=f"%{self._reg(int(name[len('DW_OP_breg'):]))}", off=int(args[0]))
        if name == "DW_OP_bregx":
            return _Loc(base=f"%{self._reg(int(args[0]))}", off=int(args[1]))
        if name == "DW_OP_addr":
            return _Loc(base="@", off=int(args[0]))
        if name == "DW_OP_fbreg":
            fb = self._frame_base(cu, func, addr)
            return _Loc(base=fb.base, off=fb.off + int(args[0]))
        raise DwarfError(f"location {name} is not supported")

    def _frame_base(self, cu: Any, func: Any, addr: int) -> _Loc:
        ops = self._expr_at(cu, func, "DW_AT_frame_base", addr)
        if len(ops) == 1:
            name, args = ops[0]
            if name == "DW_OP_call_frame_cfa":
                reg, off = self._cfa(addr)
                return _Loc(base=f"%{reg}", off=off)
            if name.startswith("DW_OP_breg") and name != "DW_OP_bregx":
                return _Loc(base=f"%{self._reg(int(name[len('DW_OP_breg'):]))}", off=int(args[0]))
            if name.startswith("DW_OP_reg") and name != "DW_OP_regx":
                return _Loc(base=f"%{self._reg(int(name[len('DW_OP_reg'):]))}", off=0)
        raise DwarfError("the frame base is computed: no fetcharg can read frame-relative variables")

    def _cfa(self, addr: int) -> Tuple[str, int]:
        """The CFA rule (register, offset) at ``addr`` from .debug_frame or .eh_frame."""
        from elftools.dwarf.callframe import FDE

        dw = self._open()
        if self._fdes is None:
            entries: List[Any] = []
            if dw.has_CFI():
                entries = list(dw.CFI_entries())
            if not entries and dw.has_EH_CFI():
                entries = list(dw.EH_CFI_entries())
            self._fdes = [e for e in entries if isinstance(e, FDE)]
        for fde in self._fdes:
            start = fde.header["initial_location"]
            if start <= addr < start + fde.header["address_range"]:
                rule = None
                for row in fde.get_decoded().table:
                    if row["pc"] <= addr:
                        rule = row["cfa"]
                if rule is None or rule.reg is None or rule.expr:
                    break
                return self._reg(int(rule.reg)), int(rule.offset or 0)
        raise DwarfError(f"no call frame information covers 0x{addr:x}: frame-relative variables cannot be read")


def _split_path(expr: str) -> List[Tuple[str, str]]:
    """``a->b.c`` → [("", "a"), ("->", "b"), (".", "c")]."""
    out: List[Tuple[str, str]] = []
    i, op, start = 0, "", 0
    while i <= len(expr):
        if i == len(expr) or expr.startswith("->", i) or expr[i] == ".":
            word = expr[start:i]
            if not word.isidentifier():
                raise DwarfError(f"{expr!r} is not VAR, VAR->member or VAR.member")
            out.append((op, word))
            if i == len(expr):
                break
            op = "->" if expr.startswith("->", i) else "."
            i += len(op)
            start = i
            continue
        i += 1
    return out


def _read_source(path: str, source_dirs: Sequence[str]) -> Optional[List[str]]:
    cands = [path] + [os.path.join(d, path.lstrip("/")) for d in source_dirs]
    cands += [os.path.join(d, os.path.basename(path)) for d in source_dirs]
    for c in cands:
        try:
            with open(c, encoding="utf-8", errors="replace") as f:
                return f.read().splitlines()
        except OSError:
            continue
    return None


# ---------------------------------------------------------------------- text output


def format_listing(src: FunctionSource) -> str:
    """perf's ``-L`` layout: ``<FUNC@FILE:0>``, probeable lines numbered (``%7d  ``), others indented."""
    out = [f"<{src.function}@{src.file}:0>"]
    for ln in src.lines:
        text = ln.text if ln.text is not None else ""
        prefix = f"{ln.relative:7d}  " if ln.probeable else " " * 9
        out.append((prefix + text).rstrip())
    return "\n".join(out) + "\n"


def format_variables(pt: ProbePoint, variables: Sequence[Variable]) -> str:
    """perf's ``-V`` layout: the place, then ``TYPE\\tNAME`` per variable that can be read there."""
    out = [f"Available variables at {pt.function}:{pt.relative_line}", f"        @<{pt.function}+{pt.offset}>"]
    for v in variables:
        if v.fetcharg is not None:
            out.append(f"                {v.type_name}\t{v.name}")
    gone = [v for v in variables if v.fetcharg is None]
    for v in gone:
        out.append(f"                ({v.type_name}\t{v.name}: {v.why_not})")
    return "\n".join(out) + "\n"
