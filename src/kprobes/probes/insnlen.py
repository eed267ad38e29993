"""Instruction lengths: where instructions start in a function's machine code.

A uprobe replaces the first byte of an instruction with a breakpoint.  Placed
in the middle of an instruction it corrupts that instruction (the program then
crashes or computes garbage); the kernel does not check this for uprobes (it
does for kprobes: ``-EILSEQ``).  So before arming ``FUNC+OFFS`` we decode the
function from its first byte and check that ``OFFS`` is one of the
instruction starts.

* x86-64: a length decoder (not a disassembler): legacy prefixes, REX, the
  one-byte map and the 0F, 0F38 and 0F3A maps, ModRM/SIB/displacement, every
  immediate form (operand-size prefix, ``mov r64, imm64``, ``moffs`` with
  A0-A3 and the address-size prefix, ``enter``, the F6/F7 group), VEX (C4/C5),
  EVEX (62) and AMD XOP (8F).  Anything else (opcodes invalid in 64-bit mode,
  reserved maps, APX, bytes running past the end, more than 15 bytes) is
  *unknown*: offsets after it cannot be proven safe.
* arm64: every instruction is 4 bytes.

Pure code: bytes in, offsets out.  No I/O.
"""

from __future__ import annotations

import bisect
from typing import List, Optional, Tuple

from .._record import dataclass

__all__ = ["insn_length", "Decoded", "decode", "MAX_INSN", "SUPPORTED_MACHINES"]

#: The architectural limit of an x86 instruction's length.
MAX_INSN = 15

#: Machines :func:`decode` understands (ELF/arch names).
SUPPORTED_MACHINES = ("x86_64", "arm64")

# Immediate kinds of the one-byte map.
_NONE, _IB, _IW, _IZ, _IV, _MOFFS, _ENTER, _GRP3B, _GRP3Z, _REL32, _BAD = range(11)
_PREFIXES = frozenset((0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65, 0x66, 0x67))


def _one_byte_map() -> Tuple[Tuple[bool, int], ...]:
    """(has ModRM, immediate kind) for every opcode of the one-byte map in 64-bit mode."""
    t: List[Tuple[bool, int]] = [(False, _NONE)] * 256
    for base in range(0x00, 0x40, 8):  # the ALU rows: op r/m,r; op r,r/m; op al,ib; op eax,iz
        for i in range(4):
            t[base + i] = (True, _NONE)
        t[base + 4] = (False, _IB)
        t[base + 5] = (False, _IZ)
    for op in (0x06, 0x07, 0x0E, 0x16, 0x17, 0x1E, 0x1F, 0x27, 0x2F, 0x37, 0x3F,
               0x60, 0x61, 0x82, 0x9A, 0xCE, 0xD4, 0xD5, 0xD6, 0xEA):  # fmt: skip
        t[op] = (False, _BAD)  # invalid in 64-bit mode
    t[0x63] = (True, _NONE)
    t[0x68] = (False, _IZ)
    t[0x69] = (True, _IZ)
    t[0x6A] = (False, _IB)
    t[0x6B] = (True, _IB)
    for op in range(0x70, 0x80):
        t[op] = (False, _IB)  # jcc rel8
    t[0x80] = (True, _IB)
    t[0x81] = (True, _IZ)
    t[0x83] = (True, _IB)
    for op in range(0x84, 0x90):
        t[op] = (True, _NONE)
    for op in range(0xA0, 0xA4):
        t[op] = (False, _MOFFS)
    t[0xA8] = (False, _IB)
    t[0xA9] = (False, _IZ)
    for op in range(0xB0, 0xB8):
        t[op] = (False, _IB)
    for op in range(0xB8, 0xC0):
        t[op] = (False, _IV)
    t[0xC0] = (True, _IB)
    t[0xC1] = (True, _IB)
    t[0xC2] = (False, _IW)
    t[0xC6] = (True, _IB)
    t[0xC7] = (True, _IZ)
    t[0xC8] = (False, _ENTER)
    t[0xCA] = (False, _IW)
    t[0xCD] = (False, _IB)
    for op in range(0xD0, 0xD4):
        t[op] = (True, _NONE)
    for op in range(0xD8, 0xE0):
        t[op] = (True, _NONE)  # x87
    for op in range(0xE0, 0xE8):
        t[op] = (False, _IB)  # loop*, jrcxz, in/out imm8
    t[0xE8] = (False, _REL32)
    t[0xE9] = (False, _REL32)
    t[0xEB] = (False, _IB)
    t[0xF6] = (True, _GRP3B)
    t[0xF7] = (True, _GRP3Z)
    t[0xFE] = (True, _NONE)
    t[0xFF] = (True, _NONE)
    t[0x8F] = (True, _NONE)  # pop r/m (8F with a map >= 8 in the next byte is AMD XOP)
    return tuple(t)


