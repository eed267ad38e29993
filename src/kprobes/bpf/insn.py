"""eBPF instructions: the model, constructors, encoder, decoder and validator.

Pure: no I/O.  Facts from RFC 9669 (BPF ISA) and the kernel's uapi ``bpf.h``.

Model
-----
``Insn(code, dst, src, off, imm)`` is a ``NamedTuple`` (cheap, immutable,
hashable).  It mirrors ``struct bpf_insn`` except for the 64-bit immediate load
(``LD_IMM64``, opcode 0x18): that one instruction occupies two 8-byte slots on
the wire, and here it is **one** ``Insn`` whose ``imm`` holds the full unsigned
64-bit value (low word = first slot's imm, high word = second slot's imm).  For
``BPF_PSEUDO_MAP_VALUE`` that means ``imm = (value_offset << 32) | map_fd``.
``insn.slots`` is 2 for it and 1 otherwise; jump offsets count slots.

Registers are :class:`Reg` (an ``int`` subclass; ``R0`` .. ``R10``).  The
constructors tell a register operand from an immediate by type:
``mov64(R1, R10)`` is ``r1 = r10``, ``mov64(R1, 10)`` is ``r1 = 10``.

Constructors (all return ``Insn`` and range-check their operands, raising
:class:`BPFError`):

- ALU: ``alu64(op, dst, x)``, ``alu32(op, dst, x)`` with ``op`` one of
  ``add sub mul div or and lsh rsh mod xor mov arsh`` (``x`` a ``Reg`` or an
  int), ``neg64/neg32``, ``mov64/mov32``, ``sdiv64/sdiv32/smod64/smod32`` (v4),
  ``movsx64(dst, src, bits)``/``movsx32`` (v4), ``endian(dst, bits, "le"|"be")``
  and ``bswap(dst, bits)`` (v4).
- Jumps: ``ja(off)``, ``gotol(off)`` (v4, 32-bit offset in imm),
  ``jmp(op, dst, x, off)``/``jmp32(op, dst, x, off)`` with ``op`` one of
  ``jeq jgt jge jset jne jsgt jsge jlt jle jslt jsle``, ``call(helper_id)``,
  ``call_local(off)`` (bpf-to-bpf, src=1), ``call_kfunc(btf_id)``, ``exit_()``.
- Memory: ``ldx(size, dst, src, off)``, ``ldsx`` (v4), ``stx(size, dst, off, src)``,
  ``st(size, dst, off, imm)``, ``atomic(size, op, dst, off, src, fetch=False)``
  (``op`` add/or/and/xor/xchg/cmpxchg), with ``size`` one of ``"b" "h" "w" "dw"``
  or 1/2/4/8.
- 64-bit loads: ``ld_imm64(dst, value)``, ``ld_map_fd(dst, fd)``,
  ``ld_map_value(dst, fd, offset)``, ``ld_btf_id(dst, id)``, ``ld_func(dst, off)``.

Wire format: ``encode(insns) -> bytes`` (8 bytes per slot, little endian),
``decode(data) -> list[Insn]`` (raises :class:`BPFDecodeError` on anything that
is not a valid instruction, with the slot index), ``validate(insn)``.

ISA levels: ``isa_version(insn)`` gives 1..4 (RFC 9669 conformance groups as
LLVM's ``-mcpu=v1..v4``) and ``min_kernel(insn)`` the first upstream kernel
that accepts it.  Everything ``isa_version == 4`` (signed div/mod, movsx, ldsx,
bswap, gotol) needs Linux 6.6: a code generator targeting 6.1 must avoid it.
"""

from __future__ import annotations

import struct
from typing import Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

from ..errors import BPFError

__all__ = [
    "BPFError",
    "BPFDecodeError",
    "Reg",
    "R0", "R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9", "R10",
    "Insn",
    "encode",
    "decode",
    "validate",
    "isa_version",
    "min_kernel",
]

