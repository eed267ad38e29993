"""Kernel-style eBPF disassembler and its inverse parser.  Pure: no I/O.

Format
------
The text follows the kernel's verifier log / ``bpftool prog dump xlated``
(``kernel/bpf/disasm.c``), so a listing reads like what users already know::

       0: (bf) r1 = r10
       1: (07) r1 += -8
       2: (18) r1 = map[counts]
       4: (85) call bpf_map_lookup_elem#1
       5: (15) if r0 == 0x0 goto pc+3
       6: (db) lock *(u64 *)(r0 +0) += r1
       7: (79) r1 = *(u64 *)(r10 -8)
       8: (95) exit

Choices, where the kernel's text is not enough to rebuild an instruction:

- Jumps print the kernel's ``goto pc+3`` (offset in slots from the next slot),
  not llvm-objdump's ``goto +3``.  The parser accepts both, and label names.
- A 64-bit immediate load prints as the kernel does (``r1 = 0x2a``); in this
  format a *hex* constant after ``rN =`` is always ``ld_imm64`` and a decimal one
  is a ``mov``.  The parser also accepts llvm's ``r1 = 42 ll``.
- Map loads print bpftool-like: ``map[fd:3]`` / ``map[fd:3][0]+8``
  (``BPF_PSEUDO_MAP_FD``/``_VALUE``), ``map[<name>]`` when the caller knows the
  reference (assembler listings), ``map[idx:N]`` / ``map[idx:N]+off``,
  ``subprog[+N]`` (``BPF_PSEUDO_FUNC``) and ``btf_id[N]`` (``BPF_PSEUDO_BTF_ID``,
  the kernel would print a bare hex address).
- kfunc calls print ``call kernel-function#<btf id>`` (the kernel omits the id).

Listings (:func:`disassemble`) put ``   N: (op) `` before each instruction
(``opcodes=False`` drops the ``(op)``), a ``; <source>`` line whenever the
source tag changes (bpftool's line-info style; a bare ``;`` ends a tag),
``name:`` lines for labels and a
trailing ``  ; note`` for notes.  :func:`parse` and :func:`parse_program` read
all of that back (``;`` lines become source tags again).

API: ``format_insn(insn, map_name=None) -> str``, ``disassemble(insns_or_bytes,
...) -> str``, ``parse(text) -> list[Insn]``, ``parse_program(text, maps=None)
-> Program`` (``maps`` maps ``map[<name>]`` names to references; unknown names
are used as references themselves).
"""

from __future__ import annotations