def _two_byte_map() -> Tuple[Tuple[bool, int], ...]:
    """(has ModRM, immediate kind) for the 0F map."""
    t: List[Tuple[bool, int]] = [(True, _NONE)] * 256
    for op in (0x05, 0x06, 0x07, 0x08, 0x09, 0x0B, 0x0E, 0x30, 0x31, 0x32, 0x33, 0x34,
               0x35, 0x37, 0x77, 0xA0, 0xA1, 0xA2, 0xA8, 0xA9, 0xAA):  # fmt: skip
        t[op] = (False, _NONE)
    for op in range(0xC8, 0xD0):
        t[op] = (False, _NONE)  # bswap
    for op in (0x04, 0x0A, 0x0C, 0x24, 0x25, 0x26, 0x27, 0x36, 0x39, 0x3B, 0x3C, 0x3D,
               0x3E, 0x3F, 0x7A, 0x7B):  # fmt: skip
        t[op] = (False, _BAD)
    for op in (0x70, 0x71, 0x72, 0x73, 0xA4, 0xAC, 0xBA, 0xC2, 0xC4, 0xC5, 0xC6):
        t[op] = (True, _IB)
    t[0x0F] = (True, _IB)  # 3DNow!: the opcode is a trailing byte
    # 0F A6 / 0F A7 (VIA PadLock xsha*, xcrypt*, montmul) take a ModRM-like byte: the default
    for op in range(0x80, 0x90):
        t[op] = (False, _REL32)  # jcc rel32
    return tuple(t)


_MAP1 = _one_byte_map()
_MAP2 = _two_byte_map()
# VEX/EVEX map 1 (0F) opcodes with an imm8; map 3 (0F3A) always has one, map 2 (0F38) never.
_VEX_MAP1_IMM = frozenset((0x70, 0x71, 0x72, 0x73, 0xC2, 0xC4, 0xC5, 0xC6))


def _modrm_len(code: bytes, p: int, end: int) -> int:
    """Bytes taken by ModRM at ``p`` with its SIB and displacement, or -1 past ``end``."""
    if p >= end:
        return -1
    modrm = code[p]
    mod = modrm >> 6
    rm = modrm & 7
    n = 1
    if mod == 3:
        return n
    if rm == 4:
        if p + 1 >= end:
            return -1
        n += 1
        if mod == 0 and code[p + 1] & 7 == 5:
            n += 4  # SIB with no base: disp32
    elif mod == 0 and rm == 5:
        n += 4  # RIP-relative disp32
    if mod == 1:
        n += 1
    elif mod == 2:
        n += 4
    return n


