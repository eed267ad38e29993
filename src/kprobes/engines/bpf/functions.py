"""bpftrace 0.17's functions for :mod:`.codegen`: formatted values, resolved constants, helpers.

:class:`FunctionOps` is mixed into :class:`~.codegen.ProbeCodegen` (same
conventions: ``r0`` for integers, NUL-padded stack buffers, ``r6`` the context).

* Values formatted in user space (:class:`~kprobes.lang.typesys.FmtType`:
  ``strftime``, ``strerror``, ``ntop``, ``macaddr``, ``buf``, ``username``)
  are packed as raw bytes into records and keys (a ``fmt`` :class:`KeyPart`)
  and turned into text by :mod:`kprobes.engines.functions` when read: the
  8-byte value (nsecs, errno, uid; ``buf``: its length; ``ntop``: the address
  family) then, for ``ntop``/``macaddr``/``buf``, the bytes read;
* ``kaddr``/``uaddr``/``cgroupid``/``pton`` are constants resolved while
  compiling;
* ``strncmp`` is unrolled over at most ``n`` bytes, ``strcontains`` over the haystack's
  buffer (a literal needle), ``bswap`` is one
  ``BPF_END`` instruction, ``reg()``/``sargN`` read the ``pt_regs`` context
  (``sargN``: one probe read at ``sp + 8 * (N + 1)``), ``numaid`` is
  ``bpf_get_numa_node_id``, ``signal()`` ``bpf_send_signal``, ``override()``
  ``bpf_override_return``;
* ``system``/``cat``/``join`` send a record; Python runs the command, reads
  the file or joins the strings (``join``: at most :data:`JOIN_ARGS` arguments
  of :data:`JOIN_ARG_SIZE` bytes, the BPF stack being 512 bytes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Tuple

from ...bpf.helpers import Helper
from ...bpf.insn import R0, R1, R2, R3, R6, R10, Reg
from ...lang import ast
from ...lang.calls import pton_bytes, signal_number
from ...lang.diagnostics import LangError
from ...lang.typesys import ArrayType, FmtType, IntType, PointerType, StringType, Type
from .. import functions as F
from .layout import KeyPart
from .unit import Unit, round8

if TYPE_CHECKING:
    from ...bpf.asm import Assembler

__all__ = ["FunctionOps", "JOIN_ARGS", "JOIN_ARG_SIZE", "INT_FUNCTIONS", "fmt_part"]

#: ``join()``: arguments read and bytes kept of each (bpftrace reads 16 of 1024 from a map).
JOIN_ARGS = F.JOIN_ARGS
JOIN_ARG_SIZE = 48
#: Calls that leave an integer in r0.
INT_FUNCTIONS = frozenset(["strncmp", "bswap", "kaddr", "uaddr", "cgroupid", "kptr", "uptr", "reg",
                           "strcontains"])
_PT_SP = {"x86_64": "sp", "arm64": "sp"}


def fmt_part(t: FmtType) -> KeyPart:
    """The packed form of a formatted value (see the module docstring)."""
    size = 8 + round8(t.size - 8 + 1) if t.kind == "buf" else round8(t.size)
    return KeyPart("fmt", size, field=f"{t.kind}:{t.fmt}")


def _lit(e: ast.Expr) -> Optional[int]:
    if isinstance(e, ast.IntLit):
        return e.value
    if isinstance(e, ast.Unary) and e.op == "-" and isinstance(e.operand, ast.IntLit):
        return -e.operand.value
    return None


class FunctionOps:
    """The functions above, mixed into the code generator."""

    a: "Assembler"
    unit: Unit
    provider: str
    arch: str
    probe: ast.Probe
    dead: bool

    # Provided by the code generator / MemoryOps.
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

    def probe_read(self, user: bool, string: bool = False) -> int:
        raise NotImplementedError

    @property
    def user_memory(self) -> bool:
        raise NotImplementedError

    def int_expr(self, e: ast.Expr) -> None:
        raise NotImplementedError

    def str_expr(self, e: ast.Expr, off: int, size: int) -> None:
        raise NotImplementedError

    def address(self, e: ast.Expr) -> None:
        raise NotImplementedError

    def tp_field(self, e: ast.FieldAccess) -> Any:
        raise NotImplementedError

    def snippet(self, node: object) -> str:
        raise NotImplementedError

    def emit_record(self, rid: int, args: List[Tuple[KeyPart, ast.Expr]], size: int) -> None:
        raise NotImplementedError

    # -- integer-valued calls ---------------------------------------------------------------
    def int_function(self, e: ast.Call) -> None:
        """``r0`` = the value of one of :data:`INT_FUNCTIONS`."""
        a = self.a
        name = e.name
        if name in ("kptr", "uptr"):
            self.int_expr(e.args[0])
        elif name == "bswap":
            self.int_expr(e.args[0])
            t = self.type_of(e)
            a.endian(R0, t.bits if isinstance(t, IntType) else 64, "be")
        elif name == "strncmp":
            self.strncmp(e)
        elif name == "strcontains":
            self.strcontains(e)
        elif name == "reg":
            from .codegen import PT_REGS

            arg = e.args[0]
            assert isinstance(arg, ast.StrLit)
            off = PT_REGS.get(self.arch, {}).get(arg.value)
            if off is None or self.provider not in ("kprobe", "kretprobe", "uprobe", "uretprobe",
                                                    "usdt", "profile"):
                raise self.error(f"reg(\"{arg.value}\") is not readable here by the BPF engine", e)
            a.ldx("dw", R0, R6, off)
        else:
            self.load_const(R0, self.resolve_constant(e))

    def resolve_constant(self, e: ast.Call) -> int:
        arg = e.args[0]
        text = arg.value if isinstance(arg, ast.StrLit) else ""
        try:
            if e.name == "kaddr":
                addr = F.kernel_address(text)
                if addr is None:
                    raise self.error(f"Failed to resolve kernel symbol: {text}", e)
                return addr
            if e.name == "uaddr":
                return F.user_address(F.uprobe_binary(self.probe), text)
            return F.cgroup_id(text)
        except LangError:
            raise
        except Exception as exc:  # KprobesError: point at the call
            raise self.error(str(getattr(exc, "message", exc)), e) from None

    def strncmp(self, e: ast.Call) -> None:
        """``r0`` = 0 when the first ``n`` bytes of both strings agree (up to a NUL), else 1."""
        a = self.a
        n = _lit(e.args[2]) or 0
        lt, rt = self.type_of(e.args[0]), self.type_of(e.args[1])
        ls = lt.size if isinstance(lt, StringType) else 64
        rs = rt.size if isinstance(rt, StringType) else 64
        ne, eq, end = self.label("ne"), self.label("eq"), self.label("sn")
        with a.stack.scope():
            lb, rb = self.alloc(ls), self.alloc(rs)
            self.str_expr(e.args[0], lb, ls)
            self.str_expr(e.args[1], rb, rs)
            for i in range(min(n, ls, rs)):
                a.ldx("b", R1, R10, lb + i).ldx("b", R2, R10, rb + i)
                a.jne(R1, R2, ne).jeq(R1, 0, eq)
        a.label(eq).mov64(R0, 0).ja(end)
        a.label(ne).mov64(R0, 1)
        a.label(end)

    def strcontains(self, e: ast.Call) -> None:
        """``r0`` = 1 when the literal needle occurs in the haystack (unrolled over its buffer)."""
        a = self.a
        needle = e.args[1]
        if not isinstance(needle, ast.StrLit):
            raise self.error("strcontains() with a computed needle is not supported by the BPF "
                             "engine (write the needle as a string literal)", e)
        data = needle.data.split(b"\0", 1)[0]
        if not data:
            self.load_const(R0, 1)
            return
        ht = self.type_of(e.args[0])
        hs = ht.size if isinstance(ht, StringType) else 64
        yes, no, end = self.label("yes"), self.label("no"), self.label("sc")
        with a.stack.scope():
            buf = self.alloc(hs)
            self.str_expr(e.args[0], buf, hs)
            for i in range(max(0, hs - len(data))):
                nxt = self.label("at")
                a.ldx("b", R1, R10, buf + i).jeq(R1, 0, no)
                for j, ch in enumerate(data):
                    a.ldx("b", R1, R10, buf + i + j).jne(R1, ch, nxt)
                a.ja(yes)
                a.label(nxt)
        a.label(no).mov64(R0, 0).ja(end)
        a.label(yes).mov64(R0, 1)
        a.label(end)

    def sarg(self, e: ast.Builtin) -> None:
        """``sargN``: the 8 bytes at ``sp + 8 * (N + 1)`` (the stack arguments of x86_64)."""
        from .codegen import PT_REGS

        a = self.a
        n = int(e.name[4:])
        sp = PT_REGS.get(self.arch, {}).get(_PT_SP.get(self.arch, "sp"))
        if sp is None or self.provider not in ("kprobe", "kretprobe", "uprobe", "uretprobe"):
            raise self.error(f"{e.name} is not readable here by the BPF engine", e)
        with a.stack.scope():
            tmp = self.alloc(8)
            a.st("dw", R10, tmp, 0)
            a.ldx("dw", R3, R6, sp).add64(R3, 8 * (n + 1))
            self.fp(R1, tmp)
            a.mov64(R2, 8).call(self.probe_read(self.user_memory))
            a.ldx("dw", R0, R10, tmp)

    # -- formatted values ---------------------------------------------------------------------
    def fmt_value(self, e: ast.Expr, off: int, part: KeyPart) -> None:
        """Write the raw data of the formatted value ``e`` at ``r10 + off`` (``part.size`` bytes)."""
        a = self.a
        self.zero(off, part.size)
        if isinstance(e, ast.Var):
            voff, _t = self.vars[e.name]  # type: ignore[attr-defined]
            for i in range(0, part.size, 8):
                a.ldx("dw", R1, R10, voff + i).stx("dw", R10, off + i, R1)
            return
        if isinstance(e, ast.Builtin) and e.name == "username":
            a.call(Helper.get_current_uid_gid).mov32(R0, R0)
            a.stx("dw", R10, off, R0)
            return
        if not isinstance(e, ast.Call):
            raise self.error("this formatted value is not supported by the BPF engine", e)
        name = e.name
        if name in ("strftime", "strerror"):
            self.int_expr(e.args[-1])
            a.stx("dw", R10, off, R0)
        elif name == "ntop":
            self.ntop(e, off)
        elif name == "macaddr":
            self.read_bytes(e.args[0], off, 6)
        elif name == "buf":
            t = self.type_of(e)
            n = (t.size if isinstance(t, FmtType) else 8) - 8
            computed = len(e.args) == 2 and _lit(e.args[1]) is None
            if computed:  # the length at run time, at most n
                self.int_expr(e.args[1])
                ok = self.label("blen")
                a.jle(R0, n, ok).mov64(R0, n).label(ok)
                a.stx("dw", R10, off, R0)
            else:
                self.load_const(R1, n)
                a.stx("dw", R10, off, R1)
            arg = e.args[0]
            if isinstance(self.type_of(arg), StringType):
                self.str_expr(arg, off + 8, part.size - 8)
            else:
                self.read_bytes(arg, off + 8, n, off if computed else None)
        else:
            raise self.error(f"{name}() values are not supported by the BPF engine", e)

    def read_bytes(self, e: ast.Expr, off: int, n: int, len_off: Optional[int] = None) -> None:
        """Copy ``n`` bytes ``e`` points to (an array member: its bytes) to ``r10 + off``
        (``len_off``: read the count there instead, a u64 already bounded by ``n``)."""
        a = self.a
        if n <= 0:
            return
        t = self.type_of(e)
        user = self.user_memory
        if isinstance(e, ast.FieldAccess) and isinstance(e.expr, ast.Builtin) and \
                e.expr.name == "args" and isinstance(t, (ArrayType, StringType)):
            f = self.tp_field(e)  # the array in the tracepoint's record
            a.mov64(R0, R6).add64(R0, f.offset)
            user = False
        elif isinstance(t, (ArrayType, StringType)):
            self.address(e)
        elif isinstance(t, (IntType, PointerType)):
            self.int_expr(e)
        else:
            raise self.error(f"the BPF engine cannot read bytes of a {t}", e)
        a.mov64(R3, R0)
        self.fp(R1, off)
        if len_off is not None:
            a.ldx("dw", R2, R10, len_off)
            ok = self.label("bn")
            a.jle(R2, n, ok).mov64(R2, n).label(ok)  # the verifier's bound
        else:
            a.mov64(R2, n)
        a.call(self.probe_read(user))

    def ntop(self, e: ast.Call, off: int) -> None:
        a = self.a
        addr = e.args[-1]
        at = self.type_of(addr)
        nbytes = at.size if isinstance(at, StringType) else (
            at.count * (at.elem.bits // 8 if isinstance(at.elem, IntType) else 1)
            if isinstance(at, ArrayType) else 4)
        size = 16 if nbytes == 16 else 4
        if len(e.args) == 2:
            self.int_expr(e.args[0])
        else:
            self.load_const(R0, F.AF_INET6 if size == 16 else F.AF_INET)
        a.stx("dw", R10, off, R0)
        if isinstance(addr, ast.Call) and addr.name == "pton":
            arg = addr.args[0]
            raw = pton_bytes(arg.value if isinstance(arg, ast.StrLit) else "") or b""
            data = raw.ljust(16, b"\0")
            for i in range(0, 16, 8):
                self.load_const(R1, int.from_bytes(data[i:i + 8], "little"))
                a.stx("dw", R10, off + 8 + i, R1)
        elif isinstance(at, IntType):
            self.int_expr(addr)
            a.stx("dw", R10, off + 8, R0)
        else:
            self.read_bytes(addr, off + 8, size)

    # -- statements ----------------------------------------------------------------------------
    def function_stmt(self, e: ast.Call) -> bool:
        """Emit a call statement of this module; False when ``e`` is not one of them."""
        a = self.a
        name = e.name
        if name == "signal":
            arg = e.args[0]
            if isinstance(arg, ast.StrLit):
                self.load_const(R1, signal_number(arg.value) or 0)
            else:
                self.int_expr(arg)
                a.mov64(R1, R0)
            a.call(Helper.send_signal)
        elif name == "override":
            self.int_expr(e.args[0])
            a.mov64(R2, R0).mov64(R1, R6).call(Helper.override_return)
        elif name in ("system", "cat"):
            from .unit import part_of

            fmt = e.args[0]
            assert isinstance(fmt, ast.StrLit)
            parts = tuple(part_of(self.unit.checked, x) for x in e.args[1:])
            rec = self.unit.record(name, parts, text=fmt.value, source=self.snippet(e))
            self.emit_record(rec.id, list(zip(parts, e.args[1:])), rec.size)
        elif name == "join":
            self.join(e)
        elif name in ("strftime", "strerror", "ntop", "macaddr", "buf", "pton") or \
                name in INT_FUNCTIONS:
            pass  # a value nobody uses
        else:
            return False
        return True

    def join(self, e: ast.Call) -> None:
        """Record: the count of arguments read, then :data:`JOIN_ARGS` string slots."""
        a = self.a
        sep = e.args[1].value if len(e.args) == 2 and isinstance(e.args[1], ast.StrLit) else " "
        parts = (KeyPart("int", 8),) + tuple(
            KeyPart("str", JOIN_ARG_SIZE, field=str(JOIN_ARG_SIZE)) for _ in range(JOIN_ARGS))
        rec = self.unit.record("join", parts, text=sep, source=self.snippet(e))
        user = self.user_memory
        with a.stack.scope():
            off = self.alloc(rec.size, "join record")
            argv = self.alloc(8, "argv")
            ptr = self.alloc(8, "argv[i]")
            self.zero(off, rec.size)
            self.load_const(R1, rec.id)
            a.stx("dw", R10, off, R1)
            self.int_expr(e.args[0])
            a.stx("dw", R10, argv, R0)
            done = self.label("joined")
            for i in range(JOIN_ARGS):
                a.st("dw", R10, ptr, 0)
                self.fp(R1, ptr)
                a.mov64(R2, 8).ldx("dw", R3, R10, argv).add64(R3, 8 * i)
                a.call(self.probe_read(user))
                a.ldx("dw", R3, R10, ptr).jeq(R3, 0, done)
                self.fp(R1, off + 16 + i * JOIN_ARG_SIZE)
                a.mov64(R2, JOIN_ARG_SIZE).call(self.probe_read(user, string=True))
                self.load_const(R1, i + 1)
                a.stx("dw", R10, off + 8, R1)
            a.label(done)
            self.send_record(off, rec.size)

    def send_record(self, off: int, size: int) -> None:
        raise NotImplementedError