# ---------------------------------------------------------------- opcodes
# classes
LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = 0, 1, 2, 3, 4, 5, 6, 7
# sizes
W, H, B, DW = 0x00, 0x08, 0x10, 0x18
# modes
IMM, ABS, IND, MEM, MEMSX, ATOMIC = 0x00, 0x20, 0x40, 0x60, 0x80, 0xC0
# source
K, X = 0x00, 0x08
TO_LE, TO_BE = 0x00, 0x08
# ALU ops
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70
NEG, MOD, XOR, MOV, ARSH, END = 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0
# JMP ops
JA, JEQ, JGT, JGE, JSET, JNE, JSGT, JSGE = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70
CALL, EXIT, JLT, JLE, JSLT, JSLE = 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0
# atomic op (in imm)
FETCH = 0x01
XCHG = 0xE0 | FETCH
CMPXCHG = 0xF0 | FETCH
# pseudo src values
PSEUDO_MAP_FD = 1
PSEUDO_MAP_VALUE = 2
PSEUDO_BTF_ID = 3
PSEUDO_FUNC = 4
PSEUDO_MAP_IDX = 5
PSEUDO_MAP_IDX_VALUE = 6
PSEUDO_CALL = 1
PSEUDO_KFUNC_CALL = 2

LD_IMM64 = LD | IMM | DW  # 0x18

ALU_OPS = {
    "add": ADD, "sub": SUB, "mul": MUL, "div": DIV, "or": OR, "and": AND,
    "lsh": LSH, "rsh": RSH, "mod": MOD, "xor": XOR, "mov": MOV, "arsh": ARSH,
}
JMP_OPS = {
    "jeq": JEQ, "jgt": JGT, "jge": JGE, "jset": JSET, "jne": JNE, "jsgt": JSGT,
    "jsge": JSGE, "jlt": JLT, "jle": JLE, "jslt": JSLT, "jsle": JSLE,
}
ATOMIC_OPS = {"add": ADD, "or": OR, "and": AND, "xor": XOR}
SIZES = {"b": B, "h": H, "w": W, "dw": DW, 1: B, 2: H, 4: W, 8: DW}
SIZE_BYTES = {B: 1, H: 2, W: 4, DW: 8}

S16_MIN, S16_MAX = -(1 << 15), (1 << 15) - 1
S32_MIN, S32_MAX = -(1 << 31), (1 << 31) - 1
U64_MASK = (1 << 64) - 1

_SLOT = struct.Struct("<BBhi")


# One BPFError for the whole project: building a program (here) and the kernel
# refusing one (backends/bpf) raise the same class, so callers catch one thing.


class BPFDecodeError(BPFError):
    """Bytes that are not a valid eBPF instruction stream.

    ``index`` is the 0-based slot (8-byte unit) where decoding stopped.
    """

    def __init__(self, message: str, index: int, *, hint: Optional[str] = None) -> None:
        super().__init__(f"slot {index}: {message}", hint=hint)
        self.index = index