def _vex_length(code: bytes, start: int, p: int, end: int) -> Optional[int]:
    """Length of the VEX (C4/C5) or EVEX (62) instruction whose escape byte is at ``p``."""
    esc = code[p]
    if esc == 0xC5:
        hdr, mmap = 2, 1
    elif esc == 0xC4:
        if p + 1 >= end:
            return None
        hdr, mmap = 3, code[p + 1] & 0x1F
    else:  # 0x62 EVEX
        if p + 1 >= end:
            return None
        hdr, mmap = 4, code[p + 1] & 0x07
        if mmap not in (1, 2, 3, 5, 6):
            return None  # map 0/4/7: reserved or APX (not decoded)
    if mmap not in (1, 2, 3, 5, 6) or (mmap > 3 and esc != 0x62):
        return None
    q = p + hdr
    if q >= end:
        return None
    op = code[q]
    q += 1
    if mmap == 1 and op == 0x77 and esc != 0x62:
        return q - start  # vzeroupper / vzeroall: no ModRM
    m = _modrm_len(code, q, end)
    if m < 0:
        return None
    q += m
    if mmap == 3 or (mmap == 1 and op in _VEX_MAP1_IMM):
        q += 1
    return q - start if q <= end else None


def _xop_length(code: bytes, start: int, p: int, end: int) -> Optional[int]:
    """Length of an AMD XOP instruction (8F escape, map 8/9/A) whose 8F byte is at ``p``."""
    mmap = code[p + 1] & 0x1F
    if mmap not in (8, 9, 10):
        return None
    q = p + 4  # 8F, two payload bytes, the opcode
    m = _modrm_len(code, q, end)
    if m < 0:
        return None
    q += m + {8: 1, 9: 0, 10: 4}[mmap]
    return q - start if q <= end else None


def insn_length(code: bytes, start: int = 0, end: Optional[int] = None) -> Optional[int]:
    """Length of the x86-64 instruction at ``code[start]``, or None when it cannot be decoded.

    ``end`` bounds the bytes that belong to the code (default: all of ``code``);
    an instruction running past it is not decodable.  Never raises for any input.
    """
    limit = len(code) if end is None else min(end, len(code))
    if start < 0 or start >= limit:
        return None
    limit = min(limit, start + MAX_INSN)
    p = start
    opsize = False
    adsize = False
    rep = 0
    rex_w = False
    while p < limit:
        b = code[p]
        if b in _PREFIXES:
            if b == 0x66:
                opsize = True
            elif b == 0x67:
                adsize = True
            elif b in (0xF2, 0xF3):
                rep = b
            rex_w = False  # a REX followed by a legacy prefix is ignored
            p += 1
        elif 0x40 <= b <= 0x4F:
            rex_w = bool(b & 8)
            p += 1
        else:
            break
    if p >= limit:
        return None
    op = code[p]
    if op in (0xC4, 0xC5, 0x62):
        return _vex_length(code, start, p, limit)
    if op == 0x8F and p + 1 < limit and code[p + 1] & 0x1F >= 8:
        return _xop_length(code, start, p, limit)
    p += 1
    if op == 0x9B and p < limit and 0xD8 <= code[p] <= 0xDF:
        # fwait + x87 (fstcw, fstsw, finit...): one instruction to assemblers and
        # objdump.  The CPU runs them as two; a probe between them is refused, the
        # conservative choice.
        n = insn_length(code, p, limit)
        return None if n is None else p - start + n
    if op == 0x0F:
        if p >= limit:
            return None
        op2 = code[p]
        p += 1
        if op2 == 0x38 or op2 == 0x3A:
            if p >= limit:
                return None
            p += 1  # the third opcode byte
            m = _modrm_len(code, p, limit)
            if m < 0:
                return None
            p += m + (1 if op2 == 0x3A else 0)
            return p - start if p <= limit else None
        has_modrm, imm = _MAP2[op2]
        if imm == _BAD:
            return None
        if op2 == 0x78 and (opsize or rep == 0xF2):
            imm = _IW  # SSE4a extrq / insertq: two imm8
    else:
        has_modrm, imm = _MAP1[op]
        if imm == _BAD:
            return None
    modrm_at = p
    if has_modrm:
        m = _modrm_len(code, p, limit)
        if m < 0:
            return None
        if op == 0x8F and (code[modrm_at] >> 3) & 7:
            return None  # pop r/m is /0 only (XOP was taken above)
        p += m
    if imm == _NONE:
        pass
    elif imm == _IB:
        p += 1
    elif imm == _IW:
        p += 2
    elif imm == _IZ:
        p += 2 if opsize and not rex_w else 4
    elif imm == _IV:
        p += 8 if rex_w else (2 if opsize else 4)
    elif imm == _MOFFS:
        p += 4 if adsize else 8
    elif imm == _ENTER:
        p += 3
    elif imm == _REL32:
        p += 4
    elif imm in (_GRP3B, _GRP3Z):
        if (code[modrm_at] >> 3) & 7 < 2:  # test r/m, imm
            p += 1 if imm == _GRP3B else (2 if opsize and not rex_w else 4)
    return p - start if p <= limit else None


