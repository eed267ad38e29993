"""USDT probes: the ``.note.stapsdt`` ELF notes and their argument specs (pure).

A USDT probe (``DTRACE_PROBE*``/``STAP_PROBE*`` from ``<sys/sdt.h>``) is a
``nop`` in the code plus one ELF note in ``.note.stapsdt`` (owner
``stapsdt``, type 3) whose descriptor holds, in the file's word size and byte
order::

    pc          address of the nop (link-time)
    base        link-time address of the .stapsdt.base section
    semaphore   address of the PROVIDER_NAME_semaphore counter, or 0
    provider\\0 name\\0 arguments\\0

If the file was prelinked (moved after linking), the real ``.stapsdt.base``
address differs from ``base``: ``pc`` and ``semaphore`` move by the same
amount (:meth:`UsdtNote.adjusted`).

The arguments are what the assembler saw for each operand, separated by
spaces: ``SIZE@OPERAND`` where SIZE is the byte count, negative for signed
values (``-4@%edi`` is an int in edi).  Operands per architecture:

==========  ==============================  ==========================
x86-64      ``%edi`` ``%cl`` ``%ah``        a register (or part of it)
            ``-16(%rbp)`` ``(%rdx,%rdi,8)``  memory: base, index, scale
            ``g_vol(%rip)`` ``g+8(%rip)``   a global, relative to the pc
            ``$5`` ``$-1``                  a constant
arm64       ``x0`` ``w1``                   a register
            ``[sp, 16]`` ``[x1]``           memory
            ``5``                           a constant
==========  ==============================  ==========================

:func:`parse_args` decodes them into :class:`UsdtArg` values naming the 64-bit
register by its tracefs/``pt_regs`` name (``%edi`` -> ``di``).  Nothing here
reads files: :mod:`kprobes.backends.symbols.usdt` hands the note bytes over.
"""

from __future__ import annotations

import re
import struct
from typing import List, Optional, Tuple

from .._record import dataclass, replace
from ..errors import KprobesError

__all__ = ["UsdtArg", "UsdtNote", "UsdtError", "parse_notes", "parse_args", "parse_arg",
           "NT_STAPSDT", "STAPSDT_OWNER"]

NT_STAPSDT = 3
STAPSDT_OWNER = b"stapsdt"
MAX_ARGS = 12  # <sys/sdt.h> has STAP_PROBE1..STAP_PROBE12


class UsdtError(KprobesError):
    """A note or argument spec that cannot be decoded."""


@dataclass(frozen=True)
class UsdtArg:
    """One decoded USDT argument.

    ``kind`` is ``reg`` (the value is register ``reg``, shifted right by
    ``shift`` bits for ``%ah``-style high bytes), ``mem`` (the value is in
    memory at ``reg + offset`` (+ ``index * scale``); ``symbol`` names a global
    whose address is still to be added, see :meth:`with_symbol`) or
    ``const`` (``offset`` is the value).  ``size`` is in bytes; ``signed``
    whether the value is sign-extended from that size.
    """

    size: int
    signed: bool
    kind: str
    reg: str = ""
    offset: int = 0
    index: str = ""
    scale: int = 1
    shift: int = 0
    symbol: str = ""
    text: str = ""

    @property
    def bits(self) -> int:
        return self.size * 8

    @property
    def fetch_type(self) -> str:
        """The tracefs fetcharg type of the value: ``s32``, ``u8``..."""
        return f"{'s' if self.signed else 'u'}{self.bits}"

    def with_symbol(self, symbol_addr: int, pc: int) -> "UsdtArg":
        """``sym+disp(%rip)`` made pc-relative: the value's address is ``ip + offset``
        when the probe fires at ``pc`` (uprobe handlers see ``ip`` = the probed address)."""
        return replace(self, symbol="", offset=symbol_addr + self.offset - pc)

    def fetcharg(self) -> str:
        """The uprobe fetcharg expression reading the value (no type): ``%di``,
        ``-16(%bp)``, ``+OFF(%ip)``, ``\\5``; :class:`UsdtError` when no fetcharg can."""
        if self.kind == "const":
            return f"\\{self.offset}"
        if self.symbol:
            raise UsdtError(f"{self.text!r} names {self.symbol!r}: resolve it first (with_symbol)")
        if self.kind == "reg":
            if self.shift:
                raise UsdtError(f"{self.text!r} is a high-byte register, which uprobe fetchargs "
                                "cannot shift", hint="use --engine bpf")
            return f"%{self.reg}"
        if self.index:
            raise UsdtError(f"{self.text!r} is at base + index * scale, which uprobe fetchargs "
                            "cannot compute", hint="use --engine bpf")
        return f"{self.offset:+d}(%{self.reg})"

    def describe(self) -> str:
        """A short human description: ``s32 in %di``, ``u64 at -16(%bp)``, ``s32 = 5``."""
        t = self.fetch_type
        if self.kind == "const":
            return f"{t} = {self.offset}"
        if self.kind == "reg":
            return f"{t} in %{self.reg}" + (f" >> {self.shift}" if self.shift else "")
        where = f"{self.symbol}+" if self.symbol else ""
        idx = f",%{self.index},{self.scale}" if self.index else ""
        return f"{t} at {where}{self.offset}(%{self.reg}{idx})"