class Reg(int):
    """A register operand ``r0`` .. ``r10`` (an ``int``: use it anywhere an int fits)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"r{int(self)}"

    __str__ = __repr__


R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = (Reg(i) for i in range(11))
REGS: Tuple[Reg, ...] = (R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10)

Operand = Union[Reg, int]


class Insn(NamedTuple):
    """One eBPF instruction (``LD_IMM64`` included: see the module docstring)."""

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    @property
    def slots(self) -> int:
        """Number of 8-byte slots: 2 for ``LD_IMM64``, else 1."""
        return 2 if self.code == LD_IMM64 else 1

    @property
    def cls(self) -> int:
        return self.code & 0x07

    def encode(self) -> bytes:
        """The wire bytes (8, or 16 for ``LD_IMM64``)."""
        try:
            regs = (self.src << 4) | self.dst
            if self.code == LD_IMM64:
                imm = self.imm & U64_MASK
                lo, hi = imm & 0xFFFFFFFF, imm >> 32
                return _SLOT.pack(self.code, regs, self.off, _s32(lo)) + _SLOT.pack(
                    0, 0, 0, _s32(hi)
                )
            return _SLOT.pack(self.code, regs, self.off, self.imm)
        except struct.error as exc:
            raise BPFError(
                f"cannot encode {self!r}: {exc}",
                hint="code 0..255, dst/src 0..15, off s16, imm s32 (u64 for ld_imm64)",
            ) from None


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def encode(insns: Iterable[Insn]) -> bytes:
    """Concatenate the wire bytes of ``insns``."""
    return b"".join(i.encode() for i in insns)


def decode(data: Union[bytes, bytearray, memoryview]) -> List[Insn]:
    """Parse wire bytes into instructions; every one is checked by :func:`validate`."""
    buf = bytes(data)
    if len(buf) % 8:
        raise BPFDecodeError(
            f"length {len(buf)} is not a multiple of 8", len(buf) // 8,
            hint="eBPF instructions are 8-byte slots",
        )
    out: List[Insn] = []
    n = len(buf) // 8
    i = 0
    while i < n:
        code, regs, off, imm = _SLOT.unpack_from(buf, i * 8)
        if code == LD_IMM64:
            if i + 1 >= n:
                raise BPFDecodeError("ld_imm64 is missing its second slot", i)
            c2, r2, o2, hi = _SLOT.unpack_from(buf, i * 8 + 8)
            if c2 or r2 or o2:
                raise BPFDecodeError(
                    "second slot of ld_imm64 must be zero except imm", i + 1
                )
            imm = ((hi & 0xFFFFFFFF) << 32) | (imm & 0xFFFFFFFF)
        insn = Insn(code, regs & 0x0F, regs >> 4, off, imm)
        problem = _problem(insn)
        if problem:
            raise BPFDecodeError(problem, i)
        out.append(insn)
        i += insn.slots
    return out


def validate(insn: Insn) -> Insn:
    """Return ``insn`` if it is a valid instruction of this model, else raise BPFError.

    Valid means: a known opcode and all reserved fields zero (as the kernel's
    verifier demands), registers ``r0..r10``.  Shift amounts and division by a
    zero immediate are left to the verifier.
    """
    problem = _problem(insn)
    if problem:
        raise BPFError(f"invalid instruction {insn!r}: {problem}")
    return insn


def _problem(i: Insn) -> Optional[str]:  # noqa: C901 - one table of rules
    code, dst, src, off, imm = i
    if not (0 <= code <= 0xFF):
        return f"opcode {code} out of range"
    if not (0 <= dst <= 10 and 0 <= src <= 15):
        return f"register out of range (dst={dst}, src={src})"
    if not (S16_MIN <= off <= S16_MAX):
        return f"offset {off} is not a signed 16-bit value"
    cls = code & 0x07
    if code == LD_IMM64:
        if not (0 <= imm <= U64_MASK):
            return "ld_imm64 immediate must be an unsigned 64-bit value"
        if src > PSEUDO_MAP_IDX_VALUE:
            return f"unknown ld_imm64 pseudo source {src}"
        if off:
            return "ld_imm64 with nonzero off"
        return None
    if not (S32_MIN <= imm <= S32_MAX):
        return f"immediate {imm} is not a signed 32-bit value"
    if cls == LD:
        return f"unsupported ld opcode {code:#04x} (legacy packet access)"
    if cls in (ALU, ALU64):
        op = code & 0xF0
        srcbit = code & 0x08
        if op in (0xE0, 0xF0):
            return f"unknown alu opcode {code:#04x}"
        if op == END:
            if src or off:
                return "endian conversion with reserved fields set"
            if cls == ALU64 and srcbit:
                return "bswap must use source bit 0"
            if imm not in (16, 32, 64):
                return f"endian width {imm} not 16/32/64"
            return None
        if op == NEG:
            if srcbit or src or off or imm:
                return "neg with reserved fields set"
            return None
        if srcbit == X:
            if imm:
                return "register-source alu with nonzero imm"
            if src > 10:
                return f"source register r{src} out of range"
        elif src:
            return "immediate alu with nonzero src register"
        if op == MOV:
            if off == 0:
                return None
            if srcbit == X and (off in (8, 16) or (off == 32 and cls == ALU64)):
                return None
            return f"mov with invalid off {off}"
        if op in (DIV, MOD):
            return None if off in (0, 1) else f"div/mod with invalid off {off}"
        return "alu with nonzero off" if off else None
    if cls == LDX:
        mode = code & 0xE0
        if mode == MEM or (mode == MEMSX and (code & 0x18) != DW):
            if imm:
                return "ldx with nonzero imm"
            if src > 10:
                return f"source register r{src} out of range"
            return None
        return f"unsupported ldx opcode {code:#04x}"
    if cls == ST:
        if code & 0xE0 != MEM:
            return f"unsupported st opcode {code:#04x}"
        return "st with nonzero src register" if src else None
    if cls == STX:
        mode = code & 0xE0
        if src > 10:
            return f"source register r{src} out of range"
        if mode == MEM:
            return "stx with nonzero imm" if imm else None
        if mode == ATOMIC:
            if code & 0x18 not in (W, DW):
                return "atomic operations are 32 or 64 bit only"
            if imm in (ADD, OR, AND, XOR) or imm in (
                ADD | FETCH, OR | FETCH, AND | FETCH, XOR | FETCH, XCHG, CMPXCHG,
            ):
                return None
            return f"unknown atomic operation {imm:#x}"
        return f"unsupported stx opcode {code:#04x}"
    # JMP / JMP32
    op = code & 0xF0
    srcbit = code & 0x08
    if op == JA:
        if srcbit or src or dst:
            return "ja with reserved fields set"
        if cls == JMP:
            return "ja with nonzero imm" if imm else None
        return "gotol with nonzero off" if off else None
    if op == CALL:
        if cls == JMP32 or srcbit or dst or off:
            return "call with reserved fields set"
        if src > PSEUDO_KFUNC_CALL:
            return f"unknown call source {src}"
        return None
    if op == EXIT:
        if cls == JMP32 or srcbit or dst or src or off or imm:
            return "exit with reserved fields set"
        return None
    if op in (0xE0, 0xF0):
        return f"unsupported jump opcode {code:#04x}"
    if srcbit == X:
        if imm:
            return "register-source jump with nonzero imm"
        if src > 10:
            return f"source register r{src} out of range"
        return None
    return "immediate jump with nonzero src register" if src else None


# ---------------------------------------------------------------- ISA levels

_V4_MIN = (6, 6)


def isa_version(i: Insn) -> int:
    """The LLVM ``-mcpu`` level (1..4) that introduced this instruction."""
    code, _dst, _src, off, _imm = i
    cls = code & 0x07
    op = code & 0xF0
    if cls in (ALU, ALU64):
        if op in (DIV, MOD) and off == 1:
            return 4
        if op == MOV and off:
            return 4
        if op == END and cls == ALU64:
            return 4
        return 1
    if cls == LDX and code & 0xE0 == MEMSX:
        return 4
    if cls == JMP32:
        return 4 if op == JA else 3
    if cls == JMP and op in (JLT, JLE, JSLT, JSLE):
        return 2
    if cls == STX and code & 0xE0 == ATOMIC and i.imm not in (ADD,):
        return 3
    return 1


def min_kernel(i: Insn) -> Tuple[int, int]:
    """The first upstream kernel (major, minor) whose verifier accepts ``i``."""
    v = isa_version(i)
    if v == 4:
        return _V4_MIN
    code = i.code
    if code == LD_IMM64:
        return {
            PSEUDO_MAP_FD: (3, 19), PSEUDO_MAP_VALUE: (5, 2), PSEUDO_BTF_ID: (5, 10),
            PSEUDO_FUNC: (5, 13), PSEUDO_MAP_IDX: (5, 14), PSEUDO_MAP_IDX_VALUE: (5, 14),
        }.get(i.src, (3, 19))
    if code == (JMP | CALL):
        return {PSEUDO_CALL: (4, 16), PSEUDO_KFUNC_CALL: (5, 13)}.get(i.src, (3, 19))
    if code & 0x07 == STX and code & 0xE0 == ATOMIC and i.imm != ADD:
        return (5, 12)
    if v == 3:
        return (5, 1)
    if v == 2:
        return (4, 14)
    return (3, 19)


# ---------------------------------------------------------------- constructors


def _reg(r: int, what: str = "register") -> int:
    if not isinstance(r, int) or not (0 <= r <= 10):
        raise BPFError(f"{what} {r!r} is not one of r0..r10")
    return int(r)


def _off16(off: int) -> int:
    if not (S16_MIN <= off <= S16_MAX):
        raise BPFError(
            f"offset {off} does not fit in a signed 16-bit field",
            hint="eBPF memory and jump offsets are -32768..32767",
        )
    return int(off)


def _imm32(imm: int) -> int:
    if not isinstance(imm, int):
        raise BPFError(f"immediate {imm!r} is not an integer")
    if S32_MIN <= imm <= S32_MAX:
        return int(imm)
    if 0 <= imm <= 0xFFFFFFFF:  # accept u32 spelling, store as s32
        return _s32(imm)
    raise BPFError(
        f"immediate {imm} does not fit in 32 bits",
        hint="load 64-bit constants with ld_imm64 into a register",
    )


def _size(size: Union[str, int]) -> int:
    try:
        return SIZES[size.lower() if isinstance(size, str) else size]
    except (KeyError, AttributeError):
        raise BPFError(f"unknown access size {size!r}", hint="use b, h, w, dw (or 1, 2, 4, 8)") from None


def _alu(cls: int, op: int, dst: int, x: Operand, off: int = 0) -> Insn:
    d = _reg(dst, "destination")
    if isinstance(x, Reg):
        return Insn(cls | op | X, d, int(x), off, 0)
    return Insn(cls | op | K, d, 0, off, _imm32(x))


def _op(table: dict[str, int], op: Union[str, int], kind: str) -> int:
    if isinstance(op, str):
        try:
            return table[op.lower()]
        except KeyError:
            raise BPFError(f"unknown {kind} operation {op!r}", hint=", ".join(table)) from None
    if op not in table.values():
        raise BPFError(f"unknown {kind} operation {op!r}")
    return op


def alu64(op: Union[str, int], dst: int, x: Operand) -> Insn:
    """64-bit ALU: ``dst op= x`` (``x`` a Reg or an s32 immediate)."""
    return _alu(ALU64, _op(ALU_OPS, op, "alu"), dst, x)


def alu32(op: Union[str, int], dst: int, x: Operand) -> Insn:
    """32-bit ALU (``w`` registers; the result is zero-extended)."""
    return _alu(ALU, _op(ALU_OPS, op, "alu"), dst, x)


def mov64(dst: int, x: Operand) -> Insn:
    return _alu(ALU64, MOV, dst, x)


def mov32(dst: int, x: Operand) -> Insn:
    return _alu(ALU, MOV, dst, x)


def neg64(dst: int) -> Insn:
    return Insn(ALU64 | NEG, _reg(dst))


def neg32(dst: int) -> Insn:
    return Insn(ALU | NEG, _reg(dst))


def sdiv64(dst: int, x: Operand) -> Insn:
    """Signed division (ISA v4, Linux 6.6+)."""
    return _alu(ALU64, DIV, dst, x, 1)


def sdiv32(dst: int, x: Operand) -> Insn:
    return _alu(ALU, DIV, dst, x, 1)


def smod64(dst: int, x: Operand) -> Insn:
    """Signed modulo (ISA v4, Linux 6.6+)."""
    return _alu(ALU64, MOD, dst, x, 1)


def smod32(dst: int, x: Operand) -> Insn:
    return _alu(ALU, MOD, dst, x, 1)


def movsx64(dst: int, src: int, bits: int) -> Insn:
    """``dst = (s<bits>)src`` sign-extending move, bits 8/16/32 (ISA v4)."""
    if bits not in (8, 16, 32):
        raise BPFError(f"movsx64 width {bits} is not 8, 16 or 32")
    return Insn(ALU64 | MOV | X, _reg(dst), _reg(src), bits, 0)


def movsx32(dst: int, src: int, bits: int) -> Insn:
    """``w_dst = (s<bits>)w_src``, bits 8/16 (ISA v4)."""
    if bits not in (8, 16):
        raise BPFError(f"movsx32 width {bits} is not 8 or 16")
    return Insn(ALU | MOV | X, _reg(dst), _reg(src), bits, 0)


def endian(dst: int, bits: int, order: str) -> Insn:
    """``dst = le<bits> dst`` / ``be<bits>``: convert to little/big endian."""
    if bits not in (16, 32, 64):
        raise BPFError(f"endian width {bits} is not 16, 32 or 64")
    if order not in ("le", "be"):
        raise BPFError(f"byte order {order!r} is not 'le' or 'be'")
    return Insn(ALU | END | (TO_BE if order == "be" else TO_LE), _reg(dst), 0, 0, bits)


def bswap(dst: int, bits: int) -> Insn:
    """Unconditional byte swap (ISA v4, Linux 6.6+)."""
    if bits not in (16, 32, 64):
        raise BPFError(f"bswap width {bits} is not 16, 32 or 64")
    return Insn(ALU64 | END, _reg(dst), 0, 0, bits)


def ja(off: int) -> Insn:
    """``goto pc+off`` (off counts slots after this one)."""
    return Insn(JMP | JA, 0, 0, _off16(off), 0)


def gotol(off: int) -> Insn:
    """``gotol pc+off`` with a 32-bit offset (ISA v4, Linux 6.6+)."""
    return Insn(JMP32 | JA, 0, 0, 0, _imm32(off))


def _jmp(cls: int, op: Union[str, int], dst: int, x: Operand, off: int) -> Insn:
    o = _op(JMP_OPS, op, "jump")
    d = _reg(dst, "compared register")
    if isinstance(x, Reg):
        return Insn(cls | o | X, d, int(x), _off16(off), 0)
    return Insn(cls | o | K, d, 0, _off16(off), _imm32(x))


def jmp(op: Union[str, int], dst: int, x: Operand, off: int) -> Insn:
    """Conditional 64-bit jump ``if dst <op> x goto pc+off``."""
    return _jmp(JMP, op, dst, x, off)


def jmp32(op: Union[str, int], dst: int, x: Operand, off: int) -> Insn:
    """Conditional jump on the low 32 bits (Linux 5.1+)."""
    return _jmp(JMP32, op, dst, x, off)


def call(helper_id: int) -> Insn:
    """Call a kernel helper by id (see ``kprobes.bpf.helpers.Helper``)."""
    return Insn(JMP | CALL, 0, 0, 0, _imm32(int(helper_id)))


def call_local(off: int) -> Insn:
    """bpf-to-bpf call: ``imm`` is the callee's slot offset from the next slot."""
    return Insn(JMP | CALL, 0, PSEUDO_CALL, 0, _imm32(off))


