"""Is a uprobe offset the start of an instruction?

A uprobe writes a breakpoint over the first byte of the instruction at its
offset.  The kernel does not check that the offset *is* the first byte of an
instruction: a probe at ``main+2`` when ``main+1`` starts the 3-byte
``mov %rsp,%rbp`` overwrites that instruction's middle, and the traced program
(for a libc probe: every program) crashes or computes garbage while the probe
is armed.  bpftrace refuses such offsets; so do we:

* offset 0 of a function (the exact address of any function symbol, sized
  or not) is always fine;
* an offset inside a function symbol of known size is decoded
  (:mod:`kprobes.probes.insnlen`) from the function's first byte: fine when
  an instruction starts there, refused otherwise with the nearest boundaries
  before and after; refused too when an instruction before it cannot be
  decoded (then nothing proves the offset is a boundary);
* an offset in no function symbol (a stripped binary, hand-written assembly
  without ``.size``): refused, as bpftrace does, because nothing says where
  the instructions start.  arm64 is the exception: every instruction is 4
  bytes long and 4-aligned, so a multiple of 4 in an executable segment is a
  boundary.

``--unsafe`` (the callers' flag) skips all of this.  Nothing here prints; the
caller turns a refusal into its own error (a caret under the offset).
"""

from __future__ import annotations

import bisect
import functools
import os
from typing import Dict, FrozenSet, List, Optional, Tuple

from kprobes.backends.symbols.elf import PT_LOAD, ELFFile, Symbol
from kprobes.errors import ELFError
from kprobes.probes.insnlen import decode

from ..._record import dataclass

__all__ = ["Placement", "check_offset", "function_index", "EM_X86_64", "EM_AARCH64"]

EM_386 = 3
EM_X86_64 = 62
EM_AARCH64 = 183
PF_X = 1
_MACHINES = {EM_X86_64: "x86_64", EM_AARCH64: "arm64"}
_MACHINE_NAMES = {EM_386: "i386 (32-bit x86)", 40: "arm (32-bit)", 243: "riscv", 21: "ppc64", 22: "s390"}
_RANK = {1: 0, 10: 0, 2: 1, 0: 2}  # GLOBAL/UNIQUE < WEAK < LOCAL


@dataclass(frozen=True)
class Placement:
    """The verdict for one file offset of one ELF file.

    ``symbol`` is the function holding the offset (None when there is none),
    ``func_offset`` its first byte's file offset, ``addend`` the offset's
    distance from it.  When refused, ``reason`` says why, ``insn`` is the
    ``(addend, length)`` of the instruction the offset falls into (when known)
    and ``before``/``after`` the addends of the nearest instruction starts.
    """

    path: str
    offset: int
    ok: bool
    symbol: Optional[str] = None
    func_offset: Optional[int] = None
    addend: int = 0
    reason: str = ""
    insn: Optional[Tuple[int, int]] = None
    insn_bytes: bytes = b""
    before: Optional[int] = None
    after: Optional[int] = None

    def name(self, addend: int) -> str:
        """``SYM+0xADDEND`` (``SYM`` for 0)."""
        return f"{self.symbol}+0x{addend:x}" if addend else f"{self.symbol}"

    def place(self, addend: int) -> str:
        """``SYM+0xADDEND (0xFILEOFFSET)``."""
        assert self.func_offset is not None
        return f"{self.name(addend)} (0x{self.func_offset + addend:x})"

    @property
    def nearest(self) -> List[str]:
        """The valid places around a refused offset, as ``SYM+0xN (0xFILEOFF)``."""
        return [self.place(a) for a in (self.before, self.after) if a is not None]

    @property
    def message(self) -> str:
        """One sentence for an error: what is wrong and where to go instead."""
        if self.ok:
            return f"0x{self.offset:x} is an instruction boundary"
        text = self.reason
        near = self.nearest
        if near:
            text += "; nearest valid: " + ", ".join(near)
        return text

    @property
    def hint(self) -> str:
        if "segment" in self.reason:
            return ("uprobes go on code: probe a function by name (PATH:FUNC+OFFS), or take the "
                    "file offset of an instruction from objdump -d / readelf -l")
        if self.symbol is None:
            return (f"nothing proves 0x{self.offset:x} starts an instruction: install the binary's "
                    "debug symbols, probe a function by name, or pass --unsafe if you are sure "
                    "(a uprobe inside an instruction crashes the traced program)")
        return ("a uprobe inside an instruction corrupts it: the traced program crashes or "
                "computes garbage; use a valid offset, or pass --unsafe to place it anyway")


@dataclass(frozen=True)
class _Func:
    start: int  # link-time address of the first instruction
    size: int
    name: str


@dataclass(frozen=True)
class FunctionIndex:
    """A file's function symbols sorted by address, and how to read its code."""

    machine: int
    funcs: Tuple[_Func, ...]
    starts: Tuple[int, ...]
    exact: FrozenSet[int]  # addresses of every function symbol
    segments: Tuple[Tuple[int, int, int, bool], ...]  # (offset, filesz, vaddr, executable)

    def vaddr_of(self, offset: int) -> Optional[Tuple[int, bool]]:
        """The link-time address of file offset ``offset`` and whether it is executable."""
        best: Optional[Tuple[int, bool]] = None
        for off, size, vaddr, exe in self.segments:
            if off <= offset < off + size:
                best = (offset - off + vaddr, exe)
                if exe:
                    return best
        return best

    def offset_of(self, vaddr: int) -> Optional[int]:
        for off, size, va, _exe in self.segments:
            if va <= vaddr < va + size:
                return vaddr - va + off
        return None

    def containing(self, vaddr: int) -> Optional[_Func]:
        """The sized function holding ``vaddr``; the innermost (latest start) if nested."""
        i = bisect.bisect_right(self.starts, vaddr)
        while i > 0:
            i -= 1
            f = self.funcs[i]
            if f.start <= vaddr < f.start + f.size:
                return f
            if vaddr - f.start > (1 << 24):
                break  # no function is that large: stop scanning back
        return None