@dataclass(frozen=True)
class UsdtNote:
    """One ``.note.stapsdt`` entry (addresses are link-time virtual addresses)."""

    provider: str
    name: str
    pc: int
    base: int
    semaphore: int
    args_text: str

    def adjusted(self, base_section_addr: Optional[int]) -> "UsdtNote":
        """The note moved by prelink: ``.stapsdt.base`` is at ``base_section_addr`` now."""
        if base_section_addr is None or not self.base or base_section_addr == self.base:
            return self
        delta = base_section_addr - self.base
        sem = self.semaphore + delta if self.semaphore else 0
        return replace(self, pc=self.pc + delta, semaphore=sem, base=base_section_addr)


def parse_notes(data: bytes, *, is64: bool = True, little: bool = True) -> List[UsdtNote]:
    """Every stapsdt note in the raw bytes of a ``.note.stapsdt`` section.

    Notes of other owners or types are skipped; a truncated note ends the walk.
    """
    order = "<" if little else ">"
    word = 8 if is64 else 4
    addrs = struct.Struct(order + ("QQQ" if is64 else "III"))
    head = struct.Struct(order + "III")
    out: List[UsdtNote] = []
    off = 0
    while off + head.size <= len(data):
        namesz, descsz, ntype = head.unpack_from(data, off)
        name_off = off + head.size
        desc_off = name_off + ((namesz + 3) & ~3)
        end = desc_off + descsz
        if end > len(data) or namesz > len(data):
            break
        owner = data[name_off:name_off + namesz].rstrip(b"\0")
        if owner == STAPSDT_OWNER and ntype == NT_STAPSDT and descsz >= 3 * word:
            pc, base, sem = addrs.unpack_from(data, desc_off)
            strings = data[desc_off + 3 * word:end].split(b"\0")
            if len(strings) >= 2:
                provider = strings[0].decode("utf-8", "replace")
                name = strings[1].decode("utf-8", "replace")
                args = strings[2].decode("utf-8", "replace") if len(strings) > 2 else ""
                out.append(UsdtNote(provider, name, pc, base, sem, args.strip()))
        off = (end + 3) & ~3
    return out


# -- argument specs ---------------------------------------------------------------------

#: x86 register spellings -> (pt_regs name, bytes, right shift).
_X86: dict[str, Tuple[str, int, int]] = {}
for _r in ("ax", "bx", "cx", "dx"):
    _X86["r" + _r] = (_r, 8, 0)
    _X86["e" + _r] = (_r, 4, 0)
    _X86[_r] = (_r, 2, 0)
    _X86[_r[0] + "l"] = (_r, 1, 0)
    _X86[_r[0] + "h"] = (_r, 1, 8)
for _r in ("si", "di", "bp", "sp"):
    _X86["r" + _r] = (_r, 8, 0)
    _X86["e" + _r] = (_r, 4, 0)
    _X86[_r] = (_r, 2, 0)
    _X86[_r + "l"] = (_r, 1, 0)
for _n in range(8, 16):
    _X86[f"r{_n}"] = (f"r{_n}", 8, 0)
    _X86[f"r{_n}d"] = (f"r{_n}", 4, 0)
    _X86[f"r{_n}w"] = (f"r{_n}", 2, 0)
    _X86[f"r{_n}b"] = (f"r{_n}", 1, 0)
    _X86[f"r{_n}l"] = (f"r{_n}", 1, 0)
_X86["rip"] = ("ip", 8, 0)
_X86["eip"] = ("ip", 4, 0)

_INT = r"[-+]?(?:0[xX][0-9a-fA-F]+|\d+)"
_X86_MEM = re.compile(
    r"^(?P<disp>(?P<sym>[A-Za-z_.$][\w.$@]*)?(?P<num>[-+]?(?:0[xX][0-9a-fA-F]+|\d+))?)"
    r"\(\s*(?:%(?P<base>\w+))?\s*(?:,\s*%(?P<index>\w+)\s*(?:,\s*(?P<scale>\d+))?)?\s*\)$"
)
_ARM_MEM = re.compile(rf"^\[\s*(?P<base>\w+)\s*(?:,\s*#?(?P<off>{_INT}))?\s*\]$")


def _int(text: str) -> int:
    return int(text, 0)