@dataclass(frozen=True)
class Decoded:
    """Where the instructions of ``code[start:end]`` start, relative to ``start``.

    ``starts`` lists every instruction start found by decoding from ``start``
    in order; ``unknown_at`` is the first position (relative) that could not be
    decoded, or None when the whole range was decoded.  ``unknown_at`` itself is
    in ``starts`` (the instruction before it ends there); offsets after it are
    unknown: nothing proves or disproves them.
    """

    starts: Tuple[int, ...]
    size: int
    unknown_at: Optional[int] = None

    def is_boundary(self, off: int) -> Optional[bool]:
        """True/False for ``off``, or None when it lies beyond an undecodable instruction."""
        if off == 0:
            return True
        if self.unknown_at is not None and off > self.unknown_at:
            return None
        return _bsearch(self.starts, off)

    def containing(self, off: int) -> Optional[Tuple[int, int]]:
        """(start, length) of the instruction holding ``off``, or None when unknown."""
        i = bisect.bisect_right(self.starts, off) - 1
        if i < 0:
            return None
        s = self.starts[i]
        nxt = self.starts[i + 1] if i + 1 < len(self.starts) else (
            self.unknown_at if self.unknown_at is not None else self.size)  # fmt: skip
        if self.unknown_at is not None and s >= self.unknown_at:
            return None
        return (s, nxt - s) if s <= off < nxt else None

    def nearest(self, off: int) -> Tuple[Optional[int], Optional[int]]:
        """The closest known instruction starts before and after ``off`` (None: none)."""
        i = bisect.bisect_left(self.starts, off)
        before = self.starts[i - 1] if i > 0 else None
        j = bisect.bisect_right(self.starts, off)
        after = self.starts[j] if j < len(self.starts) else None
        return before, after


def _bsearch(seq: Tuple[int, ...], x: int) -> bool:
    i = bisect.bisect_left(seq, x)
    return i < len(seq) and seq[i] == x


def decode(code: bytes, machine: str = "x86_64", *, stop: Optional[int] = None) -> Decoded:
    """Instruction starts of the function body ``code`` (its first byte is an instruction).

    ``machine`` is ``x86_64`` or ``arm64`` (see :data:`SUPPORTED_MACHINES`).
    ``stop``: decode no further than the instruction holding this offset (a
    caller checking one offset does not need the whole function).
    """
    size = len(code)
    if machine == "arm64":
        tail = size - size % 4
        return Decoded(tuple(range(0, tail + (4 if size % 4 else 0), 4)), size, tail if size % 4 else None)
    if machine != "x86_64":
        raise ValueError(f"no instruction decoder for {machine!r}")
    starts: List[int] = []
    limit = size if stop is None else min(size, stop + 1)
    p = 0
    while p < limit:
        n = insn_length(code, p, size)
        if n is None:
            starts.append(p)  # the previous instruction ended here: still a start
            return Decoded(tuple(starts), size, p)
        starts.append(p)
        p += n
    if p < size:
        starts.append(p)  # the next start is known even if we stopped decoding there
    return Decoded(tuple(starts), size, None)