def _collect(elf: ELFFile) -> List[Symbol]:
    syms = list(elf.symbols(".symtab")) + list(elf.symbols(".dynsym"))
    if elf.stripped:
        dbg = elf.debug_file()
        if dbg is not None:
            syms.extend(dbg.symbols(".symtab"))
    return syms


def _build_index(path: str) -> FunctionIndex:
    with ELFFile(path) as elf:
        machine = elf.machine
        segs = tuple(
            (s.offset, s.filesz, s.vaddr, bool(s.flags & PF_X))
            for s in elf.segments() if s.type == PT_LOAD and s.filesz
        )  # fmt: skip
        best: Dict[int, Tuple[Tuple[int, int, int], _Func]] = {}
        exact = set()
        for s in _collect(elf):
            if not s.is_defined or not s.value or not s.name:
                continue
            if not s.is_function:
                continue
            exact.add(s.value)
            if not s.size:
                continue
            rank = (_RANK.get(s.bind, 3), 0 if s.table == ".symtab" else 1, -s.size)
            cur = best.get(s.value)
            if cur is None or rank < cur[0]:
                best[s.value] = (rank, _Func(s.value, s.size, s.name))
        funcs = tuple(v[1] for _k, v in sorted(best.items()))
    return FunctionIndex(machine, funcs, tuple(f.start for f in funcs), frozenset(exact), segs)


@functools.lru_cache(maxsize=8)
def _cached_index(path: str, ino: int, mtime_ns: int, size: int) -> FunctionIndex:
    return _build_index(path)


def function_index(path: str) -> FunctionIndex:
    """The function index of ``path`` (cached while the file is unchanged)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise ELFError(f"{path}: {e.strerror}") from None
    return _cached_index(path, st.st_ino, st.st_mtime_ns, st.st_size)


def _read(path: str, offset: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)


def check_offset(path: str, offset: int) -> Placement:
    """Whether a uprobe at file offset ``offset`` of ``path`` starts an instruction.

    Raises :class:`~kprobes.errors.ELFError` only when ``path`` is not a
    readable ELF file; every other answer is a :class:`Placement`.
    """
    idx = function_index(path)
    where = idx.vaddr_of(offset)
    if where is None:
        return Placement(path, offset, False,
                         reason=f"file offset 0x{offset:x} is not in any loadable segment of {path}")
    vaddr, exe = where
    if not exe:
        return Placement(path, offset, False,
                         reason=f"file offset 0x{offset:x} is not in an executable segment (not code)")
    if vaddr in idx.exact:
        return Placement(path, offset, True)
    func = idx.containing(vaddr)
    if idx.machine == EM_AARCH64 and func is None:
        if vaddr % 4 == 0:
            return Placement(path, offset, True)
        return Placement(path, offset, False, reason=(
            f"file offset 0x{offset:x} is not a multiple of 4 bytes: arm64 instructions are 4 bytes "
            "long and aligned"))  # fmt: skip
    if func is None:
        return Placement(path, offset, False, reason=(
            f"file offset 0x{offset:x} is in no function symbol of {os.path.basename(path)}, "
            "so its instruction boundaries are unknown"))  # fmt: skip
    func_off = idx.offset_of(func.start)
    assert func_off is not None  # vaddr is in an executable segment, and so is the function
    addend = vaddr - func.start
    base = dict(symbol=func.name, func_offset=func_off, addend=addend)
    label = f"{func.name}+0x{addend:x}"
    machine = _MACHINES.get(idx.machine)
    if machine is None:
        what = _MACHINE_NAMES.get(idx.machine, f"ELF machine {idx.machine}")
        return Placement(path, offset, False, reason=(
            f"{label}: instruction boundaries of {what} code are not checked"), **base)  # type: ignore[arg-type]  # fmt: skip
    code = _read(path, func_off, func.size)
    dec = decode(code, machine, stop=addend)
    verdict = dec.is_boundary(addend)
    if verdict:
        return Placement(path, offset, True, **base)  # type: ignore[arg-type]
    before, after = dec.nearest(addend)
    if verdict is None:
        assert dec.unknown_at is not None
        u = dec.unknown_at
        return Placement(path, offset, False, before=before, after=u if u == addend else None, reason=(
            f"{label} cannot be proven to start an instruction: the bytes at "
            f"{func.name}+0x{u:x} ({code[u:u + 8].hex(' ')}) do not decode"), **base)  # type: ignore[arg-type]  # fmt: skip
    insn = dec.containing(addend)
    if insn is None:  # pragma: no cover - a non-boundary below unknown_at is inside a decoded insn
        return Placement(path, offset, False, reason=f"{label} is not an instruction boundary", **base)  # type: ignore[arg-type]
    s, n = insn
    raw = code[s:s + n]
    return Placement(
        path, offset, False, insn=insn, insn_bytes=raw, before=before, after=after,
        reason=(f"{label} is not on an instruction boundary: it is inside the {n}-byte "
                f"instruction `{raw.hex(' ')}` at {func.name}+0x{s:x}..+0x{s + n - 1:x}"),
        **base,  # type: ignore[arg-type]
    )  # fmt: skip