def call_kfunc(btf_id: int) -> Insn:
    return Insn(JMP | CALL, 0, PSEUDO_KFUNC_CALL, 0, _imm32(btf_id))


def exit_() -> Insn:
    return Insn(JMP | EXIT)


def ldx(size: Union[str, int], dst: int, src: int, off: int) -> Insn:
    """``dst = *(u<size> *)(src + off)``."""
    return Insn(LDX | MEM | _size(size), _reg(dst), _reg(src), _off16(off), 0)


def ldsx(size: Union[str, int], dst: int, src: int, off: int) -> Insn:
    """Sign-extending load ``dst = *(s<size> *)(src + off)``, b/h/w (ISA v4)."""
    s = _size(size)
    if s == DW:
        raise BPFError("ldsx has no 64-bit form", hint="use ldx dw")
    return Insn(LDX | MEMSX | s, _reg(dst), _reg(src), _off16(off), 0)


def stx(size: Union[str, int], dst: int, off: int, src: int) -> Insn:
    """``*(u<size> *)(dst + off) = src``."""
    return Insn(STX | MEM | _size(size), _reg(dst), _reg(src), _off16(off), 0)


def st(size: Union[str, int], dst: int, off: int, imm: int) -> Insn:
    """``*(u<size> *)(dst + off) = imm``."""
    return Insn(ST | MEM | _size(size), _reg(dst), 0, _off16(off), _imm32(imm))