import re
from typing import (
    TYPE_CHECKING,
    Callable,
    Dict,
    Hashable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from . import insn as I
from .helpers import helper_id, helper_name
from .insn import BPFError, Insn

if TYPE_CHECKING:
    from .asm import Assembler, Program

__all__ = ["format_insn", "disassemble", "parse", "parse_program", "BPFSyntaxError"]


class BPFSyntaxError(BPFError):
    """A line of assembly text that is not an instruction of this format."""

    def __init__(self, message: str, line: int, text: str) -> None:
        super().__init__(
            f"line {line}: {message}: {text.strip()!r}",
            hint="see kprobes.bpf.disasm for the accepted (kernel/bpftool) syntax",
        )
        self.line = line
        self.text = text


_ALU_STR = {
    I.ADD: "+=", I.SUB: "-=", I.MUL: "*=", I.DIV: "/=", I.OR: "|=", I.AND: "&=",
    I.LSH: "<<=", I.RSH: ">>=", I.MOD: "%=", I.XOR: "^=", I.MOV: "=", I.ARSH: "s>>=",
}
_JMP_STR = {
    I.JEQ: "==", I.JGT: ">", I.JGE: ">=", I.JSET: "&", I.JNE: "!=", I.JSGT: "s>",
    I.JSGE: "s>=", I.JLT: "<", I.JLE: "<=", I.JSLT: "s<", I.JSLE: "s<=",
}
_LDST = {I.W: "u32", I.H: "u16", I.B: "u8", I.DW: "u64"}
_LDSX = {I.W: "s32", I.H: "s16", I.B: "s8"}
_ATOMIC_STR = {I.ADD: "add", I.AND: "and", I.OR: "or", I.XOR: "xor"}


def _mem(size: int, reg: int, off: int, sx: bool = False) -> str:
    return f"*({(_LDSX if sx else _LDST)[size]} *)(r{reg} {off:+d})"


def format_insn(i: Insn, map_name: Optional[str] = None) -> str:
    """One instruction in kernel syntax, without pc and opcode (see module doc)."""
    code, dst, src, off, imm = i
    cls = code & 0x07
    if cls in (I.ALU, I.ALU64):
        r = "w" if cls == I.ALU else "r"
        op = code & 0xF0
        if op == I.END:
            if cls == I.ALU64:
                return f"r{dst} = bswap{imm} r{dst}"
            return f"r{dst} = {'be' if code & I.TO_BE else 'le'}{imm} r{dst}"
        if op == I.NEG:
            return f"{r}{dst} = -{r}{dst}"
        s = _ALU_STR.get(op, "?")
        if off == 1 and op in (I.DIV, I.MOD):
            s = "s" + s
        if code & I.X:
            cast = f"(s{off})" if op == I.MOV and off else ""
            return f"{r}{dst} {s} {cast}{r}{src}"
        return f"{r}{dst} {s} {imm}"
    if cls == I.STX:
        size = code & 0x18
        if code & 0xE0 == I.MEM:
            return f"{_mem(size, dst, off)} = r{src}"
        w = "64" if size == I.DW else ""
        t = _LDST[size]
        if imm in _ATOMIC_STR:
            return f"lock {_mem(size, dst, off)} {_ALU_STR[imm]} r{src}"
        if imm & ~I.FETCH in _ATOMIC_STR and imm & I.FETCH:
            name = _ATOMIC_STR[imm & ~I.FETCH]
            return f"r{src} = atomic{w}_fetch_{name}(({t} *)(r{dst} {off:+d}), r{src})"
        if imm == I.CMPXCHG:
            return f"r0 = atomic{w}_cmpxchg(({t} *)(r{dst} {off:+d}), r0, r{src})"
        if imm == I.XCHG:
            return f"r{src} = atomic{w}_xchg(({t} *)(r{dst} {off:+d}), r{src})"
        return f"BUG_{code:02x}"
    if cls == I.ST:
        return f"{_mem(code & 0x18, dst, off)} = {imm}"
    if cls == I.LDX:
        return f"r{dst} = {_mem(code & 0x18, src, off, code & 0xE0 == I.MEMSX)}"
    if cls == I.LD:
        if code != I.LD_IMM64:
            return f"BUG_ld_{code:02x}"
        lo, hi = imm & 0xFFFFFFFF, (imm >> 32) & 0xFFFFFFFF
        if src == I.PSEUDO_MAP_FD:
            return f"r{dst} = map[{map_name if map_name is not None else f'fd:{lo}'}]"
        if src == I.PSEUDO_MAP_VALUE:
            return f"r{dst} = map[{map_name if map_name is not None else f'fd:{lo}'}][0]+{hi}"
        if src == I.PSEUDO_MAP_IDX:
            return f"r{dst} = map[idx:{lo}]"
        if src == I.PSEUDO_MAP_IDX_VALUE:
            return f"r{dst} = map[idx:{lo}]+{hi}"
        if src == I.PSEUDO_FUNC:
            return f"r{dst} = subprog[{I._s32(lo):+d}]"
        if src == I.PSEUDO_BTF_ID:
            return f"r{dst} = btf_id[{lo}]"
        return f"r{dst} = {imm:#x}"
    # JMP / JMP32
    op = code & 0xF0
    if op == I.CALL:
        if src == I.PSEUDO_CALL:
            return f"call pc{imm:+d}"
        if src == I.PSEUDO_KFUNC_CALL:
            return f"call kernel-function#{imm}"
        hname = helper_name(imm)
        return f"call {'bpf_' + hname if hname else 'unknown'}#{imm}"
    if op == I.EXIT:
        return "exit"
    if op == I.JA:
        return f"goto pc{off:+d}" if cls == I.JMP else f"gotol pc{imm:+d}"
    r = "w" if cls == I.JMP32 else "r"
    s = _JMP_STR.get(op, "?")
    if code & I.X:
        return f"if {r}{dst} {s} {r}{src} goto pc{off:+d}"
    return f"if {r}{dst} {s} {imm & 0xFFFFFFFF:#x} goto pc{off:+d}"


def disassemble(
    insns: Union[Sequence[Insn], bytes, bytearray, memoryview],
    *,
    opcodes: bool = True,
    sources: Optional[Sequence[Optional[str]]] = None,
    notes: Optional[Sequence[Optional[str]]] = None,
    map_names: Optional[Mapping[int, str]] = None,
    labels: Optional[Mapping[str, int]] = None,
) -> str:
    """A listing, one instruction per line (see the module docstring).

    ``sources``/``notes`` are per instruction; ``map_names`` maps instruction
    index -> map name; ``labels`` maps name -> slot.
    """
    seq = I.decode(insns) if isinstance(insns, (bytes, bytearray, memoryview)) else insns
    by_slot: Dict[int, List[str]] = {}
    for name, slot in (labels or {}).items():
        by_slot.setdefault(slot, []).append(name)
    out: List[str] = []
    pc = 0
    last_src: Optional[str] = None
    for n, i in enumerate(seq):
        src = sources[n] if sources is not None and n < len(sources) else None
        if src != last_src and (sources is not None):
            out.append(f"; {src}" if src is not None else ";")
        last_src = src
        for name in by_slot.get(pc, ()):
            out.append(f"{name}:")
        body = format_insn(i, map_names.get(n) if map_names else None)
        line = f"{pc:4d}: ({i.code:02x}) {body}" if opcodes else f"{pc:4d}: {body}"
        note = notes[n] if notes is not None and n < len(notes) else None
        if note:
            line += f"  ; {note}"
        out.append(line)
        pc += i.slots
    return "\n".join(out) + ("\n" if out else "")


# ------------------------------------------------------------------ parser

_REG = r"r(\d+)"
_MEMRE = r"\*\((u8|u16|u32|u64|s8|s16|s32) \*\)\(r(\d+) ?([+-]\d+)\)"
_TARGET = r"(?:(?:pc)?([+-]\d+)|([A-Za-z_.$][\w.$]*))"
_NUM = r"(-?(?:0x[0-9a-fA-F]+|\d+))"
_SIZE_OF = {"u8": "b", "u16": "h", "u32": "w", "u64": "dw", "s8": "b", "s16": "h", "s32": "w"}
_ALU_OF = {v: k for k, v in _ALU_STR.items()}
_JMP_OF = {v: k for k, v in _JMP_STR.items()}
_ATOMIC_OF = {v: k for k, v in _ATOMIC_STR.items()}

_PREFIX = re.compile(r"^\s*(?:\d+:\s*)?(?:\([0-9a-fA-F]{2}\)\s*)?")


def _num(s: str) -> int:
    return int(s, 0)


def _treg(s: str) -> I.Reg:
    n = int(s)
    if n > 10:
        raise ValueError(f"no register r{n}")
    return I.REGS[n]


Handler = Callable[["Assembler", "re.Match[str]", Mapping[str, Hashable]], None]
_RULES: List[Tuple["re.Pattern[str]", Handler]] = []


def _rule(pattern: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        _RULES.append((re.compile(pattern + r"$"), fn))
        return fn

    return deco


def _jtarget(m: "re.Match[str]", g: int) -> Union[int, str]:
    return int(m.group(g)) if m.group(g) is not None else m.group(g + 1)


@_rule(r"exit")
def _p_exit(a: Assembler, m: re.Match[str], maps: Mapping[str, Hashable]) -> None:
    a.exit()


@_rule(r"call pc([+-]\d+)")
def _p_call_local(a: Assembler, m: re.Match[str], maps: Mapping[str, Hashable]) -> None:
    a.call_local(int(m.group(1)))


@_rule(r"call kernel-function#(-?\d+)")
def _p_kfunc(a: Assembler, m: re.Match[str], maps: Mapping[str, Hashable]) -> None:
    a.call_kfunc(int(m.group(1)))


@_rule(r"call ([A-Za-z_.$][\w.$]*)(?:#(-?\d+))?")
def _p_call(a: Assembler, m: re.Match[str], maps: Mapping[str, Hashable]) -> None:
    if m.group(2) is not None:
        a.call(int(m.group(2)))
        return
    hid = helper_id(m.group(1))
    if hid is None:  # not a helper: a bpf-to-bpf call of a label
        a.call_local(m.group(1))
    else:
        a.call(hid)


@_rule(r"goto " + _TARGET)
def _p_ja(a: Assembler, m: re.Match[str], maps: Mapping[str, Hashable]) -> None:
    a.ja(_jtarget(m, 1))


@_rule(r"gotol " + _TARGET)
def _p_gotol(a: Assembler, m: re.Match[str], maps: Mapping[str, Hashable]) -> None:
    a.gotol(_jtarget(m, 1))


@_rule(r"if ([rw])(\d+) (==|>|>=|&|!=|s>|s>=|<|<=|s<|s<=) (?:([rw])(\d+)|" + _NUM + r") goto "
       + _TARGET)
def _p_jcond(a: Assembler, m: re.Match[str], maps: Mapping[str, Hashable]) -> None:
    wide = m.group(1) == "r"
    if m.group(4) is not None:
        if m.group(4) != m.group(1):
            raise ValueError("mixed r/w registers")
        x: I.Operand = _treg(m.group(5))
    else:
        x = _num(m.group(6))
    op = [k for k, v in I.JMP_OPS.items() if v == _JMP_OF[m.group(3)]][0]
    a.jcond(op, _treg(m.group(2)), x, _jtarget(m, 7), wide=wide)


@_rule(r"lock \*\((u32|u64) \*\)\(r(\d+) ?([+-]\d+)\) (\+=|\|=|&=|\^=) r(\d+)")
def _p_lock(a: Assembler, m: re.Match[str], maps: Mapping[str, Hashable]) -> None:
    op = _ATOMIC_STR[_ALU_OF[m.group(4)]]
    a.atomic(_SIZE_OF[m.group(1)], op, _treg(m.group(2)), int(m.group(3)), _treg(m.group(5)))


@_rule(r"r(\d+) = atomic(64)?_(fetch_add|fetch_and|fetch_or|fetch_xor|xchg)"
       r"\(\((u32|u64) \*\)\(r(\d+) ?([+-]\d+)\), r(\d+)\)")
def _p_fetch(a: Assembler, m: re.Match[str], maps: Mapping[str, Hashable]) -> None:
    if m.group(1) != m.group(7) or (m.group(2) == "64") != (m.group(4) == "u64"):
        raise ValueError("inconsistent atomic operands")
    name = m.group(3)
    op, fetch = (name[6:], True) if name.startswith("fetch_") else (name, False)
    a.atomic(_SIZE_OF[m.group(4)], op, _treg(m.group(5)), int(m.group(6)), _treg(m.group(7)),
             fetch=fetch)


@_rule(r"r0 = atomic(64)?_cmpxchg\(\((u32|u64) \*\)\(r(\d+) ?([+-]\d+)\), r0, r(\d+)\)")
def _p_cmpxchg(a: Assembler, m: re.Match[str], maps: Mapping[str, Hashable]) -> None:
    if (m.group(1) == "64") != (m.group(2) == "u64"):
        raise ValueError("inconsistent atomic width")
    a.atomic(_SIZE_OF[m.group(2)], "cmpxchg", _treg(m.group(3)), int(m.group(4)), _treg(m.group(5)))


@_rule(_MEMRE + r" = (?:r(\d+)|" + _NUM + ")")
def _p_store(a: Assembler, m: re.Match[str], maps: Mapping[str, Hashable]) -> None:
    if m.group(1).startswith("s"):
        raise ValueError("stores are unsigned")
    size, dst, off = _SIZE_OF[m.group(1)], _treg(m.group(2)), int(m.group(3))
    if m.group(4) is not None:
        a.stx(size, dst, off, _treg(m.group(4)))
    else:
        a.st(size, dst, off, _num(m.group(5)))


@_rule(_REG + " = " + _MEMRE)
def _p_load(a: Assembler, m: re.Match[str], maps: Mapping[str, Hashable]) -> None:
    size, src, off = _SIZE_OF[m.group(2)], _treg(m.group(3)), int(m.group(4))
    if m.group(2).startswith("s"):
        a.ldsx(size, _treg(m.group(1)), src, off)
    else:
        a.ldx(size, _treg(m.group(1)), src, off)


@_rule(_REG + r" = (be|le|bswap)(16|32|64) r(\d+)")
def _p_end(a: Assembler, m: re.Match[str], maps: Mapping[str, Hashable]) -> None:
    if m.group(1) != m.group(4):
        raise ValueError("byte swaps work in place")
    if m.group(2) == "bswap":
        a.bswap(_treg(m.group(1)), int(m.group(3)))
    else:
        a.endian(_treg(m.group(1)), int(m.group(3)), m.group(2))


@_rule(r"([rw])(\d+) = -([rw])(\d+)")
def _p_neg(a: Assembler, m: re.Match[str], maps: Mapping[str, Hashable]) -> None:
    if m.group(1) != m.group(3) or m.group(2) != m.group(4):
        raise ValueError("neg works in place")
    (a.neg64 if m.group(1) == "r" else a.neg32)(_treg(m.group(2)))


@_rule(r"([rw])(\d+) = \(s(8|16|32)\)([rw])(\d+)")
def _p_movsx(a: Assembler, m: re.Match[str], maps: Mapping[str, Hashable]) -> None:
    if m.group(1) != m.group(4):
        raise ValueError("mixed r/w registers")
    fn = a.movsx64 if m.group(1) == "r" else a.movsx32
    fn(_treg(m.group(2)), _treg(m.group(5)), int(m.group(3)))


@_rule(_REG + r" = map\[([^\]]+)\](?:\[0\]\+(\d+))?")
def _p_map(a: Assembler, m: re.Match[str], maps: Mapping[str, Hashable]) -> None:
    dst, name, voff = _treg(m.group(1)), m.group(2), m.group(3)
    if name.startswith("idx:"):
        if voff is not None:
            raise ValueError("map[idx:N] takes +off, not [0]+off")
        a.emit(I.ld_map_idx(dst, int(name[4:])))
    elif name.startswith("fd:"):
        fd = int(name[3:])
        a.emit(I.ld_map_fd(dst, fd) if voff is None else I.ld_map_value(dst, fd, int(voff)))
    else:
        ref = maps.get(name, name)
        if voff is None:
            a.ld_map_fd(dst, ref)
        else:
            a.ld_map_value(dst, ref, int(voff))


@_rule(_REG + r" = map\[idx:(\d+)\]\+(\d+)")
def _p_map_idx_value(a: Assembler, m: re.Match[str], maps: Mapping[str, Hashable]) -> None:
    value = (int(m.group(3)) << 32) | I._u32(int(m.group(2)), "map index")
    a.emit(I._ld64(_treg(m.group(1)), I.PSEUDO_MAP_IDX_VALUE, value))


@_rule(_REG + r" = subprog\[(?:([+-]\d+)|([A-Za-z_.$][\w.$]*))\]")
def _p_func(a: Assembler, m: re.Match[str], maps: Mapping[str, Hashable]) -> None:
    a.ld_func(_treg(m.group(1)), _jtarget(m, 2))


@_rule(_REG + r" = btf_id\[(\d+)\]")
def _p_btf(a: Assembler, m: re.Match[str], maps: Mapping[str, Hashable]) -> None:
    a.emit(I.ld_btf_id(_treg(m.group(1)), int(m.group(2))))


@_rule(_REG + r" = (0x[0-9a-fA-F]+|-?(?:0x[0-9a-fA-F]+|\d+) ll)")
def _p_imm64(a: Assembler, m: re.Match[str], maps: Mapping[str, Hashable]) -> None:
    a.ld_imm64(_treg(m.group(1)), _num(m.group(2).replace(" ll", "")))


@_rule(r"([rw])(\d+) (\+=|-=|\*=|/=|\|=|&=|<<=|>>=|%=|\^=|=|s>>=|s/=|s%=) (?:([rw])(\d+)|"
       + _NUM + ")")
def _p_alu(a: Assembler, m: re.Match[str], maps: Mapping[str, Hashable]) -> None:
    cls = I.ALU64 if m.group(1) == "r" else I.ALU
    s = m.group(3)
    signed = s in ("s/=", "s%=")
    op = _ALU_OF[s[1:] if signed else s]
    if m.group(4) is not None:
        if m.group(4) != m.group(1):
            raise ValueError("mixed r/w registers")
        x: I.Operand = _treg(m.group(5))
    else:
        x = _num(m.group(6))
    a.emit(I._alu(cls, op, _treg(m.group(2)), x, 1 if signed else 0))


_LABEL = re.compile(r"^\s*([A-Za-z_.$][\w.$]*):\s*$")


def parse_program(text: str, maps: Optional[Mapping[str, Hashable]] = None) -> Program:
    """Assemble kernel-syntax text (the :func:`disassemble` format) into a Program.

    Lines: optional ``N:`` pc and ``(op)`` prefixes (ignored), ``name:`` labels,
    ``; text`` source tags, ``insn  ; note`` notes, blank lines.
    """
    from .asm import Assembler

    a = Assembler()
    names = maps or {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped:
            continue
        if stripped.startswith(";"):
            a.source(stripped[1:].strip() or None)
            continue
        lm = _LABEL.match(raw)
        if lm:
            try:
                a.label(lm.group(1))
            except BPFError as exc:
                raise BPFSyntaxError(exc.message, lineno, raw) from None
            continue
        body, _, note = raw.partition(";")
        body = _PREFIX.sub("", body, count=1).strip()
        body = re.sub(r"\s+", " ", body)
        for pattern, handler in _RULES:
            m = pattern.match(body)
            if m:
                try:
                    handler(a, m, names)
                except (BPFError, ValueError) as exc:
                    msg = exc.message if isinstance(exc, BPFError) else str(exc)
                    raise BPFSyntaxError(msg, lineno, raw) from None
                if note.strip():
                    a.note(note.strip())
                break
        else:
            raise BPFSyntaxError("not an instruction", lineno, raw)
    try:
        return a.assemble()
    except BPFError as exc:
        raise BPFSyntaxError(exc.message, 0, text.splitlines()[-1] if text else "") from None


def parse(text: str) -> List[Insn]:
    """The instructions of kernel-syntax ``text`` (see :func:`parse_program`)."""
    return list(parse_program(text).insns)
