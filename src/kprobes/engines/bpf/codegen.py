"""Code generation: one probe of a checked bpftrace program -> one eBPF program.

Conventions of the generated code:

* ``r6`` holds the context (``struct pt_regs *`` for kprobes/uprobes, the raw
  record for tracepoints) for the whole program;
* an integer expression leaves its value in ``r0`` (64 bits; narrower C types
  are kept zero- or sign-extended, as :mod:`..evaluator` keeps them in their
  range); intermediate values are spilled to stack slots, so every helper call
  may clobber ``r0``-``r5`` freely;
* a string expression is written into a stack buffer of a known size, NUL
  padded to a multiple of 8 bytes (so buffers can be keys and records as is);
* ``$variables`` have fixed stack slots, zeroed at entry (they read as 0 or ""
  before assignment, as in the evaluator).

Integer semantics are the evaluator's (bpftrace 0.17's): ``/`` and ``%`` are
the unsigned BPF instructions (zero divisor: 0, resp. the dividend), ``>>`` is
logical, shifts take their count modulo 64, ``< <= > >=`` are signed only when
both operands are signed, casts truncate and re-extend.  Only ISA v1-v3
instructions are emitted (no ``sdiv``/``movsx``: Linux 6.1 has no ISA v4);
``avg`` reads divide signed by hand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

from ...bpf.asm import Assembler, Program
from ...bpf.helpers import Helper
from ...bpf.insn import R0, R1, R2, R3, R4, R5, R6, R7, R10, Reg
from ...bpf.maps import ANY, NOEXIST, MapType
from ...lang import ast
from ...lang.diagnostics import LangError
from ...lang.typesys import (
    AggType,
    FmtType,
    IntType,
    StackType,
    StringType,
    TupleType,
    Type,
)
from ..variant import plan_error
from .functions import INT_FUNCTIONS, FunctionOps, fmt_part
from .layout import KeyPart, tuple_parts
from .memory import MemoryOps
from .unit import MapPlan, Unit, part_of, part_of_type, round8, str_size, tuple_field

if TYPE_CHECKING:
    pass

__all__ = ["ProbeCodegen", "PT_REGS", "compile_probe"]

#: Offsets of registers in the ``struct pt_regs`` a KPROBE program gets as context.
PT_REGS: Dict[str, Dict[str, int]] = {
    "x86_64": {"r15": 0, "r14": 8, "r13": 16, "r12": 24, "bp": 32, "bx": 40, "r11": 48,
               "r10": 56, "r9": 64, "r8": 72, "ax": 80, "cx": 88, "dx": 96, "si": 104,
               "di": 112, "orig_ax": 120, "ip": 128, "cs": 136, "flags": 144, "sp": 152,
               "ss": 160},
    "arm64": dict([(f"x{i}", 8 * i) for i in range(31)] + [("sp", 248), ("pc", 256)]),
}
_M64 = (1 << 64) - 1
_CMP = {"==": ("jeq", "jeq"), "!=": ("jne", "jne"), "<": ("jlt", "jslt"), "<=": ("jle", "jsle"),
        ">": ("jgt", "jsgt"), ">=": ("jge", "jsge")}
_ALU = {"+": "add64", "-": "sub64", "*": "mul64", "/": "div64", "%": "mod64", "&": "and64",
        "|": "or64", "^": "xor64", "<<": "lsh64", ">>": "rsh64"}
_USER_FAMILIES = ("uprobe", "uretprobe", "usdt")
#: ``bpf_get_stackid`` flag: walk the user stack (uapi bpf.h ``BPF_F_USER_STACK``).
BPF_F_USER_STACK = 1 << 8


def _s32(v: int) -> Optional[int]:
    """``v`` (any int) as a sign-extendable 32-bit immediate, or None."""
    v &= _M64
    s = v - (1 << 64) if v >> 63 else v
    return s if -(1 << 31) <= s < (1 << 31) else None


def _literal(e: ast.Expr) -> Optional[int]:
    if isinstance(e, ast.IntLit):
        return e.value & _M64
    if isinstance(e, ast.Unary) and e.op == "-" and isinstance(e.operand, ast.IntLit):
        return (-e.operand.value) & _M64
    return None


def _signed(t: Type) -> bool:
    return isinstance(t, IntType) and t.signed


class ProbeCodegen(MemoryOps, FunctionOps):
    """Compiles one probe for one attach provider (see the module docstring).

    ``names`` are the ``(probe name, func)`` of its targets; ``target_base`` is the
    index of the first in the unit's global table; ``const_index`` fixes the
    target (one program per target) instead of reading the BPF cookie.
    """

    def __init__(
        self,
        unit: Unit,
        probe_index: int,
        provider: str,
        names: Sequence[Tuple[str, str]],
        *,
        arch: str = "x86_64",
        types: Optional[object] = None,
        target_base: int = 0,
        const_index: Optional[int] = None,
        tracepoint: Optional[Tuple[str, str]] = None,
        pid: int = 0,
        usdt: Optional[object] = None,
    ) -> None:
        self.unit = unit
        self.checked = unit.checked
        self.program = unit.checked.program
        self.probe = self.program.probes[probe_index]
        self.probe_index = probe_index
        self.provider = provider
        self.names = list(names)
        self.arch = arch
        self.types = types
        self.target_base = target_base
        self.const_index = const_index if const_index is not None else (0 if len(self.names) == 1 else None)
        self.tracepoint = tracepoint
        self.pid = pid
        #: usdt: the probe site (a UsdtProbe) whose notes say where argN are
        self.usdt = usdt
        self.a = Assembler()
        self.vars: Dict[str, Tuple[int, Type]] = {}
        #: The code emitted last jumped away for good (exit(), return): stop emitting.
        self.dead = False
        #: (continue label, break label) of the enclosing ``while`` loops, innermost last.
        self.loops: List[Tuple[str, str]] = []
        self._labels = 0
        self._lines = self.program.text.splitlines()

    # -- helpers ------------------------------------------------------------------
    def error(self, message: str, node: object) -> LangError:
        return plan_error(self.program, message, getattr(node, "span", None))

    def type_of(self, e: ast.Expr) -> Type:
        return self.checked.type_of(e)

    def tag(self, node: object) -> None:
        span = getattr(node, "span", None)
        if span is None:
            return
        line = self._lines[span.line - 1].strip() if 0 < span.line <= len(self._lines) else ""
        self.a.source(f"{span.line}: {line[:60]}")

    def label(self, stem: str) -> str:
        self._labels += 1
        return f".{stem}{self._labels}"

    def alloc(self, size: int, what: str = "") -> int:
        return self.a.stack.alloc(round8(max(size, 1)), 8, what)

    def fp(self, reg: Reg, off: int) -> None:
        """``reg = r10 + off``."""
        self.a.mov64(reg, R10).add64(reg, off)

    def zero(self, off: int, size: int) -> None:
        for i in range(0, round8(size), 8):
            self.a.st("dw", R10, off + i, 0)

    def load_const(self, reg: Reg, value: int) -> None:
        imm = _s32(value)
        if imm is not None:
            self.a.mov64(reg, imm)
        else:
            self.a.ld_imm64(reg, value & _M64)

    def normalize(self, reg: Reg, t: Type) -> None:
        """Keep ``reg`` in the range of ``t`` (zero- or sign-extend from its width)."""
        if not isinstance(t, IntType) or t.bits >= 64:
            return
        if t.signed:
            self.a.lsh64(reg, 64 - t.bits).arsh64(reg, 64 - t.bits)
        elif t.bits == 32:
            self.a.mov32(reg, reg)
        else:
            self.a.and64(reg, (1 << t.bits) - 1)

    def probe_read(self, user: bool, string: bool = False) -> int:
        caps = self.unit.caps
        if not caps.probe_read_kernel:
            return Helper.probe_read_str if string else Helper.probe_read
        if user:
            return Helper.probe_read_user_str if string else Helper.probe_read_user
        return Helper.probe_read_kernel_str if string else Helper.probe_read_kernel

    @property
    def user_memory(self) -> bool:
        """Pointers the program reads are user addresses (uprobes, syscall tracepoints)."""
        if self.provider in _USER_FAMILIES:
            return True
        return self.tracepoint is not None and self.tracepoint[0] == "syscalls"

    # -- entry ----------------------------------------------------------------------
    def compile(self) -> Program:
        a = self.a
        self.tag(self.probe.attach_points[0])
        a.mov64(R6, R1)
        for name, t in self.checked.probes[self.probe_index].variables.items():
            size = t.size if isinstance(t, (StringType, TupleType)) else 8
            if isinstance(t, FmtType):
                size = fmt_part(t).size
            off = self.alloc(size, f"${name}")
            self.vars[name] = (off, t)
            self.zero(off, size)
        if self.pid:
            a.call(Helper.get_current_pid_tgid).rsh64(R0, 32).jne(R0, self.pid, ".exit")
        if self.probe.predicate is not None:
            self.tag(self.probe.predicate)
            self.int_expr(self.probe.predicate)
            a.jeq(R0, 0, ".exit")
        self.block(self.probe.body)
        a.source(None)
        a.label(".exit").mov64(R0, 0).exit()
        return a.assemble()

    # -- statements -----------------------------------------------------------------
    def block(self, b: ast.Block) -> None:
        for st in b.stmts:
            if self.dead:
                break
            self.stmt(st)

    def stmt(self, st: ast.Stmt) -> None:
        self.tag(st)
        with self.a.stack.scope():
            if isinstance(st, ast.ExprStmt):
                if isinstance(st.expr, ast.Call):
                    self.call_stmt(st.expr)
                else:
                    self.int_or_str_discard(st.expr)
            elif isinstance(st, ast.AssignVar):
                self.assign_var(st)
            elif isinstance(st, ast.AssignMap):
                self.assign_map(st)
            elif isinstance(st, ast.If):
                self.if_stmt(st)
            elif isinstance(st, ast.Block):
                self.block(st)
            elif isinstance(st, ast.While):
                self.while_stmt(st)
            elif isinstance(st, ast.Unroll):
                n = st.count.value if isinstance(st.count, ast.IntLit) else 0
                for _ in range(n):
                    if self.dead:
                        break
                    self.block(st.body)
            elif isinstance(st, ast.Jump):
                cont, brk = self.loops[-1]
                self.a.ja(cont if st.kind == "continue" else brk)
                self.dead = True
            else:
                self.a.ja(".exit")
                self.dead = True

    def while_stmt(self, st: ast.While) -> None:
        """A bounded loop: a backward jump, which the verifier accepts from Linux 5.3 when it
        can bound the loop (bpftrace 0.17 emits the same; it adds no counter either)."""
        a = self.a
        top, end = self.label("while"), self.label("wend")
        a.label(top)
        self.int_expr(st.cond)
        a.jeq(R0, 0, end)
        self.loops.append((top, end))
        self.block(st.body)
        self.loops.pop()
        if not self.dead:
            a.ja(top)
        self.dead = False
        a.label(end)

    def int_or_str_discard(self, e: ast.Expr) -> None:
        t = self.type_of(e)
        if isinstance(t, FmtType):
            return  # a formatted value nobody prints
        if isinstance(t, StringType):
            off = self.alloc(t.size)
            self.str_expr(e, off, t.size)
        else:
            self.int_expr(e)

    def if_stmt(self, st: ast.If) -> None:
        a = self.a
        els, end = self.label("else"), self.label("endif")
        self.int_expr(st.cond)
        a.jeq(R0, 0, els)
        self.block(st.then)
        then_dead = self.dead
        if not then_dead:
            a.ja(end)
        a.label(els)
        self.dead = False
        if isinstance(st.orelse, ast.If):
            self.tag(st.orelse)
            self.if_stmt(st.orelse)
        elif st.orelse is not None:
            self.block(st.orelse)
        self.dead = then_dead and self.dead
        a.label(end)

    def assign_var(self, st: ast.AssignVar) -> None:
        off, t = self.vars[st.target.name]
        if isinstance(t, TupleType):
            self.tuple_into(st.value, off, part_of_type(t))
            return
        if isinstance(t, FmtType):
            self.fmt_value(st.value, off, fmt_part(t))
            return
        if isinstance(t, StringType):
            if st.op != "=":
                raise self.error("compound assignment to a string", st)
            self.str_expr(st.value, off, t.size)
            return
        if st.op == "=":
            self.int_expr(st.value)
            self.a.stx("dw", R10, off, R0)
            return
        op = ast.COMPOUND_OPS[st.op]
        self.binop_into(op, lambda: self.a.ldx("dw", R0, R10, off), st.value,
                        t, self.type_of(st.value))
        self.a.stx("dw", R10, off, R0)

    # -- tuples -----------------------------------------------------------------------
    def tuple_into(self, e: ast.Expr, off: int, part: KeyPart) -> None:
        """Write the tuple ``e`` as ``part`` (its elements packed, see layout.tuple_parts)."""
        a = self.a
        parts = tuple_parts(part.field)
        if isinstance(e, ast.Tuple):
            for (sub, soff), x in zip(parts, e.elems):
                self.pack(sub, x, off + soff)
            return
        if isinstance(e, ast.Ternary):
            els, end = self.label("tf"), self.label("te")
            self.int_expr(e.cond)
            a.jeq(R0, 0, els)
            self.tuple_into(e.then, off, part)
            a.ja(end).label(els)
            self.tuple_into(e.orelse, off, part)
            a.label(end)
            return
        t = self.type_of(e)
        if not isinstance(t, TupleType):
            raise self.error("not a tuple", e)
        src = tuple_parts(tuple_field(t))
        if isinstance(e, ast.Var):
            voff, _vt = self.vars[e.name]
            self.copy_tuple(R10, voff, src, off, parts)
            return
        if isinstance(e, ast.Map):
            mp = self.mplan(e)
            miss, done = self.label("tm"), self.label("tmd")
            with a.stack.scope():
                koff = self.key(mp, e.keys)
                self.lookup(mp, koff)
            a.jeq(R0, 0, miss)
            self.copy_tuple(R0, 0, src, off, parts)
            a.ja(done).label(miss)
            self.zero(off, part.size)
            a.label(done)
            return
        raise self.error("this tuple expression is not supported by the BPF engine", e)

    def copy_tuple(self, src: Reg, soff: int, sparts: Sequence[Tuple[KeyPart, int]], off: int,
                   parts: Sequence[Tuple[KeyPart, int]]) -> None:
        """Copy a packed tuple at ``src+soff`` into ``r10+off``, element by element (string
        buffers of the two layouts may differ in size)."""
        for (sp, so), (dp, do) in zip(sparts, parts):
            if dp.kind == "str":
                self.copy_str(src, soff + so, str_size(sp), off + do, str_size(dp))
            else:
                self.a.ldx("dw", R1, src, soff + so).stx("dw", R10, off + do, R1)

    def tuple_elem(self, e: ast.TupleIndex, off: Optional[int] = None, size: int = 0) -> None:
        """``e.N``: an integer element into ``r0`` (``off`` None), a string into ``r10+off``."""
        a = self.a
        base = e.expr
        if isinstance(base, ast.Tuple):
            elem = base.elems[e.index]
            if off is None:
                self.int_expr(elem)
            else:
                self.str_expr(elem, off, size)
            return
        t = self.type_of(base)
        if not isinstance(t, TupleType):
            raise self.error("not a tuple", e)
        sub, soff = tuple_parts(tuple_field(t))[e.index]
        with a.stack.scope():
            if isinstance(base, ast.Var):
                boff = self.vars[base.name][0]
            else:
                boff = self.alloc(t.size, "tuple")
                self.tuple_into(base, boff, part_of_type(t))
            if off is None:
                a.ldx("dw", R0, R10, boff + soff)
            else:
                self.copy_str(R10, boff + soff, str_size(sub), off, size)

    # -- maps -------------------------------------------------------------------------
    def mplan(self, m: ast.Map) -> MapPlan:
        return self.unit.maps[m.name]

    def key(self, mp: MapPlan, keys: Sequence[ast.Expr]) -> int:
        """Build ``mp``'s key from ``keys`` on the stack; returns its offset."""
        off = self.alloc(mp.key.size, f"key of @{mp.name}")
        if not mp.key.parts:
            self.a.st("dw", R10, off, 0)
            return off
        self.zero(off, mp.key.size)
        for part, poff, e in zip(mp.key.parts, mp.key.offsets(), keys):
            self.pack(part, e, off + poff)
        return off

    def pack(self, part: KeyPart, e: ast.Expr, off: int) -> None:
        """Write ``e`` as ``part`` at ``r10 + off``."""
        if part.kind == "tuple":
            self.tuple_into(e, off, part)
            return
        if part.kind == "str":
            self.str_expr(e, off, str_size(part))
            return
        if part.kind == "fmt":
            self.fmt_value(e, off, part)
            return
        if part.kind == "target":
            self.target_index()
        elif part.kind == "ksym" and isinstance(e, ast.Call) and e.name == "ksym":
            self.int_expr(e.args[0])
        elif part.kind == "usym":
            self.int_expr(e.args[0] if isinstance(e, ast.Call) and e.name == "usym" else e)
            self.a.stx("dw", R10, off, R0)
            self.a.call(Helper.get_current_pid_tgid).rsh64(R0, 32)
            self.a.stx("dw", R10, off + 8, R0)
            return
        else:
            self.int_expr(e)
        self.a.stx("dw", R10, off, R0)

    def target_index(self) -> None:
        if self.const_index is not None:
            self.load_const(R0, self.target_base + self.const_index)
            return
        self.a.mov64(R1, R6).call(Helper.get_attach_cookie)
        if self.target_base:
            self.a.add64(R0, self.target_base)

    def lookup(self, mp: MapPlan, key_off: int) -> None:
        self.a.ld_map_fd(R1, mp.spec)
        self.fp(R2, key_off)
        self.a.call(Helper.map_lookup_elem)

    def lookup_or_init(self, mp: MapPlan, key_off: int) -> None:
        """``r0`` = the value at the key, created zeroed when missing (exit when the map is full)."""
        a = self.a
        have = self.label("have")
        self.lookup(mp, key_off)
        a.jne(R0, 0, have)
        size = mp.value.size
        if size <= 128:
            zoff = self.alloc(size, "zero value")
            self.zero(zoff, size)
            a.ld_map_fd(R1, mp.spec)
            self.fp(R2, key_off)
            self.fp(R3, zoff)
        else:
            zspec = self.unit.zeros_map()
            zkey = self.alloc(4)
            a.st("w", R10, zkey, 0)
            a.ld_map_fd(R1, zspec)
            self.fp(R2, zkey)
            a.call(Helper.map_lookup_elem)
            a.jeq(R0, 0, ".exit")
            a.mov64(R3, R0)
            a.ld_map_fd(R1, mp.spec)
            self.fp(R2, key_off)
        a.mov64(R4, NOEXIST)
        a.call(Helper.map_update_elem)
        self.lookup(mp, key_off)
        a.jeq(R0, 0, ".exit")
        a.label(have)

    def assign_map(self, st: ast.AssignMap) -> None:
        a = self.a
        mp = self.mplan(st.target)
        v = st.value
        kind = mp.value.kind
        if st.op == "=" and isinstance(v, ast.Call) and isinstance(self.type_of(v), AggType):
            voff = self.alloc(8, "agg value")
            if v.name != "count":
                self.int_expr(v.args[0])
                a.stx("dw", R10, voff, R0)
            koff = self.key(mp, st.target.keys)
            self.lookup_or_init(mp, koff)
            self.aggregate(mp, v.name, voff)
            return
        koff = self.key(mp, st.target.keys)
        if kind == "str":
            voff = self.alloc(mp.value.size, "value")
            self.str_expr(v, voff, mp.value.str_size)
        elif kind == "tuple":
            voff = self.alloc(mp.value.size, "value")
            self.tuple_into(v, voff, KeyPart("tuple", mp.value.size, field=mp.value.tuple_field))
        elif kind == "int":
            voff = self.alloc(8, "value")
            if st.op == "=":
                self.int_expr(v)
            else:
                mt = self.checked.maps[st.target.name].value_type
                self.binop_into(ast.COMPOUND_OPS[st.op], lambda: self.map_value(mp, koff),
                                v, mt, self.type_of(v))
            a.stx("dw", R10, voff, R0)
        else:
            raise self.error(f"assigning to a {kind}() map", st)
        a.ld_map_fd(R1, mp.spec)
        self.fp(R2, koff)
        self.fp(R3, voff)
        a.mov64(R4, ANY)
        a.call(Helper.map_update_elem)

    def aggregate(self, mp: MapPlan, fn: str, voff: int) -> None:
        """Update the value ``r0`` points to with the value at ``voff`` (r0 stays the pointer)."""
        a = self.a
        if fn == "count":
            a.ldx("dw", R1, R0, 0).add64(R1, 1).stx("dw", R0, 0, R1)
            return
        a.ldx("dw", R2, R10, voff)
        if fn == "sum":
            a.ldx("dw", R1, R0, 0).add64(R1, R2).stx("dw", R0, 0, R1)
        elif fn in ("avg", "stats"):
            a.ldx("dw", R1, R0, 0).add64(R1, 1).stx("dw", R0, 0, R1)
            a.ldx("dw", R1, R0, 8).add64(R1, R2).stx("dw", R0, 8, R1)
        elif fn in ("min", "max"):
            store, skip = self.label("set"), self.label("keep")
            a.ldx("dw", R1, R0, 8).jeq(R1, 0, store)
            a.ldx("dw", R1, R0, 0)
            signed = mp.value.signed
            # keep the old value unless the new one is better
            if fn == "min":
                a.jcond("jsge" if signed else "jge", R2, R1, skip)
            else:
                a.jcond("jsle" if signed else "jle", R2, R1, skip)
            a.label(store)
            a.stx("dw", R0, 0, R2).st("dw", R0, 8, 1)
            a.label(skip)
        elif fn == "hist":
            self.log2_index(R2, R1)
            self.bump_slot(R1, 64)
        elif fn == "lhist":
            assert mp.value.lhist is not None
            lo, hi, step = mp.value.lhist
            nb = (hi - lo) // step
            below, above, done = self.label("below"), self.label("above"), self.label("lh")
            self.load_const(R3, lo)
            a.jslt(R2, R3, below)
            self.load_const(R3, hi)
            a.jsgt(R2, R3, above)
            a.mov64(R1, R2)
            if lo:
                self.load_const(R3, lo)
                a.sub64(R1, R3)
            self.load_const(R3, step)
            a.div64(R1, R3).add64(R1, 1).ja(done)
            a.label(below).mov64(R1, 0).ja(done)
            a.label(above).mov64(R1, nb + 1)
            a.label(done)
            self.bump_slot(R1, nb + 1)
        else:  # pragma: no cover - the checker knows every aggregation
            raise self.error(f"{fn}() is not supported by the BPF engine", None)

    def bump_slot(self, idx: Reg, last: int) -> None:
        """``((u64 *)r0)[idx] += 1`` with ``idx`` checked against ``last`` for the verifier."""
        a = self.a
        skip = self.label("oob")
        a.jgt(idx, last, skip)
        a.lsh64(idx, 3).mov64(R3, R0).add64(R3, idx)
        a.ldx("dw", R4, R3, 0).add64(R4, 1).stx("dw", R3, 0, R4)
        a.label(skip)

    def log2_index(self, v: Reg, out: Reg) -> None:
        """``out`` = hist() bucket of the signed value in ``v`` (clobbers v, r3)."""
        a = self.a
        neg, zero, done = self.label("neg"), self.label("zero"), self.label("l2")
        a.jslt(v, 0, neg).jeq(v, 0, zero)
        a.mov64(out, 2)
        for shift in (32, 16, 8, 4, 2, 1):
            nxt = self.label("b")
            a.mov64(R3, v).rsh64(R3, shift).jeq(R3, 0, nxt)
            a.mov64(v, R3).add64(out, shift)
            a.label(nxt)
        a.ja(done)
        a.label(neg).mov64(out, 0).ja(done)
        a.label(zero).mov64(out, 1)
        a.label(done)

    def map_value(self, mp: MapPlan, key_off: int) -> None:
        """``r0`` = the integer value at the key (0 when absent), as an expression reads it."""
        a = self.a
        miss, done = self.label("miss"), self.label("mv")
        self.lookup(mp, key_off)
        a.jeq(R0, 0, miss)
        kind = mp.value.kind
        if kind in ("avg", "stats"):
            a.ldx("dw", R1, R0, 0).ldx("dw", R2, R0, 8)
            a.jeq(R1, 0, miss)
            pos = self.label("pos")
            a.mov64(R3, 0).jsge(R2, 0, pos).neg64(R2).mov64(R3, 1)
            a.label(pos).div64(R2, R1).mov64(R0, R2)
            a.jeq(R3, 0, done).neg64(R0).ja(done)
        elif kind in ("hist", "lhist", "str"):
            raise self.error(f"a {kind}() map cannot be read as an integer", None)
        else:
            a.ldx("dw", R0, R0, 0).ja(done)
        a.label(miss).mov64(R0, 0)
        a.label(done)

    # -- integer expressions --------------------------------------------------------------
    def int_expr(self, e: ast.Expr) -> None:  # noqa: C901 - one dispatch over node types
        a = self.a
        lit = _literal(e)
        if lit is not None:
            self.load_const(R0, lit)
            return
        if isinstance(e, ast.Builtin):
            self.builtin(e)
        elif isinstance(e, ast.Var):
            off, _t = self.vars[e.name]
            a.ldx("dw", R0, R10, off)
        elif isinstance(e, ast.Map):
            mp = self.mplan(e)
            with a.stack.scope():
                koff = self.key(mp, e.keys)
                self.map_value(mp, koff)
        elif isinstance(e, ast.Binary):
            self.binary(e)
        elif isinstance(e, ast.Unary):
            self.unary(e)
        elif isinstance(e, ast.Ternary):
            els, end = self.label("tf"), self.label("te")
            self.int_expr(e.cond)
            a.jeq(R0, 0, els)
            self.int_expr(e.then)
            a.ja(end).label(els)
            self.int_expr(e.orelse)
            a.label(end)
        elif isinstance(e, ast.Cast):
            self.int_expr(e.expr)
            if e.type.kind == "int" and e.type.pointer == 0:
                self.normalize(R0, IntType(e.type.bits, e.type.signed))
        elif isinstance(e, ast.IncDec):
            self.incdec(e)
        elif isinstance(e, ast.TupleIndex):
            self.tuple_elem(e)
        elif isinstance(e, (ast.FieldAccess, ast.Index)):
            self.member_value(e)
        elif isinstance(e, ast.Call):
            self.call_expr(e)
        else:
            raise self.error(f"this expression is not supported by the BPF engine ({type(e).__name__})", e)

    def builtin(self, e: ast.Builtin) -> None:
        a = self.a
        n = e.name
        idx = e.arg_index
        if idx is not None and self.usdt is not None:
            from .usdt import emit_usdt_arg

            emit_usdt_arg(self, self.usdt, idx, e)  # type: ignore[arg-type]
        elif idx is not None and self.provider == "rawtracepoint":
            a.ldx("dw", R0, R6, 8 * idx)  # slot idx of the u64 argument array
        elif idx is not None:
            reg = _ARG_REGS.get(self.arch, ())
            if idx >= len(reg):
                raise self.error(f"{n} is not in a register on {self.arch}", e)
            a.ldx("dw", R0, R6, PT_REGS[self.arch][reg[idx]])
        elif n == "retval" and self.provider == "kretfunc":
            a.ldx("dw", R0, R6, 8 * len(self.function_args(e)[0]))  # after the arguments
            self.normalize(R0, self.type_of(e))
        elif n == "retval":
            a.ldx("dw", R0, R6, PT_REGS[self.arch]["ax" if self.arch == "x86_64" else "x0"])
        elif n in ("pid", "tid"):
            a.call(Helper.get_current_pid_tgid)
            if n == "pid":
                a.rsh64(R0, 32)
            else:
                a.mov32(R0, R0)
        elif n in ("uid", "gid"):
            a.call(Helper.get_current_uid_gid)
            if n == "gid":
                a.rsh64(R0, 32)
            else:
                a.mov32(R0, R0)
        elif n == "nsecs":
            a.call(Helper.ktime_get_ns)
        elif n == "elapsed":
            g = self.unit.globals_map()
            with a.stack.scope():
                k = self.alloc(4)
                a.st("w", R10, k, 0)
                a.ld_map_fd(R1, g)
                self.fp(R2, k)
                a.call(Helper.map_lookup_elem)
                a.mov64(R7, 0).jeq(R0, 0, ".exit")
                a.ldx("dw", R7, R0, 0)
                a.call(Helper.ktime_get_ns)
                a.sub64(R0, R7)
        elif n == "cpu":
            a.call(Helper.get_smp_processor_id)
        elif n in ("probe", "func"):
            self.target_index()
        elif n in ("kstack", "ustack"):
            t = self.type_of(e)
            self.stack_id(t if isinstance(t, StackType) else StackType(user=n == "ustack"))
        elif n == "curtask":
            a.call(Helper.get_current_task)
        elif n == "rand":
            a.call(Helper.get_prandom_u32)
            a.mov32(R0, R0)
        elif n == "cgroup":
            a.call(Helper.get_current_cgroup_id)
        elif n == "cpid":  # slot 1 of the globals, written before the -c command runs
            g = self.unit.globals_map()
            with a.stack.scope():
                k = self.alloc(4)
                a.st("w", R10, k, 0)
                a.ld_map_fd(R1, g)
                self.fp(R2, k)
                a.call(Helper.map_lookup_elem)
                a.jeq(R0, 0, ".exit")
                a.ldx("dw", R0, R0, 8)
        elif n == "numaid":
            a.call(Helper.get_numa_node_id)
        elif n.startswith("sarg"):
            self.sarg(e)
        else:
            raise self.error(f"the {n} builtin is not supported by the BPF engine", e)

    def stack_id(self, t: StackType) -> None:
        """``r0`` = the stack key: ``bpf_get_stackid`` (user stacks: id | tgid << 32)."""
        a = self.a
        a.mov64(R1, R6).ld_map_fd(R2, self.unit.stack_map(t.limit))
        a.mov64(R3, BPF_F_USER_STACK if t.user else 0)
        a.call(Helper.get_stackid)
        if t.user:
            a.mov64(R7, R0)
            a.call(Helper.get_current_pid_tgid)
            a.rsh64(R0, 32).lsh64(R0, 32)
            a.mov32(R7, R7).or64(R0, R7)

    def binop_into(self, op: str, left: object, right: ast.Expr, lt: Type, rt: Type) -> None:
        """``r0 = <left> OP right``; ``left`` emits code leaving the left value in r0."""
        a = self.a
        lit = _literal(right)
        if lit is not None:
            left()  # type: ignore[operator]
            self.load_const(R1, lit if op not in ("<<", ">>") else lit & 63)
        else:
            with a.stack.scope():
                tmp = self.alloc(8, "lhs")
                left()  # type: ignore[operator]
                a.stx("dw", R10, tmp, R0)
                self.int_expr(right)
                a.mov64(R1, R0).ldx("dw", R0, R10, tmp)
        self.apply(op, lt, rt)

    def apply(self, op: str, lt: Type, rt: Type) -> None:
        """``r0 = r0 OP r1``."""
        a = self.a
        if op in _ALU:
            if op in ("<<", ">>"):
                a.and64(R1, 63)
            getattr(a, _ALU[op])(R0, R1)
            return
        unsigned, signed = _CMP[op]
        jop = signed if _signed(lt) and _signed(rt) else unsigned
        t = self.label("t")
        a.mov64(R2, R0).mov64(R0, 1)
        a.jcond(jop, R2, R1, t)
        a.mov64(R0, 0)
        a.label(t)

    def binary(self, e: ast.Binary) -> None:
        a = self.a
        op = e.op
        if op in ("&&", "||"):
            short, end = self.label("sc"), self.label("se")
            self.int_expr(e.left)
            if op == "&&":
                a.jeq(R0, 0, short)
                self.int_expr(e.right)
                a.jeq(R0, 0, short).mov64(R0, 1).ja(end)
                a.label(short).mov64(R0, 0)
            else:
                a.jne(R0, 0, short)
                self.int_expr(e.right)
                a.jne(R0, 0, short).mov64(R0, 0).ja(end)
                a.label(short).mov64(R0, 1)
            a.label(end)
            return
        lt, rt = self.type_of(e.left), self.type_of(e.right)
        if isinstance(lt, StringType) or isinstance(rt, StringType):
            self.str_compare(e)
            return
        self.binop_into(op, lambda: self.int_expr(e.left), e.right, lt, rt)

    def unary(self, e: ast.Unary) -> None:
        a = self.a
        if e.op == "*":
            self.member_value(e)
            return
        if e.op == "&":
            self.address(e.operand)
            return
        self.int_expr(e.operand)
        if e.op == "-":
            a.neg64(R0)
        elif e.op == "~":
            a.xor64(R0, -1)
        elif e.op == "!":
            t = self.label("not")
            a.mov64(R1, R0).mov64(R0, 1).jeq(R1, 0, t).mov64(R0, 0).label(t)

    def incdec(self, e: ast.IncDec) -> None:
        a = self.a
        delta = 1 if e.op == "++" else -1
        target = e.target
        t = self.type_of(e)
        if isinstance(target, ast.Var):
            off, vt = self.vars[target.name]
            a.ldx("dw", R0, R10, off).mov64(R7, R0).add64(R0, delta)
            self.normalize(R0, t if isinstance(t, IntType) else vt)
            a.stx("dw", R10, off, R0)
            if not e.prefix:
                a.mov64(R0, R7)
            return
        assert isinstance(target, ast.Map)
        mp = self.mplan(target)
        with a.stack.scope():
            koff = self.key(mp, target.keys)
            old = self.alloc(8)
            self.map_value(mp, koff)
            a.stx("dw", R10, old, R0).add64(R0, delta)
            new = self.alloc(8)
            a.stx("dw", R10, new, R0)
            a.ld_map_fd(R1, mp.spec)
            self.fp(R2, koff)
            self.fp(R3, new)
            a.mov64(R4, ANY).call(Helper.map_update_elem)
            a.ldx("dw", R0, R10, new if e.prefix else old)

    # -- calls ----------------------------------------------------------------------------------
    def call_expr(self, e: ast.Call) -> None:
        if e.name in ("ksym", "usym"):
            self.int_expr(e.args[0])
            return
        if e.name in ("kstack", "ustack"):
            t = self.type_of(e)
            self.stack_id(t if isinstance(t, StackType) else StackType(user=e.name == "ustack"))
            return
        if e.name == "str":
            raise self.error("str() used as an integer", e)
        if e.name in INT_FUNCTIONS:
            self.int_function(e)
            return
        self.call_stmt(e)
        self.a.mov64(R0, 0)

    def call_stmt(self, e: ast.Call) -> None:
        a = self.a
        name = e.name
        src = self.snippet(e)
        if name == "printf":
            fmt = e.args[0]
            assert isinstance(fmt, ast.StrLit)
            parts = tuple(part_of(self.checked, x) for x in e.args[1:])
            rec = self.unit.record("printf", parts, text=fmt.value, source=src)
            self.emit_record(rec.id, list(zip(parts, e.args[1:])), rec.size)
        elif name == "time":
            text = e.args[0].value if e.args and isinstance(e.args[0], ast.StrLit) else None
            rec = self.unit.record("time", text=text, source=src)
            self.emit_record(rec.id, [], rec.size)
        elif name == "exit":
            rec = self.unit.record("exit", source=src)
            self.emit_record(rec.id, [], rec.size)
            a.ja(".exit")
            self.dead = True
        elif name == "print":
            arg = e.args[0]
            if isinstance(arg, ast.Map) and not arg.indexed:
                lits = [_literal(x) or 0 for x in e.args[1:]]
                rec = self.unit.record("print_map", map=arg.name, top=lits[0] if lits else 0,
                                       div=lits[1] if len(lits) > 1 else 1, source=src)
                self.emit_record(rec.id, [], rec.size)
            else:
                part = part_of(self.checked, arg)
                rec = self.unit.record("print_value", (part,), source=src)
                self.emit_record(rec.id, [(part, arg)], rec.size)
        elif name in ("clear", "zero"):
            m = e.args[0]
            assert isinstance(m, ast.Map)
            rec = self.unit.record(name, map=m.name, source=src)
            self.emit_record(rec.id, [], rec.size)
        elif name == "delete":
            m = e.args[0]
            assert isinstance(m, ast.Map)
            mp = self.mplan(m)
            keys = (e.args[1],) if len(e.args) == 2 else m.keys
            with a.stack.scope():
                koff = self.key(mp, keys)
                a.ld_map_fd(R1, mp.spec)
                self.fp(R2, koff)
                a.call(Helper.map_delete_elem)
        elif name in ("str", "ksym", "usym", "kstack", "ustack"):
            self.int_or_str_discard(e)
        elif self.function_stmt(e):
            pass
        else:
            raise self.error(f"{name}() is not supported by the BPF engine yet", e)

    def snippet(self, node: object) -> str:
        span = getattr(node, "span", None)
        if span is None:
            return ""
        return " ".join(self.program.text[span.start:span.end].split())[:80]

    def emit_record(self, rid: int, args: List[Tuple[KeyPart, ast.Expr]], size: int) -> None:
        """Build the record ``id, args...`` on the stack and send it to the ring."""
        a = self.a
        with a.stack.scope():
            off = self.alloc(size, "output record")
            self.load_const(R1, rid)
            a.stx("dw", R10, off, R1)
            pos = off + 8
            for part, e in args:
                self.pack(part, e, pos)
                pos += part.size
            self.send_record(off, size)

    def send_record(self, off: int, size: int) -> None:
        """Send the ``size`` bytes at ``r10 + off`` to the output ring (count a failure)."""
        a = self.a
        unit = self.unit
        with a.stack.scope():
            ring = unit.ring_map()
            if ring.type == MapType.RINGBUF:
                a.ld_map_fd(R1, ring)
                self.fp(R2, off)
                a.mov64(R3, size).mov64(R4, 0).call(Helper.ringbuf_output)
            else:
                a.mov64(R1, R6).ld_map_fd(R2, ring)
                a.ld_imm64(R3, 0xFFFFFFFF)
                self.fp(R4, off)
                a.mov64(R5, size).call(Helper.perf_event_output)
            ok = self.label("sent")
            a.jeq(R0, 0, ok)
            k = self.alloc(4)
            a.st("w", R10, k, 0).ld_map_fd(R1, unit.drops_map())
            self.fp(R2, k)
            a.call(Helper.map_lookup_elem).jeq(R0, 0, ok)
            a.ldx("dw", R1, R0, 0).add64(R1, 1).stx("dw", R0, 0, R1)
            a.label(ok)


_ARG_REGS = {"x86_64": ("di", "si", "dx", "cx", "r8", "r9"),
             "arm64": ("x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7")}


def compile_probe(unit: Unit, probe_index: int, provider: str, names: Sequence[Tuple[str, str]],
                  **kw: object) -> Program:
    """Compile one probe (see :class:`ProbeCodegen`)."""
    return ProbeCodegen(unit, probe_index, provider, names, **kw).compile()  # type: ignore[arg-type]
