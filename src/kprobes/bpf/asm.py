"""A label-aware eBPF assembler for code generators.

Pure: no I/O.  Typical use::

    from kprobes.bpf import Assembler, Helper, R0, R1, R2, R10

    a = Assembler()
    a.source("@[comm] = count()")          # sticky source tag for what follows
    fp_key = a.stack.alloc(8)              # -8: a slot below r10, 512 bytes max
    a.st("dw", R10, fp_key, 0)
    a.ld_map_fd(R1, counts)                # relocation: fd filled at load time
    a.mov64(R2, R10).add64(R2, fp_key)
    a.call(Helper.map_lookup_elem)
    a.jeq(R0, 0, "miss")                   # forward jump to a label
    a.mov64(R1, 1)
    a.atomic("dw", "add", R0, 0, R1)       # lock *(u64 *)(r0 +0) += r1
    a.label("miss")
    a.mov64(R0, 0).exit()
    prog = a.assemble()                    # labels resolved, range-checked
    data = prog.encode({counts: 7})        # bytes for BPF_PROG_LOAD
    print(prog.listing())                  # kernel-style text with sources

Operands: a :class:`~kprobes.bpf.insn.Reg` (``R0``..``R10``) is a register, a
plain ``int`` an immediate.  Jump targets are label names (``str``) or raw
slot offsets (``int``).  Every emitting method returns the assembler, so calls
chain.  Methods: ``<op>64``/``<op>32`` for ``add sub mul div or and lsh rsh mod
xor mov arsh`` and ``neg64/neg32``; ``sdiv*/smod*/movsx*/bswap/ldsx/gotol`` are
ISA v4 (Linux 6.6+); ``endian(dst, bits, "be"|"le")``; ``ja`` and
``jeq jgt jge jset jne jsgt jsge jlt jle jslt jsle`` (+ ``32`` suffix for JMP32);
``call``, ``call_local(label)``, ``exit``; ``ldx/stx/st(size, ...)`` and
``ldxdw``-style shorthands; ``atomic(size, op, dst, off, src, fetch=)``;
``ld_imm64``, ``ld_map_fd(dst, ref)``, ``ld_map_value(dst, ref, offset)``,
``ld_func(dst, label)``; ``emit(insn)`` for a ready ``Insn``.

Map references are any hashable object (a ``MapSpec``, a name...): the
instruction carries fd 0 until :meth:`Program.encode` / :meth:`Program.resolve`
is given ``{ref: fd}``.  Listings print them as ``map[<name>]`` (``ref.name``
if it has one, else ``str(ref)``).

``a.stack`` is a :class:`StackFrame` (aligned slots below r10, 512-byte limit),
``a.regs`` a :class:`RegPool` of the callee-saved r6..r9 (kept across calls).
Errors are :class:`~kprobes.bpf.insn.BPFError` with a hint.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import (
    Dict,
    Hashable,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from . import insn as I
from .insn import BPFError, Insn, Operand, Reg

__all__ = ["Assembler", "Program", "StackFrame", "RegPool", "Reloc", "STACK_LIMIT"]

STACK_LIMIT = 512
Target = Union[str, int]

# fixup kinds
_OFF, _IMM, _FUNC = 0, 1, 2


class Reloc(NamedTuple):
    """A map reference in instruction ``index`` (not slot) of a program."""

    at: int
    ref: Hashable
    kind: int  # PSEUDO_MAP_FD or PSEUDO_MAP_VALUE
    offset: int  # value offset for PSEUDO_MAP_VALUE


def ref_name(ref: Hashable) -> str:
    """How a map reference is spelled in listings."""
    name = getattr(ref, "name", None)
    return name if isinstance(name, str) else str(ref)


class StackFrame:
    """Allocator for stack slots below r10 (the kernel gives 512 bytes).

    ``alloc(size, align)`` returns the (negative) offset from r10 of a new slot
    aligned to ``align``; ``mark()``/``release(mark)`` or ``with frame.scope():``
    free temporaries.  ``high`` is the deepest use so far.
    """

    __slots__ = ("used", "high", "limit")

    def __init__(self, limit: int = STACK_LIMIT) -> None:
        self.used = 0
        self.high = 0
        self.limit = limit

    def alloc(self, size: int, align: int = 8, what: str = "") -> int:
        if size <= 0:
            raise BPFError(f"stack slot size {size} must be positive")
        if align not in (1, 2, 4, 8):
            raise BPFError(f"stack alignment {align} is not 1, 2, 4 or 8")
        new = -(-(self.used + size) // align) * align
        if new > self.limit:
            label = f" for {what}" if what else ""
            raise BPFError(
                f"eBPF stack exhausted: {size} bytes{label} would need {new} of {self.limit}",
                hint="keep large values in a per-CPU array map instead of the stack",
            )
        self.used = new
        self.high = max(self.high, new)
        return -new

    def mark(self) -> int:
        return self.used

    def release(self, mark: int) -> None:
        if not (0 <= mark <= self.used):
            raise BPFError(f"stack mark {mark} is not below the current use {self.used}")
        self.used = mark

    @contextmanager
    def scope(self) -> Iterator[StackFrame]:
        m = self.used
        try:
            yield self
        finally:
            self.used = m


class RegPool:
    """The callee-saved registers r6..r9, handed out and returned by code generators."""

    __slots__ = ("_free", "_taken")

    def __init__(self, regs: Sequence[Reg] = (I.R6, I.R7, I.R8, I.R9)) -> None:
        self._free: List[Reg] = list(regs)
        self._taken: Dict[int, str] = {}

    def take(self, what: str = "") -> Reg:
        if not self._free:
            holders = ", ".join(f"r{r}={w or '?'}" for r, w in sorted(self._taken.items()))
            raise BPFError(
                "out of callee-saved registers (r6..r9 all in use: " + holders + ")",
                hint="spill a value to the stack (a.stack.alloc) and reload it",
            )
        r = self._free.pop(0)
        self._taken[int(r)] = what
        return r

    def release(self, r: Reg) -> None:
        if int(r) not in self._taken:
            raise BPFError(f"register {r!r} was not taken from this pool")
        del self._taken[int(r)]
        self._free.append(r)
        self._free.sort()

    @property
    def in_use(self) -> Tuple[Reg, ...]:
        return tuple(I.REGS[r] for r in sorted(self._taken))


class Program:
    """An assembled program: jumps resolved, map fds still placeholders.

    ``insns`` (one ``Insn`` per instruction, ld_imm64 included once),
    ``relocs`` (map references), ``labels`` (name -> slot), ``sources`` and
    ``notes`` (per instruction, ``None`` when absent), ``slot_count``.
    """

    __slots__ = ("insns", "relocs", "labels", "sources", "notes", "stack_depth")

    def __init__(
        self,
        insns: Sequence[Insn],
        relocs: Sequence[Reloc] = (),
        labels: Optional[Mapping[str, int]] = None,
        sources: Optional[Sequence[Optional[str]]] = None,
        notes: Optional[Sequence[Optional[str]]] = None,
        stack_depth: int = 0,
    ) -> None:
        self.insns: Tuple[Insn, ...] = tuple(insns)
        self.relocs: Tuple[Reloc, ...] = tuple(relocs)
        self.labels: Dict[str, int] = dict(labels or {})
        n = len(self.insns)
        self.sources: Tuple[Optional[str], ...] = tuple(sources) if sources else (None,) * n
        self.notes: Tuple[Optional[str], ...] = tuple(notes) if notes else (None,) * n
        self.stack_depth = stack_depth

    def __len__(self) -> int:
        return len(self.insns)

    @property
    def slot_count(self) -> int:
        return I.slot_count(self.insns)

    @property
    def map_refs(self) -> Tuple[Hashable, ...]:
        """The distinct map references, in order of first use."""
        seen: Dict[Hashable, None] = {}
        for r in self.relocs:
            seen.setdefault(r.ref, None)
        return tuple(seen)

    def resolve(self, fds: Mapping[Hashable, int]) -> List[Insn]:
        """The instructions with every map reference replaced by its fd."""
        out = list(self.insns)
        for r in self.relocs:
            try:
                fd = fds[r.ref]
            except KeyError:
                raise BPFError(
                    f"no file descriptor for map {ref_name(r.ref)!r}",
                    hint="create every map in Program.map_refs before loading",
                ) from None
            if r.kind == I.PSEUDO_MAP_VALUE:
                out[r.at] = I.ld_map_value(out[r.at].dst, fd, r.offset)
            else:
                out[r.at] = I.ld_map_fd(out[r.at].dst, fd)
        return out

    def encode(self, fds: Optional[Mapping[Hashable, int]] = None) -> bytes:
        """Wire bytes for BPF_PROG_LOAD (``fds`` maps each map reference to its fd)."""
        if self.relocs and fds is None:
            raise BPFError(
                "program references maps but no file descriptors were given",
                hint="pass {map_ref: fd} for every map in Program.map_refs",
            )
        return I.encode(self.resolve(fds) if fds is not None else self.insns)

    def max_isa_version(self) -> int:
        """The highest ISA level used (4 means Linux 6.6+ only)."""
        return max((I.isa_version(i) for i in self.insns), default=1)

    def min_kernel(self) -> Tuple[int, int]:
        return max((I.min_kernel(i) for i in self.insns), default=(3, 19))

    def listing(self, *, opcodes: bool = True, sources: bool = True, labels: bool = False) -> str:
        """A kernel-style listing (see :mod:`kprobes.bpf.disasm`)."""
        from .disasm import disassemble

        names: Dict[int, str] = {r.at: ref_name(r.ref) for r in self.relocs}
        return disassemble(
            self.insns,
            opcodes=opcodes,
            sources=self.sources if sources else None,
            notes=self.notes,
            map_names=names,
            labels=self.labels if labels else None,
        )


class Assembler:
    """Emit instructions with labels; :meth:`assemble` resolves them (see module doc)."""

    def __init__(self, *, stack_limit: int = STACK_LIMIT) -> None:
        self._insns: List[Insn] = []
        self._pcs: List[int] = []
        self._pc = 0
        self._labels: Dict[str, int] = {}
        self._fixups: List[Tuple[int, str, int]] = []
        self._relocs: List[Reloc] = []
        self._sources: List[Optional[str]] = []
        self._notes: List[Optional[str]] = []
        self._source: Optional[str] = None
        self.stack = StackFrame(stack_limit)
        self.regs = RegPool()

    # ------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self._insns)

    @property
    def pc(self) -> int:
        """The slot the next instruction will occupy."""
        return self._pc

    def emit(self, insn: Insn, note: Optional[str] = None) -> Assembler:
        """Append a ready instruction (optionally with a note for listings)."""
        self._insns.append(insn)
        self._pcs.append(self._pc)
        self._pc += insn.slots
        self._sources.append(self._source)
        self._notes.append(note)
        return self

    def source(self, tag: Optional[str]) -> Assembler:
        """Tag every following instruction with ``tag`` (a source line) until changed."""
        self._source = tag
        return self

    def note(self, text: str) -> Assembler:
        """Attach a comment to the last emitted instruction."""
        if not self._insns:
            raise BPFError("note() before any instruction")
        self._notes[-1] = text
        return self

    def label(self, name: str) -> Assembler:
        """Define ``name`` at the current position."""
        if name in self._labels:
            raise BPFError(f"label {name!r} defined twice")
        self._labels[name] = self._pc
        return self

    def fresh_label(self, stem: str = "L") -> str:
        """A label name not used yet (for generated code)."""
        n = len(self._labels) + len(self._fixups)
        while f".{stem}{n}" in self._labels:
            n += 1
        return f".{stem}{n}"

    def _target(self, target: Target, kind: int) -> int:
        if isinstance(target, str):
            self._fixups.append((len(self._insns), target, kind))
            return 0
        if isinstance(target, int):
            return target
        raise BPFError(f"jump target {target!r} is neither a label nor an offset")

    # ------------------------------------------------------------ ALU
    def _alu(self, cls: int, op: int, dst: int, x: Operand, off: int = 0) -> Assembler:
        return self.emit(I._alu(cls, op, dst, x, off))

    def add64(self, dst: int, x: Operand) -> Assembler:
        return self._alu(I.ALU64, I.ADD, dst, x)

    def sub64(self, dst: int, x: Operand) -> Assembler:
        return self._alu(I.ALU64, I.SUB, dst, x)

    def mul64(self, dst: int, x: Operand) -> Assembler:
        return self._alu(I.ALU64, I.MUL, dst, x)

    def div64(self, dst: int, x: Operand) -> Assembler:
        return self._alu(I.ALU64, I.DIV, dst, x)

    def or64(self, dst: int, x: Operand) -> Assembler:
        return self._alu(I.ALU64, I.OR, dst, x)

    def and64(self, dst: int, x: Operand) -> Assembler:
        return self._alu(I.ALU64, I.AND, dst, x)

    def lsh64(self, dst: int, x: Operand) -> Assembler:
        return self._alu(I.ALU64, I.LSH, dst, x)

    def rsh64(self, dst: int, x: Operand) -> Assembler:
        return self._alu(I.ALU64, I.RSH, dst, x)

    def mod64(self, dst: int, x: Operand) -> Assembler:
        return self._alu(I.ALU64, I.MOD, dst, x)

    def xor64(self, dst: int, x: Operand) -> Assembler:
        return self._alu(I.ALU64, I.XOR, dst, x)

    def mov64(self, dst: int, x: Operand) -> Assembler:
        return self._alu(I.ALU64, I.MOV, dst, x)

    def arsh64(self, dst: int, x: Operand) -> Assembler:
        return self._alu(I.ALU64, I.ARSH, dst, x)

    def neg64(self, dst: int) -> Assembler:
        return self.emit(I.neg64(dst))

    def add32(self, dst: int, x: Operand) -> Assembler:
        return self._alu(I.ALU, I.ADD, dst, x)

    def sub32(self, dst: int, x: Operand) -> Assembler:
        return self._alu(I.ALU, I.SUB, dst, x)

    def mul32(self, dst: int, x: Operand) -> Assembler:
        return self._alu(I.ALU, I.MUL, dst, x)

    def div32(self, dst: int, x: Operand) -> Assembler:
        return self._alu(I.ALU, I.DIV, dst, x)

    def or32(self, dst: int, x: Operand) -> Assembler:
        return self._alu(I.ALU, I.OR, dst, x)

    def and32(self, dst: int, x: Operand) -> Assembler:
        return self._alu(I.ALU, I.AND, dst, x)

    def lsh32(self, dst: int, x: Operand) -> Assembler:
        return self._alu(I.ALU, I.LSH, dst, x)

    def rsh32(self, dst: int, x: Operand) -> Assembler:
        return self._alu(I.ALU, I.RSH, dst, x)

    def mod32(self, dst: int, x: Operand) -> Assembler:
        return self._alu(I.ALU, I.MOD, dst, x)

    def xor32(self, dst: int, x: Operand) -> Assembler:
        return self._alu(I.ALU, I.XOR, dst, x)

    def mov32(self, dst: int, x: Operand) -> Assembler:
        return self._alu(I.ALU, I.MOV, dst, x)

    def arsh32(self, dst: int, x: Operand) -> Assembler:
        return self._alu(I.ALU, I.ARSH, dst, x)

    def neg32(self, dst: int) -> Assembler:
        return self.emit(I.neg32(dst))

    def sdiv64(self, dst: int, x: Operand) -> Assembler:
        return self.emit(I.sdiv64(dst, x))

    def sdiv32(self, dst: int, x: Operand) -> Assembler:
        return self.emit(I.sdiv32(dst, x))

    def smod64(self, dst: int, x: Operand) -> Assembler:
        return self.emit(I.smod64(dst, x))

    def smod32(self, dst: int, x: Operand) -> Assembler:
        return self.emit(I.smod32(dst, x))

    def movsx64(self, dst: int, src: int, bits: int) -> Assembler:
        return self.emit(I.movsx64(dst, src, bits))

    def movsx32(self, dst: int, src: int, bits: int) -> Assembler:
        return self.emit(I.movsx32(dst, src, bits))

    def endian(self, dst: int, bits: int, order: str) -> Assembler:
        return self.emit(I.endian(dst, bits, order))

    def bswap(self, dst: int, bits: int) -> Assembler:
        return self.emit(I.bswap(dst, bits))

    # ------------------------------------------------------------ jumps
    def ja(self, target: Target) -> Assembler:
        """``goto target`` (16-bit offset)."""
        return self.emit(Insn(I.JMP | I.JA, 0, 0, I._off16(self._target(target, _OFF)), 0))

    def gotol(self, target: Target) -> Assembler:
        """``gotol target`` (32-bit offset, ISA v4 / Linux 6.6+)."""
        return self.emit(Insn(I.JMP32 | I.JA, 0, 0, 0, I._imm32(self._target(target, _IMM))))

    def jcond(self, op: str, dst: int, x: Operand, target: Target, *, wide: bool = True) -> Assembler:
        """``if dst <op> x goto target``; ``wide=False`` compares the low 32 bits."""
        off = self._target(target, _OFF)
        return self.emit(I._jmp(I.JMP if wide else I.JMP32, op, dst, x, off))

    def jeq(self, dst: int, x: Operand, target: Target) -> Assembler:
        return self.jcond("jeq", dst, x, target)

    def jgt(self, dst: int, x: Operand, target: Target) -> Assembler:
        return self.jcond("jgt", dst, x, target)

    def jge(self, dst: int, x: Operand, target: Target) -> Assembler:
        return self.jcond("jge", dst, x, target)

    def jset(self, dst: int, x: Operand, target: Target) -> Assembler:
        return self.jcond("jset", dst, x, target)

    def jne(self, dst: int, x: Operand, target: Target) -> Assembler:
        return self.jcond("jne", dst, x, target)

    def jsgt(self, dst: int, x: Operand, target: Target) -> Assembler:
        return self.jcond("jsgt", dst, x, target)

    def jsge(self, dst: int, x: Operand, target: Target) -> Assembler:
        return self.jcond("jsge", dst, x, target)

    def jlt(self, dst: int, x: Operand, target: Target) -> Assembler:
        return self.jcond("jlt", dst, x, target)

    def jle(self, dst: int, x: Operand, target: Target) -> Assembler:
        return self.jcond("jle", dst, x, target)

    def jslt(self, dst: int, x: Operand, target: Target) -> Assembler:
        return self.jcond("jslt", dst, x, target)

    def jsle(self, dst: int, x: Operand, target: Target) -> Assembler:
        return self.jcond("jsle", dst, x, target)

    def jeq32(self, dst: int, x: Operand, target: Target) -> Assembler:
        return self.jcond("jeq", dst, x, target, wide=False)

    def jgt32(self, dst: int, x: Operand, target: Target) -> Assembler:
        return self.jcond("jgt", dst, x, target, wide=False)

    def jge32(self, dst: int, x: Operand, target: Target) -> Assembler:
        return self.jcond("jge", dst, x, target, wide=False)

    def jset32(self, dst: int, x: Operand, target: Target) -> Assembler:
        return self.jcond("jset", dst, x, target, wide=False)

    def jne32(self, dst: int, x: Operand, target: Target) -> Assembler:
        return self.jcond("jne", dst, x, target, wide=False)

    def jsgt32(self, dst: int, x: Operand, target: Target) -> Assembler:
        return self.jcond("jsgt", dst, x, target, wide=False)

    def jsge32(self, dst: int, x: Operand, target: Target) -> Assembler:
        return self.jcond("jsge", dst, x, target, wide=False)

    def jlt32(self, dst: int, x: Operand, target: Target) -> Assembler:
        return self.jcond("jlt", dst, x, target, wide=False)

    def jle32(self, dst: int, x: Operand, target: Target) -> Assembler:
        return self.jcond("jle", dst, x, target, wide=False)

    def jslt32(self, dst: int, x: Operand, target: Target) -> Assembler:
        return self.jcond("jslt", dst, x, target, wide=False)

    def jsle32(self, dst: int, x: Operand, target: Target) -> Assembler:
        return self.jcond("jsle", dst, x, target, wide=False)

    def call(self, helper: int) -> Assembler:
        """Call helper ``helper`` (an id, e.g. ``Helper.map_lookup_elem``)."""
        return self.emit(I.call(helper))

    def call_local(self, target: Target) -> Assembler:
        """bpf-to-bpf call of the subprogram at ``target`` (a label)."""
        return self.emit(Insn(I.JMP | I.CALL, 0, I.PSEUDO_CALL, 0, self._target(target, _IMM)))

    def call_kfunc(self, btf_id: int) -> Assembler:
        return self.emit(I.call_kfunc(btf_id))

    def exit(self) -> Assembler:
        return self.emit(I.exit_())

    # ------------------------------------------------------------ memory
    def ldx(self, size: Union[str, int], dst: int, src: int, off: int) -> Assembler:
        """``dst = *(u<size> *)(src + off)``."""
        return self.emit(I.ldx(size, dst, src, off))

    def ldsx(self, size: Union[str, int], dst: int, src: int, off: int) -> Assembler:
        return self.emit(I.ldsx(size, dst, src, off))

    def stx(self, size: Union[str, int], dst: int, off: int, src: int) -> Assembler:
        """``*(u<size> *)(dst + off) = src``."""
        return self.emit(I.stx(size, dst, off, src))

    def st(self, size: Union[str, int], dst: int, off: int, imm: int) -> Assembler:
        """``*(u<size> *)(dst + off) = imm``."""
        return self.emit(I.st(size, dst, off, imm))

    def ldxb(self, dst: int, src: int, off: int) -> Assembler:
        return self.ldx("b", dst, src, off)

    def ldxh(self, dst: int, src: int, off: int) -> Assembler:
        return self.ldx("h", dst, src, off)

    def ldxw(self, dst: int, src: int, off: int) -> Assembler:
        return self.ldx("w", dst, src, off)

    def ldxdw(self, dst: int, src: int, off: int) -> Assembler:
        return self.ldx("dw", dst, src, off)

    def stxb(self, dst: int, off: int, src: int) -> Assembler:
        return self.stx("b", dst, off, src)

    def stxh(self, dst: int, off: int, src: int) -> Assembler:
        return self.stx("h", dst, off, src)

    def stxw(self, dst: int, off: int, src: int) -> Assembler:
        return self.stx("w", dst, off, src)

    def stxdw(self, dst: int, off: int, src: int) -> Assembler:
        return self.stx("dw", dst, off, src)

    def atomic(
        self, size: Union[str, int], op: str, dst: int, off: int, src: int, *, fetch: bool = False
    ) -> Assembler:
        """Atomic read-modify-write (see :func:`kprobes.bpf.insn.atomic`)."""
        return self.emit(I.atomic(size, op, dst, off, src, fetch=fetch))

    # ------------------------------------------------------------ 64-bit loads
    def ld_imm64(self, dst: int, value: int) -> Assembler:
        return self.emit(I.ld_imm64(dst, value))

    def ld_map_fd(self, dst: int, ref: Hashable) -> Assembler:
        """``dst = <map ref>``; the fd is patched in by :meth:`Program.resolve`."""
        self._relocs.append(Reloc(len(self._insns), ref, I.PSEUDO_MAP_FD, 0))
        return self.emit(I.ld_map_fd(dst, 0))

    def ld_map_value(self, dst: int, ref: Hashable, offset: int = 0) -> Assembler:
        """``dst = &value[0] + offset`` of an array map (Linux 5.2+)."""
        insn = I.ld_map_value(dst, 0, offset)
        self._relocs.append(Reloc(len(self._insns), ref, I.PSEUDO_MAP_VALUE, offset))
        return self.emit(insn)

    def ld_func(self, dst: int, target: Target) -> Assembler:
        """``dst = &subprogram`` at label ``target`` (for bpf_loop callbacks etc.)."""
        off = self._target(target, _FUNC)
        return self.emit(I.ld_func(dst, off))

    # ------------------------------------------------------------ assemble
    def assemble(self) -> Program:
        """Resolve every label and return the :class:`Program`."""
        insns = list(self._insns)
        end = self._pc
        for idx, name, kind in self._fixups:
            if name not in self._labels:
                raise BPFError(
                    f"jump to undefined label {name!r} (instruction {idx})",
                    hint="define it with a.label(...) before assembling",
                )
            target = self._labels[name]
            if target >= end:
                raise BPFError(
                    f"label {name!r} is at the end of the program: nothing to jump to",
                    hint="emit the code that follows the label (e.g. exit)",
                )
            rel = target - (self._pcs[idx] + 1)
            old = insns[idx]
            if kind == _OFF:
                if not (I.S16_MIN <= rel <= I.S16_MAX):
                    raise BPFError(
                        f"jump from instruction {idx} to label {name!r} spans {rel} slots, "
                        "beyond the signed 16-bit offset",
                        hint="shorten the code between them, or branch over a gotol "
                        "(32-bit offset, Linux 6.6+)",
                    )
                insns[idx] = old._replace(off=rel)
            elif kind == _IMM:
                insns[idx] = old._replace(imm=I._imm32(rel))
            else:
                insns[idx] = old._replace(imm=I._imm32(rel) & 0xFFFFFFFF)
        return Program(
            insns,
            self._relocs,
            self._labels,
            self._sources,
            self._notes,
            self.stack.high,
        )
