"""Memory and strings for :mod:`.codegen`: struct members through BTF, pointers, string buffers.

:class:`MemoryOps` is mixed into :class:`~.codegen.ProbeCodegen`; it relies on
the code generator's state and helpers declared below (same conventions: ``r0``
for integers, NUL-padded stack buffers for strings, ``r6`` the context).

* ``a->b.c``: the address of ``a->b`` plus the member offset (BTF, through the
  type provider), then one ``probe_read_kernel`` (uprobes: ``probe_read_user``)
  of the member's size per pointer hop;
* tracepoint ``args.x``: direct context loads at the format file's offset;
* ``str(p)``: ``probe_read_{kernel,user}_str`` into a zeroed buffer; a kernel
  read that fails is retried as a user read (``do_sys_openat2``'s filename is a
  user pointer in a kprobe: bpftrace 0.17 prints nothing there);
* string ``==``/``!=``: strncmp over the smaller buffer, unrolled (against a
  literal: one compare per byte of the literal).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from ...bpf.asm import Assembler
from ...bpf.helpers import Helper
from ...bpf.insn import R0, R1, R2, R3, R6, R10, Reg
from ...lang import ast
from ...lang.checked import CheckedProgram
from ...lang.diagnostics import LangError
from ...lang.typesys import ArrayType, IntType, PointerType, RecordType, StringType, Type
from .unit import MapPlan, Unit, round8

if TYPE_CHECKING:
    from ...lang.provider import MemberInfo

__all__ = ["MemoryOps"]

_M64 = (1 << 64) - 1


def _literal(e: ast.Expr) -> Optional[int]:
    if isinstance(e, ast.IntLit):
        return e.value & _M64
    if isinstance(e, ast.Unary) and e.op == "-" and isinstance(e.operand, ast.IntLit):
        return (-e.operand.value) & _M64
    return None


class MemoryOps:
    """Members, pointers and strings, mixed into the code generator."""

    a: Assembler
    unit: Unit
    checked: CheckedProgram
    types: Optional[object]
    tracepoint: Optional[Tuple[str, str]]
    provider: str
    names: List[Tuple[str, str]]
    const_index: Optional[int]
    vars: Dict[str, Tuple[int, Type]]

    # Provided by the code generator.
    def error(self, message: str, node: object) -> LangError:
        raise NotImplementedError

    def type_of(self, e: ast.Expr) -> Type:
        raise NotImplementedError

    def label(self, stem: str) -> str:
        raise NotImplementedError

    def alloc(self, size: int, what: str = "") -> int:
        raise NotImplementedError

    def fp(self, reg: Reg, off: int) -> None:
        raise NotImplementedError

    def zero(self, off: int, size: int) -> None:
        raise NotImplementedError

    def load_const(self, reg: Reg, value: int) -> None:
        raise NotImplementedError

    def normalize(self, reg: Reg, t: Type) -> None:
        raise NotImplementedError

    def probe_read(self, user: bool, string: bool = False) -> int:
        raise NotImplementedError

    @property
    def user_memory(self) -> bool:
        raise NotImplementedError

    def int_expr(self, e: ast.Expr) -> None:
        raise NotImplementedError

    def user_pointer(self, e: ast.Expr) -> bool:
        """Whether the object ``e`` names lives in user memory: as :attr:`user_memory`
        says for this probe, except below ``curtask`` (``((struct task_struct *)curtask)->
        pid`` is kernel memory in a uprobe or a syscall tracepoint too, as in bpftrace)."""
        return False if _kernel_rooted(e, self.kernel_vars()) else self.user_memory

    def kernel_vars(self) -> "frozenset[str]":
        """``$vars`` every assignment of which in this probe is below ``curtask``."""
        cached: Optional[frozenset[str]] = getattr(self, "_kernel_vars", None)
        if cached is not None:
            return cached
        assigns: Dict[str, List[ast.Expr]] = {}
        for node in ast.walk(getattr(self, "probe", None)):
            if isinstance(node, ast.AssignVar):
                assigns.setdefault(node.target.name, []).append(node.value)
        found: frozenset[str] = frozenset()
        while True:  # $a = curtask-rooted; $b = $a->x: until nothing more is found
            more = frozenset(n for n, vals in assigns.items()
                             if all(_kernel_rooted(v, found) for v in vals))
            if more == found:
                break
            found = more
        self._kernel_vars = found
        return found

    def mplan(self, m: ast.Map) -> MapPlan:
        raise NotImplementedError

    def key(self, mp: MapPlan, keys: "List[ast.Expr] | Tuple[ast.Expr, ...]") -> int:
        raise NotImplementedError

    def lookup(self, mp: MapPlan, key_off: int) -> None:
        raise NotImplementedError

    def tuple_elem(self, e: ast.TupleIndex, off: Optional[int] = None, size: int = 0) -> None:
        raise NotImplementedError

    # -- struct members and pointers ---------------------------------------------------------
    def members(self, rec: RecordType, node: object) -> Dict[str, "MemberInfo"]:
        got = None
        if self.types is not None:
            got = self.types.struct_members(rec.name)  # type: ignore[attr-defined]
        if got is None:
            raise self.error(f"no type information for {rec.name}", node)
        return dict(got)

    def sizeof(self, t: Type, node: object) -> int:
        if isinstance(t, IntType):
            return t.bits // 8
        if isinstance(t, PointerType):
            return 8
        if isinstance(t, StringType):
            return t.size
        if isinstance(t, ArrayType):
            return self.sizeof(t.elem, node) * t.count
        raise self.error(f"the size of {t} is not known to the BPF engine", node)

    def is_args(self, e: ast.Expr) -> bool:
        return isinstance(e, ast.Builtin) and e.name == "args"

    def function_args(self, node: object) -> Tuple[Dict[str, "MemberInfo"], Type]:
        """kfunc/kretfunc: the function's parameters (offset 8*i in the u64 context array)
        and return type, from the type provider's BTF."""
        get = getattr(self.types, "function_args", None)
        got = get(self.names[0][1]) if get is not None and self.names else None
        if got is None:
            raise self.error(f"no BTF type information for function "
                             f"'{self.names[0][1] if self.names else '?'}'", node)
        return dict(got[0]), got[1]

    def ctx_arg(self, e: ast.FieldAccess, t: Type) -> None:
        """``r0`` = kfunc parameter ``args->NAME``: one u64 load from the context array."""
        m = self.function_args(e)[0].get(e.field)
        if m is None:
            raise self.error(f"Can't find function parameter {e.field}", e)
        if isinstance(t, (StringType, ArrayType, RecordType)):
            raise self.error(f"args->{e.field} is passed by value ({t}), which the BPF engine "
                             "cannot read yet", e)
        self.a.ldx("dw", R0, R6, m.offset)
        self.normalize(R0, t)

    def tp_field(self, e: ast.FieldAccess, dynamic_ok: bool = False) -> "MemberInfo":
        """The tracepoint field ``args.NAME`` (a ``__data_loc`` one only where
        ``dynamic_ok``: see :meth:`tp_is_dynamic`)."""
        if self.tracepoint is None or self.types is None:
            raise self.error("args needs a tracepoint's format", e)
        fields = self.types.tracepoint_fields(*self.tracepoint)  # type: ignore[attr-defined]
        if not fields or e.field not in fields:
            raise self.error(f"no field {e.field} in tracepoint {':'.join(self.tracepoint)}", e)
        f = fields[e.field]
        if not dynamic_ok and self.tp_is_dynamic(e):
            raise self.error(f"args.{e.field} is a dynamic (__data_loc) field: only its string "
                             "value can be read", e)
        return f  # type: ignore[no-any-return]

    def tp_is_dynamic(self, e: ast.FieldAccess) -> bool:
        """``__data_loc`` / ``__rel_loc`` field: the record holds a u32, (length << 16) |
        offset of the data (from the record's start; ``__rel_loc``: from the field's end)."""
        return self.tp_dynamic_base(e) is not None

    def tp_dynamic_base(self, e: ast.FieldAccess) -> Optional[int]:
        """What the data offset of a dynamic field is added to, besides ctx (None: not dynamic)."""
        raw = getattr(self.types, "tracepoint_field", None)
        if raw is None or self.tracepoint is None:
            return None
        fmt = raw(*self.tracepoint, e.field)
        if fmt is None or not getattr(fmt, "is_dynamic", False):
            return None
        return int(fmt.offset) + 4 if getattr(fmt, "is_rel_loc", False) else 0

    def address(self, e: ast.Expr) -> None:
        """``r0`` = the address of the object ``e`` names (a member, an element, ``*p``)."""
        a = self.a
        if isinstance(e, ast.FieldAccess):
            base_t = self.type_of(e.expr)
            if self.is_args(e.expr):
                raise self.error("the address of a tracepoint field cannot be taken", e)
            if e.arrow:
                if not isinstance(base_t, PointerType) or not isinstance(base_t.pointee, RecordType):
                    raise self.error(f"-> on {base_t}", e)
                rec = base_t.pointee
                self.int_expr(e.expr)
            else:
                if not isinstance(base_t, RecordType):
                    raise self.error(f". on {base_t}", e)
                rec = base_t
                self.address(e.expr)
            m = self.members(rec, e).get(e.field)
            if m is None:
                raise self.error(f"{rec} has no member {e.field}", e)
            if m.offset:
                a.add64(R0, m.offset)
            return
        if isinstance(e, ast.Index):
            bt = self.type_of(e.expr)
            if isinstance(bt, PointerType):
                elem: Type = bt.pointee
                self.int_expr(e.expr)
            elif isinstance(bt, (ArrayType, StringType)):
                elem = bt.elem if isinstance(bt, ArrayType) else IntType(8, True)
                self.address(e.expr)
            else:
                raise self.error(f"[] on {bt}", e)
            size = self.sizeof(elem, e)
            lit = _literal(e.index)
            if lit is not None:
                self.load_const(R1, lit * size)
                a.add64(R0, R1)
            else:
                with a.stack.scope():
                    tmp = self.alloc(8)
                    a.stx("dw", R10, tmp, R0)
                    self.int_expr(e.index)
                    a.mul64(R0, size).ldx("dw", R1, R10, tmp).add64(R0, R1)
            return
        if isinstance(e, ast.Unary) and e.op == "*":
            self.int_expr(e.operand)
            return
        if isinstance(e, ast.Cast):
            self.address(e.expr)
            return
        raise self.error("the BPF engine cannot take the address of this expression", e)

    def member_value(self, e: ast.Expr) -> None:
        """``r0`` = the value of a member / element / ``*p`` (records and arrays: their address)."""
        a = self.a
        t = self.type_of(e)
        if isinstance(e, ast.FieldAccess) and self.is_args(e.expr) and \
                self.provider in ("kfunc", "kretfunc"):
            self.ctx_arg(e, t)
            return
        if isinstance(e, ast.FieldAccess) and self.is_args(e.expr):
            f = self.tp_field(e)
            if isinstance(t, (StringType, ArrayType, RecordType)):
                raise self.error(f"args.{e.field} is not an integer", e)
            size = self.sizeof(t, e)
            if f.offset % size == 0:
                a.ldx(size, R0, R6, f.offset)
            else:
                with a.stack.scope():
                    tmp = self.alloc(8)
                    a.st("dw", R10, tmp, 0)
                    self.fp(R1, tmp)
                    a.mov64(R2, size).mov64(R3, R6).add64(R3, f.offset)
                    a.call(self.probe_read(False)).ldx("dw", R0, R10, tmp)
            self.normalize(R0, t)
            return
        if isinstance(t, (RecordType, ArrayType)):
            self.address(e)
            return
        bit_off = bit_size = 0
        if isinstance(e, ast.FieldAccess):
            base_t = self.type_of(e.expr)
            rec = base_t.pointee if isinstance(base_t, PointerType) else base_t
            if isinstance(rec, RecordType):
                m = self.members(rec, e).get(e.field)
                if m is not None:
                    bit_off, bit_size = m.bit_offset, m.bit_size
        size = 8 if bit_size else self.sizeof(t, e)
        self.address(e)
        with a.stack.scope():
            tmp = self.alloc(8)
            a.mov64(R3, R0)
            a.st("dw", R10, tmp, 0)
            self.fp(R1, tmp)
            a.mov64(R2, size)
            a.call(self.probe_read(self.user_pointer(e)))
            a.ldx(size if size in (1, 2, 4, 8) else 8, R0, R10, tmp)
        if bit_size:
            if bit_off:
                a.rsh64(R0, bit_off)
            self.load_const(R1, (1 << bit_size) - 1)
            a.and64(R0, R1)
        else:
            self.normalize(R0, t)

    # -- strings --------------------------------------------------------------------------------
    def str_expr(self, e: ast.Expr, off: int, size: int) -> None:  # noqa: C901 - dispatch
        """Write the string ``e`` at ``r10+off``: at most ``size - 1`` bytes, NUL padded to
        ``round8(size)``."""
        a = self.a
        if isinstance(e, ast.StrLit):
            self.str_literal(e.data, off, size)
            return
        if isinstance(e, ast.Builtin) and e.name == "comm":
            self.zero(off, size)
            self.fp(R1, off)
            a.mov64(R2, min(size, 16)).call(Helper.get_current_comm)
            return
        if isinstance(e, ast.Builtin) and e.name == "probe":
            if self.const_index is None:
                raise self.error("probe of a wildcard probe can only be printed or used as a map "
                                 "key by the BPF engine", e)
            self.str_literal(self.names[self.const_index][0].encode(), off, size)
            return
        if isinstance(e, ast.Var):
            voff, vt = self.vars[e.name]
            assert isinstance(vt, StringType)
            self.copy_str(R10, voff, vt.size, off, size)
            return
        if isinstance(e, ast.Ternary):
            els, end = self.label("sf"), self.label("se")
            self.int_expr(e.cond)
            a.jeq(R0, 0, els)
            self.str_expr(e.then, off, size)
            a.ja(end).label(els)
            self.str_expr(e.orelse, off, size)
            a.label(end)
            return
        if isinstance(e, ast.Map):
            mp = self.mplan(e)
            if mp.value.kind != "str":
                raise self.error("not a string map", e)
            miss, done = self.label("sm"), self.label("smd")
            with a.stack.scope():
                koff = self.key(mp, e.keys)
                self.lookup(mp, koff)
            a.jeq(R0, 0, miss)
            self.copy_str(R0, 0, mp.value.str_size, off, size)
            a.ja(done)
            a.label(miss)
            self.zero(off, size)
            a.label(done)
            return
        if isinstance(e, ast.Call) and e.name == "str":
            self.call_str(e, off, size)
            return
        if isinstance(e, ast.TupleIndex):
            self.tuple_elem(e, off, size)
            return
        if isinstance(e, ast.FieldAccess):
            t = self.type_of(e)
            with a.stack.scope():
                self.zero(off, size)
                dynamic = False
                if self.is_args(e.expr):
                    f = self.tp_field(e, dynamic_ok=True)
                    base = self.tp_dynamic_base(e)
                    dynamic = base is not None
                    if base is not None:  # __data_loc: the string sits at ctx + (u32 & 0xffff)
                        a.ldx("w", R3, R6, f.offset).and64(R3, 0xFFFF).add64(R3, R6)
                        if base:
                            a.add64(R3, base)
                    else:
                        a.mov64(R3, R6).add64(R3, f.offset)
                    user = False
                else:
                    self.address(e)
                    a.mov64(R3, R0)
                    user = self.user_pointer(e)
                n = size if dynamic else min(self.sizeof(t, e), size - 1)
                self.fp(R1, off)
                a.mov64(R2, n).call(self.probe_read(user, string=dynamic))
            return
        raise self.error("this string expression is not supported by the BPF engine", e)

    def str_literal(self, data: bytes, off: int, size: int) -> None:
        data = data.split(b"\0", 1)[0][: size - 1]
        buf = data + bytes(round8(size) - len(data))
        for i in range(0, len(buf), 8):
            chunk = int.from_bytes(buf[i:i + 8], "little")
            if chunk == 0:
                self.a.st("dw", R10, off + i, 0)
            else:
                self.load_const(R1, chunk)
                self.a.stx("dw", R10, off + i, R1)

    def copy_str(self, src: Reg, soff: int, ssize: int, off: int, size: int) -> None:
        """Copy a NUL-padded string buffer of ``ssize`` at ``src+soff`` into ``r10+off``."""
        a = self.a
        n = min(round8(ssize), round8(size))
        for i in range(0, n, 8):
            a.ldx("dw", R1, src, soff + i).stx("dw", R10, off + i, R1)
        for i in range(n, round8(size), 8):
            a.st("dw", R10, off + i, 0)
        for i in range(size - 1, n):  # cut to size - 1 bytes
            a.st("b", R10, off + i, 0)

    def call_str(self, e: ast.Call, off: int, size: int) -> None:
        a = self.a
        arg = e.args[0]
        at = self.type_of(arg)
        if isinstance(at, StringType):
            if len(e.args) == 2 and _literal(e.args[1]) is None:
                raise self.error("str(string, n) with a computed n is not supported by the BPF engine", e)
            t = self.type_of(e)
            keep = min(size, t.size) if isinstance(t, StringType) else size
            if keep < size:  # str("world", 3) is "wor" (bpftrace 0.17)
                self.zero(off, size)
            self.str_expr(arg, off, keep)
            return
        self.zero(off, size)
        with a.stack.scope():
            ptr = self.alloc(8, "str pointer")
            self.int_expr(arg)
            a.stx("dw", R10, ptr, R0)
            nlen: Optional[int] = None
            if len(e.args) == 2 and _literal(e.args[1]) is None:
                nlen = self.alloc(8, "str length")
                self.int_expr(e.args[1])
                ok = self.label("len")
                a.jle(R0, size - 1, ok).mov64(R0, size - 1).label(ok).add64(R0, 1)
                a.stx("dw", R10, nlen, R0)

            def read(user: bool) -> None:
                self.fp(R1, off)
                if nlen is not None:
                    a.ldx("dw", R2, R10, nlen)
                    ok2 = self.label("n")
                    a.jle(R2, size, ok2).mov64(R2, size).label(ok2)
                else:
                    a.mov64(R2, size)
                a.ldx("dw", R3, R10, ptr)
                a.call(self.probe_read(user, string=True))

            if self.user_memory:
                read(True)
            else:
                read(False)
                if self.unit.caps.probe_read_kernel and self.provider in ("kprobe", "kretprobe", "tracepoint"):
                    done = self.label("kstr")
                    a.jsgt(R0, 0, done)
                    read(True)  # a user pointer in a kernel function (do_sys_openat2's filename)
                    a.label(done)

    def str_compare(self, e: ast.Binary) -> None:
        a = self.a
        lt, rt = self.type_of(e.left), self.type_of(e.right)
        ls = lt.size if isinstance(lt, StringType) else 64
        rs = rt.size if isinstance(rt, StringType) else 64
        n = min(ls, rs)
        want = 1 if e.op == "==" else 0
        ne, eq, end = self.label("ne"), self.label("eq"), self.label("sc")
        with a.stack.scope():
            if isinstance(e.right, ast.StrLit) or isinstance(e.left, ast.StrLit):
                lit, other, osize = ((e.right, e.left, ls) if isinstance(e.right, ast.StrLit)
                                     else (e.left, e.right, rs))
                assert isinstance(lit, ast.StrLit)
                buf = self.alloc(osize)
                self.str_expr(other, buf, osize)
                data = lit.data.split(b"\0", 1)[0] + b"\0"
                for i in range(min(n, len(data))):
                    a.ldx("b", R1, R10, buf + i).jne(R1, data[i], ne)
            else:
                lb, rb = self.alloc(ls), self.alloc(rs)
                self.str_expr(e.left, lb, ls)
                self.str_expr(e.right, rb, rs)
                for i in range(n):
                    a.ldx("b", R1, R10, lb + i).ldx("b", R2, R10, rb + i)
                    a.jne(R1, R2, ne).jeq(R1, 0, eq)
        a.label(eq).mov64(R0, want).ja(end)
        a.label(ne).mov64(R0, 1 - want)
        a.label(end)


def _kernel_rooted(e: object, kernel_vars: "frozenset[str]") -> bool:
    """``e`` is reached from ``curtask`` (or a ``$var`` that always holds such a value)
    through members, elements, casts and dereferences."""
    node = e
    while True:
        if isinstance(node, ast.Builtin) and node.name == "curtask":
            return True
        if isinstance(node, ast.Var):
            return node.name in kernel_vars
        if isinstance(node, (ast.FieldAccess, ast.Index, ast.Cast)):
            node = node.expr
        elif isinstance(node, ast.Unary) and node.op == "*":
            node = node.operand
        else:
            return False