def atomic(
    size: Union[str, int], op: str, dst: int, off: int, src: int, *, fetch: bool = False
) -> Insn:
    """Atomic ``op`` on ``*(size *)(dst + off)`` with ``src``.

    ``op``: add/or/and/xor (``fetch=True`` returns the old value in ``src``),
    ``xchg`` (always fetches into ``src``), ``cmpxchg`` (compares with r0,
    old value into r0).  Only ``add`` without fetch predates Linux 5.12.
    """
    s = _size(size)
    if s not in (W, DW):
        raise BPFError("atomic operations are 32-bit (w) or 64-bit (dw) only")
    name = op.lower()
    if name == "xchg":
        imm = XCHG
    elif name == "cmpxchg":
        imm = CMPXCHG
    else:
        imm = _op(ATOMIC_OPS, name, "atomic") | (FETCH if fetch else 0)
    return Insn(STX | ATOMIC | s, _reg(dst), _reg(src), _off16(off), imm)


def _ld64(dst: int, src: int, value: int) -> Insn:
    if not isinstance(value, int) or not (-(1 << 63) <= value <= U64_MASK):
        raise BPFError(f"ld_imm64 value {value!r} does not fit in 64 bits")
    return Insn(LD_IMM64, _reg(dst), src, 0, value & U64_MASK)