def _arm_reg(name: str) -> Optional[Tuple[str, int]]:
    if name in ("sp", "wsp"):
        return "sp", 8 if name == "sp" else 4
    m = re.fullmatch(r"([xw])(\d+)", name)
    if m and int(m.group(2)) <= 30:
        return f"x{m.group(2)}", 8 if m.group(1) == "x" else 4
    return None


def parse_arg(spec: str, arch: str = "x86_64") -> UsdtArg:
    """Decode one argument spec (``-4@%edi``, ``8@-16(%rbp)``, ``4@$5``, ``-8@[sp, 8]``)."""
    text = spec.strip()
    size, signed = 0, False
    m = re.match(r"^(-?\d+)@(.*)$", text)
    operand = text
    if m:
        n = int(m.group(1))
        size, signed, operand = abs(n), n < 0, m.group(2)
        if size not in (1, 2, 4, 8):
            raise UsdtError(f"USDT argument {spec!r}: size {n} is not 1, 2, 4 or 8 bytes")
    if arch == "arm64":
        return _parse_arm(spec, text, operand, size, signed)
    if arch != "x86_64":
        raise UsdtError(f"USDT arguments on {arch} are not supported",
                        hint="supported: x86_64, arm64")
    return _parse_x86(spec, text, operand, size, signed)


def _parse_x86(spec: str, text: str, operand: str, size: int, signed: bool) -> UsdtArg:
    if operand.startswith("$"):
        try:
            value = _int(operand[1:])
        except ValueError:
            raise UsdtError(f"USDT argument {spec!r}: the constant {operand!r} is not a number",
                            hint="constants that name symbols ($sym) are not supported") from None
        return UsdtArg(size or 8, signed, "const", offset=value, text=text)
    if operand.startswith("%"):
        reg = _X86.get(operand[1:])
        if reg is None:
            raise UsdtError(f"USDT argument {spec!r}: unknown register {operand!r}")
        return UsdtArg(size or reg[1], signed, "reg", reg=reg[0], shift=reg[2], text=text)
    m = _X86_MEM.match(operand)
    if m is None:
        raise UsdtError(f"USDT argument {spec!r}: cannot decode the operand {operand!r}")
    base = m.group("base")
    index = m.group("index")
    regs: List[str] = []
    for r in (base, index):
        if r is None:
            regs.append("")
            continue
        info = _X86.get(r)
        if info is None or info[1] < 4 or info[2]:
            raise UsdtError(f"USDT argument {spec!r}: {r!r} cannot address memory")
        regs.append(info[0])
    if not regs[0]:
        raise UsdtError(f"USDT argument {spec!r}: memory without a base register is not supported")
    sym = m.group("sym") or ""
    num = m.group("num")
    if sym and regs[0] != "ip":
        raise UsdtError(f"USDT argument {spec!r}: a symbol is only supported relative to %rip")
    scale = int(m.group("scale")) if m.group("scale") else 1
    if scale not in (1, 2, 4, 8):
        raise UsdtError(f"USDT argument {spec!r}: scale {scale} is not 1, 2, 4 or 8")
    return UsdtArg(size or 8, signed, "mem", reg=regs[0], offset=_int(num) if num else 0,
                   index=regs[1], scale=scale, symbol=sym, text=text)


def _parse_arm(spec: str, text: str, operand: str, size: int, signed: bool) -> UsdtArg:
    reg = _arm_reg(operand)
    if reg is not None:
        return UsdtArg(size or reg[1], signed, "reg", reg=reg[0], text=text)
    if re.fullmatch(_INT, operand):
        return UsdtArg(size or 8, signed, "const", offset=_int(operand), text=text)
    m = _ARM_MEM.match(operand)
    base = _arm_reg(m.group("base")) if m else None
    if m is None or base is None:
        raise UsdtError(f"USDT argument {spec!r}: cannot decode the operand {operand!r}")
    off = m.group("off")
    return UsdtArg(size or 8, signed, "mem", reg=base[0], offset=_int(off) if off else 0, text=text)


def parse_args(args_text: str, arch: str = "x86_64") -> Tuple[UsdtArg, ...]:
    """Every argument of a note (``'-4@%edi 8@-16(%rbp)'``); empty text: none.

    arm64 memory operands contain a space (``[sp, 16]``): split outside brackets.
    """
    parts: List[str] = []
    cur = ""
    depth = 0
    for ch in args_text.strip():
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch.isspace() and depth == 0:
            if cur:
                parts.append(cur)
            cur = ""
            continue
        cur += ch
    if cur:
        parts.append(cur)
    if len(parts) > MAX_ARGS:
        raise UsdtError(f"USDT probe with {len(parts)} arguments: at most {MAX_ARGS} exist")
    return tuple(parse_arg(p, arch) for p in parts)
