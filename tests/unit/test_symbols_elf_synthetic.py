"""ELF reader on files built byte by byte here: ELF32/ELF64, both endiannesses.

gcc on the test machine only makes x86-64 little-endian files; these cover the
other three layouts, symbol versions, extended section numbering and notes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kprobes.backends.symbols.elf import (
    EM_ARM,
    ET_DYN,
    ET_EXEC,
    STB_GLOBAL,
    STB_LOCAL,
    STB_WEAK,
    STT_FUNC,
    STT_GNU_IFUNC,
    STT_OBJECT,
    ELFFile,
)
from kprobes.errors import ELFError

TEXT_OFF = 0x1000
TEXT_SIZE = 0x400
BSS_GAP = 0x10000


@dataclass
class Sym:
    name: str
    value: int
    size: int = 16
    type: int = STT_FUNC
    bind: int = STB_GLOBAL
    defined: bool = True


@dataclass
class Spec:
    is64: bool = True
    little: bool = True
    etype: int = ET_EXEC
    machine: int = 62
    text_vaddr: int = 0x401000
    symtab: list[Sym] = field(default_factory=list)
    dynsym: list[Sym] = field(default_factory=list)
    verdefs: list[str] = field(default_factory=list)  # version names, ndx 2, 3...
    versym: list[int] = field(default_factory=list)  # one per dynsym entry (no null)
    build_id: bytes | None = None
    sections: bool = True
    xnum: bool = False  # store shnum/shstrndx in section 0 (extended numbering)


class StrTab:
    def __init__(self) -> None:
        self.data = bytearray(b"\0")
        self.index: dict[str, int] = {"": 0}

    def add(self, s: str) -> int:
        if s not in self.index:
            self.index[s] = len(self.data)
            self.data += s.encode() + b"\0"
        return self.index[s]


def build_elf(spec: Spec) -> bytes:
    """A minimal but well-formed ELF file following ``spec``."""
    e = "<" if spec.little else ">"
    is64 = spec.is64
    ehsize, phentsize, shentsize = (64, 56, 64) if is64 else (52, 32, 40)
    shstr = StrTab()
    # (name, type, flags, addr, data, link, info, entsize)
    secs: list[list[object]] = [["", 0, 0, 0, b"", 0, 0, 0]]
    text_idx = 1
    secs.append([".text", 1, 6, spec.text_vaddr, b"\xcc" * TEXT_SIZE, 0, 0, 0])

    def symbytes(syms: list[Sym], strtab: StrTab) -> bytes:
        out = bytearray(24 if is64 else 16)
        for s in syms:
            name = strtab.add(s.name)
            info = (s.bind << 4) | s.type
            shndx = text_idx if s.defined else 0
            value = s.value if s.defined else 0
            if is64:
                out += struct.pack(e + "IBBHQQ", name, info, 0, shndx, value, s.size)
            else:
                out += struct.pack(e + "IIIBBH", name, value, s.size, info, 0, shndx)
        return bytes(out)

    entsize = 24 if is64 else 16
    if spec.symtab:
        strtab = StrTab()
        data = symbytes(spec.symtab, strtab)
        secs.append([".symtab", 2, 0, 0, data, len(secs) + 1, 1, entsize])
        secs.append([".strtab", 3, 0, 0, bytes(strtab.data), 0, 0, 0])
    if spec.dynsym:
        dynstr = StrTab()
        data = symbytes(spec.dynsym, dynstr)
        for v in spec.verdefs:
            dynstr.add(v)
        dynstr_idx = len(secs) + 1
        secs.append([".dynsym", 11, 2, 0, data, dynstr_idx, 1, entsize])
        secs.append([".dynstr", 3, 2, 0, bytes(dynstr.data), 0, 0, 0])
        if spec.verdefs:
            vs = struct.pack(f"{e}{len(spec.versym) + 1}H", 0, *spec.versym)
            secs.append([".gnu.version", 0x6FFFFFFF, 2, 0, vs, len(secs) - 2, 0, 2])
            vd = bytearray()
            for i, v in enumerate(spec.verdefs):
                nxt = 0 if i == len(spec.verdefs) - 1 else 28
                vd += struct.pack(e + "HHHHIII", 1, 0, i + 2, 1, 0, 20, nxt)
                vd += struct.pack(e + "II", dynstr.add(v), 0)
            secs.append(
                [".gnu.version_d", 0x6FFFFFFD, 2, 0, bytes(vd), dynstr_idx, len(spec.verdefs), 0]
            )
    note = b""
    if spec.build_id is not None:
        note = struct.pack(e + "III", 4, len(spec.build_id), 3) + b"GNU\0" + spec.build_id
        note += b"\0" * (-len(note) % 4)
        # a non-build-id note first, to check the walker skips it
        abi = struct.pack(e + "III", 4, 16, 1) + b"GNU\0" + b"\0" * 16
        note = abi + note
        secs.append([".note.gnu.build-id", 7, 2, 0, note, 0, 0, 0])
    secs.append([".shstrtab", 3, 0, 0, b"", 0, 0, 0])
    for s in secs:
        shstr.add(str(s[0]))
    secs[-1][4] = bytes(shstr.data)

    phnum = 2 + (1 if note else 0)
    body = bytearray(b"\0" * TEXT_OFF)
    offsets = []
    for s in secs:
        blob = s[4]
        assert isinstance(blob, bytes)
        if s[0] == ".text":
            offsets.append(TEXT_OFF)
            body += blob
            continue
        if not blob:
            offsets.append(0)
            continue
        while len(body) % 8:
            body += b"\0"
        offsets.append(len(body))
        body += blob
    while len(body) % 8:
        body += b"\0"
    shoff = len(body) if spec.sections else 0
    note_off = offsets[[s[0] for s in secs].index(".note.gnu.build-id")] if note else 0
    # program headers: text, a bss-only segment, the note
    phdrs = [
        (1, 5, TEXT_OFF, spec.text_vaddr, TEXT_SIZE, TEXT_SIZE, 0x1000),
        (1, 6, TEXT_OFF + TEXT_SIZE, spec.text_vaddr + BSS_GAP, 0, 0x1000, 0x1000),
    ]
    if note:
        phdrs.append((4, 4, note_off, 0, len(note), len(note), 4))
    phoff = ehsize
    ph = bytearray()
    for t, fl, off, va, fsz, msz, al in phdrs:
        if is64:
            ph += struct.pack(e + "IIQQQQQQ", t, fl, off, va, va, fsz, msz, al)
        else:
            ph += struct.pack(e + "IIIIIIII", t, off, va, va, fsz, msz, fl, al)
    assert ehsize + len(ph) <= TEXT_OFF
    body[phoff : phoff + len(ph)] = ph
    shnum, shstrndx = len(secs), len(secs) - 1
    if spec.sections:
        for i, s in enumerate(secs):
            name, typ, flags, addr, blob, link, info, ent = s
            assert isinstance(blob, bytes)
            size = len(blob)
            if spec.xnum and i == 0:
                size, link = shnum, shstrndx
            fields = (
                shstr.add(str(name)),
                typ,
                flags,
                addr,
                offsets[i],
                size,
                link,
                info,
                8 if typ else 0,
                ent,
            )
            body += struct.pack(e + ("IIQQQQIIQQ" if is64 else "IIIIIIIIII"), *fields)
    ident = b"\x7fELF" + bytes([2 if is64 else 1, 1 if spec.little else 2, 1]) + b"\0" * 9
    e_shnum = (0 if spec.xnum else shnum) if spec.sections else 0
    e_shstrndx = (0xFFFF if spec.xnum else shstrndx) if spec.sections else 0
    hdr = struct.pack(
        e + ("HHIQQQIHHHHHH" if is64 else "HHIIIIIHHHHHH"),
        spec.etype,
        spec.machine,
        1,
        spec.text_vaddr,
        phoff,
        shoff,
        0,
        ehsize,
        phentsize,
        phnum,
        shentsize,
        e_shnum,
        e_shstrndx,
    )
    body[0:16] = ident
    body[16 : 16 + len(hdr)] = hdr
    return bytes(body)


def write(tmp_path: Path, spec: Spec, name: str = "a.out") -> str:
    p = tmp_path / name
    p.write_bytes(build_elf(spec))
    return str(p)


LAYOUTS = [(True, True), (True, False), (False, True), (False, False)]


@pytest.mark.parametrize("is64,little", LAYOUTS)
def test_layouts_symbols_and_offsets(tmp_path: Path, is64: bool, little: bool) -> None:
    base = 0x8048000 if not is64 else 0x401000
    spec = Spec(
        is64=is64,
        little=little,
        text_vaddr=base + 0x1000,
        symtab=[
            Sym("alpha", base + 0x1010, 32),
            Sym("beta", base + 0x1100, 64, bind=STB_LOCAL),
            Sym("counter", base + 0x1200, 4, type=STT_OBJECT),
        ],
    )
    path = write(tmp_path, spec)
    with ELFFile(path) as elf:
        assert elf.is64 is is64 and elf.little_endian is little
        assert elf.elf_type == ET_EXEC and elf.machine == 62
        assert [s.name for s in elf.sections()][:2] == ["", ".text"]
        loc = elf.locate("beta")
        assert (loc.vaddr, loc.size) == (base + 0x1100, 64)
        assert loc.offset == 0x1100 - 0x1000 + TEXT_OFF
        loc2 = elf.locate("alpha+0x8")
        assert loc2.offset == 0x1010 - 0x1000 + TEXT_OFF + 8
        assert loc2.render() == f"{path}:0x{loc2.offset:x}"
        assert elf.function_names() == ["alpha", "beta"]  # counter is data
        with pytest.raises(ELFError, match="data object"):
            elf.locate("counter")


@pytest.mark.parametrize("is64,little", LAYOUTS)
def test_versioned_dynsym(tmp_path: Path, is64: bool, little: bool) -> None:
    t = 0x10000
    spec = Spec(
        is64=is64,
        little=little,
        etype=ET_DYN,
        text_vaddr=t,
        dynsym=[
            Sym("memcpy", t + 0x40, 8),
            Sym("memcpy", t + 0x80, 8, type=STT_GNU_IFUNC),
            Sym("malloc", t + 0x100, 16),
            Sym("free", 0, defined=False),
        ],
        verdefs=["LIB_1.0", "LIB_2.0"],
        # memcpy@LIB_1.0 (hidden), memcpy@@LIB_2.0, malloc@@LIB_1.0, free: global
        versym=[0x8002, 3, 2, 1],
    )
    with ELFFile(write(tmp_path, spec)) as elf:
        syms = {s.versioned_name for s in elf.symbols(".dynsym")}
        assert {"memcpy@LIB_1.0", "memcpy@@LIB_2.0", "malloc@@LIB_1.0", "free"} <= syms
        assert elf.locate("malloc").symbol == "malloc@@LIB_1.0"
        assert elf.locate("malloc@@LIB_1.0").vaddr == t + 0x100
        # bare name: the default (@@) version wins
        dflt = elf.locate("memcpy")
        assert dflt.vaddr == t + 0x80 and dflt.ifunc
        old = elf.locate("memcpy@LIB_1.0")
        assert old.vaddr == t + 0x40 and not old.ifunc
        with pytest.raises(ELFError, match="imported"):
            elf.locate("free")
        with pytest.raises(ELFError, match="no function"):
            elf.locate("memcpy@@LIB_1.0")  # that version is hidden, not default


def test_preference_func_over_object_and_global_over_weak(tmp_path: Path) -> None:
    t = 0x401000
    spec = Spec(
        text_vaddr=t,
        symtab=[
            Sym("x", t + 0x10, type=STT_OBJECT),
            Sym("x", t + 0x20),
            Sym("y", t + 0x30, bind=STB_WEAK),
            Sym("y", t + 0x40, bind=STB_GLOBAL),
        ],
    )
    with ELFFile(write(tmp_path, spec)) as elf:
        assert elf.find_symbol("x").value == t + 0x20
        assert elf.find_symbol("y").value == t + 0x40


def test_build_id_from_section_and_from_segment(tmp_path: Path) -> None:
    bid = bytes(range(20))
    for sections in (True, False):
        spec = Spec(symtab=[Sym("f", 0x401010)], build_id=bid, sections=sections)
        with ELFFile(write(tmp_path, spec, f"b{sections}")) as elf:
            assert elf.build_id() == bid.hex()
            assert bool(elf.sections()) is sections
    with ELFFile(write(tmp_path, Spec(symtab=[Sym("f", 0x401010)]), "nobid")) as elf:
        assert elf.build_id() is None


def test_extended_section_numbering(tmp_path: Path) -> None:
    spec = Spec(symtab=[Sym("f", 0x401010)], xnum=True)
    with ELFFile(write(tmp_path, spec)) as elf:
        assert elf.sections()[1].name == ".text"
        assert elf.locate("f").offset == 0x10 + TEXT_OFF


def test_bss_and_unmapped_addresses(tmp_path: Path) -> None:
    t = 0x401000
    spec = Spec(text_vaddr=t, symtab=[Sym("inbss", t + BSS_GAP + 0x10), Sym("nowhere", 0x900000)])
    with ELFFile(write(tmp_path, spec)) as elf:
        with pytest.raises(ELFError, match="bss"):
            elf.locate("inbss")
        with pytest.raises(ELFError, match="not in any loadable segment"):
            elf.locate("nowhere")


def test_offset_past_end_of_function(tmp_path: Path) -> None:
    spec = Spec(symtab=[Sym("f", 0x401010, size=16)])
    with ELFFile(write(tmp_path, spec)) as elf:
        assert elf.locate("f+15").addend == 15
        with pytest.raises(ELFError, match="past the end"):
            elf.locate("f+16")


def test_arm_thumb_bit_cleared(tmp_path: Path) -> None:
    spec = Spec(is64=False, machine=EM_ARM, text_vaddr=0x10000, symtab=[Sym("thumbfn", 0x10041, 8)])
    with ELFFile(write(tmp_path, spec)) as elf:
        assert elf.locate("thumbfn").vaddr == 0x10040


def test_no_symbols_at_all(tmp_path: Path) -> None:
    with ELFFile(write(tmp_path, Spec())) as elf:
        assert elf.stripped
        with pytest.raises(ELFError, match="stripped") as ei:
            elf.locate("main")
        assert ei.value.hint and "debug symbols" in ei.value.hint


def test_not_elf_and_truncated(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(ELFError, match="not an ELF file"):
        ELFFile(str(script)).locate("main")
    data = build_elf(Spec(symtab=[Sym("f", 0x401010)]))
    cut = tmp_path / "cut"
    cut.write_bytes(data[: TEXT_OFF + 8])  # section headers and tables gone
    with pytest.raises(ELFError, match="truncated"):
        ELFFile(str(cut)).locate("f")
    with pytest.raises(ELFError, match="no such file"):
        ELFFile(str(tmp_path / "missing")).locate("f")


NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True)


@settings(max_examples=25, deadline=None)
@given(
    layout=st.sampled_from(LAYOUTS),
    names=st.lists(NAMES, min_size=1, max_size=12, unique=True),
    data=st.data(),
)
def test_roundtrip_random_tables(
    tmp_path_factory: pytest.TempPathFactory,
    layout: tuple[bool, bool],
    names: list[str],
    data: st.DataObject,
) -> None:
    is64, little = layout
    t = 0x20000
    offs = data.draw(
        st.lists(st.integers(0, TEXT_SIZE - 16), min_size=len(names), max_size=len(names))
    )
    syms = [Sym(n, t + o, 16) for n, o in zip(names, offs)]
    path = write(
        tmp_path_factory.mktemp("rt"), Spec(is64=is64, little=little, text_vaddr=t, symtab=syms)
    )
    with ELFFile(path) as elf:
        assert elf.function_names() == sorted(names)
        for s, o in zip(syms, offs):
            loc = elf.locate(s.name)
            assert loc.offset == TEXT_OFF + o
            assert loc.vaddr == s.value