def ld_imm64(dst: int, value: int) -> Insn:
    """``dst = value`` for any 64-bit value (two slots)."""
    return _ld64(dst, 0, value)


def ld_map_fd(dst: int, fd: int) -> Insn:
    """``dst = map`` by file descriptor (BPF_PSEUDO_MAP_FD)."""
    return _ld64(dst, PSEUDO_MAP_FD, _u32(fd, "map fd"))


def ld_map_value(dst: int, fd: int, offset: int = 0) -> Insn:
    """``dst = &map_value[0] + offset`` of an array map (BPF_PSEUDO_MAP_VALUE, 5.2+)."""
    return _ld64(dst, PSEUDO_MAP_VALUE, (_u32(offset, "value offset") << 32) | _u32(fd, "map fd"))


def ld_map_idx(dst: int, idx: int) -> Insn:
    """``dst = fd_array[idx]`` (BPF_PSEUDO_MAP_IDX, 5.14+)."""
    return _ld64(dst, PSEUDO_MAP_IDX, _u32(idx, "map index"))


def ld_btf_id(dst: int, btf_id: int) -> Insn:
    """Address of a kernel variable by BTF id (BPF_PSEUDO_BTF_ID, 5.10+)."""
    return _ld64(dst, PSEUDO_BTF_ID, _u32(btf_id, "btf id"))


def ld_func(dst: int, off: int) -> Insn:
    """Address of a subprogram, ``off`` slots from the next slot (BPF_PSEUDO_FUNC)."""
    return _ld64(dst, PSEUDO_FUNC, _imm32(off) & 0xFFFFFFFF)


def _u32(v: int, what: str) -> int:
    if not isinstance(v, int) or not (0 <= v <= 0xFFFFFFFF):
        raise BPFError(f"{what} {v!r} is not an unsigned 32-bit value")
    return int(v)


def slot_count(insns: Sequence[Insn]) -> int:
    """Total slots (the ``insn_cnt`` that BPF_PROG_LOAD wants)."""
    return sum(2 if i.code == LD_IMM64 else 1 for i in insns)
