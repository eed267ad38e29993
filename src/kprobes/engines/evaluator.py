"""Python evaluation of a probe's predicate and action, compiled once into closures.

:class:`ProbeCompiler` turns one :class:`~.plan.Variant` into a function
``run(event, target)`` that is called for every event of the variant's kernel
events.  Each AST node becomes one closure taking a :class:`Frame` (the
event, its fields, the ``$variables`` of this invocation); nothing is looked
up by name or type at event time.

Integer semantics are bpftrace 0.17's (its LLVM code generator): every
operand is widened to 64 bits by its own signedness; ``+ - * << & | ^`` wrap
at 64 bits; ``/`` and ``%`` are *unsigned* (BPF had no signed division:
``-7 / 2`` is 9223372036854775804) and a zero divisor gives 0 (``%``: the
dividend), as the BPF instruction set defines; ``>>`` is a logical shift;
``< <= > >=`` compare signed only when both sides are signed; casts truncate
and re-extend (``(uint8)300 == 44``, ``(int8)200 == -56``).  Values are
Python ints kept in the range of their checker type (``int64`` in
``[-2**63, 2**63)``, ``uint64`` in ``[0, 2**64)``).

Strings compare like bpftrace's ``strncmp`` over the smaller of the two
buffer sizes, terminator included; ``str()`` keeps at most ``size - 1``
bytes (``str(x, n)``: ``n`` bytes, at most 63, as bpftrace 0.17 prints them).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

from ..agg import BpfMap, compile_printf, format_time
from ..agg.aggregations import Avg, Count, IntValue, Max, Min, StrValue, Sum, TupleValue
from ..errors import KprobesError
from ..events.model import TraceEvent
from ..lang import ast
from ..lang.checked import CheckedProgram
from ..lang.typesys import ArrayType, FmtType, IntType, StringType, SymType, TupleType, Type
from . import functions as F
from .functions import read_for_cat, run_system, uprobe_binary
from .runtime import Output, ProcInfo
from .targets import Target
from .variant import Variant, plan_error

__all__ = ["Frame", "Runtime", "ProbeCompiler", "ExitProgram", "ProbeRunner"]

Fn = Callable[["Frame"], Any]
Stmt = Callable[["Frame"], None]
ProbeRunner = Callable[[TraceEvent, Target], None]

_M64 = (1 << 64) - 1
_H63 = 1 << 63
_FAULT = "(fault)"


class ExitProgram(Exception):
    """``exit()`` was called: stop the probe and the program."""


class _Return(Exception):
    """``return``: leave this probe's action."""


class _Break(Exception):
    """``break``: leave the innermost ``while``."""


class _Continue(Exception):
    """``continue``: the innermost ``while``'s next test."""


#: Iterations one ``while`` may run in one probe hit.  The BPF verifier refuses loops it
#: cannot bound (its limit is a million instructions per program); here such a loop
#: would hang the tracer, so it ends the program with an error instead.
MAX_LOOP_ITERATIONS = 1 << 20


class Frame:
    """One probe invocation: the event, its fields, its ``$variables``, its place."""

    __slots__ = ("ev", "fields", "vars", "target")

    def __init__(self, ev: TraceEvent, target: Target) -> None:
        self.ev = ev
        self.fields = ev.fields
        self.vars: Dict[str, Any] = {}
        self.target = target


class Runtime:
    """Program-wide state: maps, output, start time, exit flag, /proc and symbol caches."""

    def __init__(
        self,
        maps: Dict[str, BpfMap],
        out: Output,
        start_ns: int,
        proc: Optional[ProcInfo] = None,
        ksym: Optional[Callable[[int], str]] = None,
    ) -> None:
        self.maps = maps
        self.out = out
        self.start_ns = start_ns
        self.proc = proc or ProcInfo()
        if ksym is None:  # the process' one kallsyms symbolizer (read on first use)
            from ..backends.symbols.ksym import shared_symbolizer

            ksym = shared_symbolizer()
        self.ksym = ksym
        self.exit_requested = False
        #: ``cpid``: the pid of the ``-c`` command (0 without one), set before BEGIN runs.
        self.cpid = 0

    def pid_of(self, ev: TraceEvent) -> int:
        return ev.tgid if ev.tgid is not None else self.proc.tgid(ev.pid)


def _s64(v: int) -> int:
    return ((v + _H63) & _M64) - _H63


def _norm(v: int, bits: int, signed: bool) -> int:
    mask = (1 << bits) - 1
    v &= mask
    if signed and v >> (bits - 1):
        v -= 1 << bits
    return v


def _signed(t: Type) -> bool:
    return isinstance(t, IntType) and t.signed


def _wrapper(t: Type) -> Callable[[int], int]:
    """Normalise a 64-bit result to ``t``'s signedness."""
    return _s64 if _signed(t) else (lambda v: v & _M64)


def _trunc(s: str, limit: int) -> str:
    """``s`` cut to ``limit`` bytes of UTF-8 (bpftrace's buffer minus the NUL)."""
    if len(s) <= limit and s.isascii():
        return s
    raw = s.encode("utf-8", "surrogateescape")
    if len(raw) <= limit:
        return s
    return raw[:limit].decode("utf-8", "ignore")


def _zero_of(t: Type) -> Any:
    """The value of a ``$variable`` or map entry of type ``t`` never assigned: 0, "", (0, "")."""
    if isinstance(t, StringType):
        return ""
    if isinstance(t, TupleType):
        return tuple(_zero_of(e) for e in t.elems)
    return 0


def _agg_value(agg: Any) -> Any:
    if isinstance(agg, Count):
        return agg.count
    if isinstance(agg, Sum):
        return agg.total
    if isinstance(agg, (Min, Max, IntValue)):
        return agg.value
    if isinstance(agg, Avg):
        return agg.average
    if isinstance(agg, (StrValue, TupleValue)):
        return agg.value
    raise KprobesError(f"map value {agg!r} cannot be read")  # pragma: no cover - checker


class ProbeCompiler:
    """Compiles one variant's predicate and action (see the module docstring)."""

    def __init__(self, checked: CheckedProgram, variant: Variant, rt: Runtime) -> None:
        self.checked = checked
        self.variant = variant
        self.field_of = variant.field_of
        self.rt = rt
        self.probe = checked.program.probes[variant.probe_index]

    def type_of(self, e: ast.Expr) -> Type:
        return self.checked.type_of(e)

    # -- entry ---------------------------------------------------------------
    def compile(self) -> ProbeRunner:
        conds = tuple(self.expr(c) for c in self.variant.python_conjuncts)
        body = self.block(self.probe.body)

        def run(ev: TraceEvent, target: Target) -> None:
            fr = Frame(ev, target)
            for c in conds:
                if not c(fr):
                    return
            try:
                body(fr)
            except _Return:
                pass

        return run

    # -- statements ----------------------------------------------------------
    def block(self, block: ast.Block) -> Stmt:
        stmts = tuple(self.stmt(s) for s in block.stmts)
        if len(stmts) == 1:
            return stmts[0]

        def run(fr: Frame) -> None:
            for s in stmts:
                s(fr)

        return run

    def stmt(self, st: ast.Stmt) -> Stmt:
        if isinstance(st, ast.ExprStmt):
            fn = self.expr(st.expr)

            def run_expr(fr: Frame) -> None:
                fn(fr)

            return run_expr
        if isinstance(st, ast.AssignVar):
            return self.assign_var(st)
        if isinstance(st, ast.AssignMap):
            return self.assign_map(st)
        if isinstance(st, ast.If):
            return self.if_stmt(st)
        if isinstance(st, ast.Block):
            return self.block(st)
        if isinstance(st, ast.While):
            return self.while_stmt(st)
        if isinstance(st, ast.Unroll):
            body = self.block(st.body)
            n = st.count.value if isinstance(st.count, ast.IntLit) else 0
            times = range(n)

            def unrolled(fr: Frame) -> None:
                for _ in times:
                    body(fr)

            return unrolled
        if isinstance(st, ast.Jump):
            exc = _Break if st.kind == "break" else _Continue

            def jump(fr: Frame) -> None:
                raise exc()

            return jump

        def ret(fr: Frame) -> None:
            raise _Return()

        return ret

    def while_stmt(self, st: ast.While) -> Stmt:
        cond = self.expr(st.cond)
        body = self.block(st.body)
        where = f"line {st.span.line}"

        def loop(fr: Frame) -> None:
            n = 0
            while cond(fr):
                n += 1
                if n > MAX_LOOP_ITERATIONS:
                    raise KprobesError(
                        f"the while loop at {where} ran {MAX_LOOP_ITERATIONS} times in one probe hit",
                        hint="bound the loop (the BPF verifier refuses loops it cannot bound)")
                try:
                    body(fr)
                except _Continue:
                    continue
                except _Break:
                    break

        return loop

    def if_stmt(self, st: ast.If) -> Stmt:
        cond = self.expr(st.cond)
        then = self.block(st.then)
        orelse: Optional[Stmt] = None
        if isinstance(st.orelse, ast.If):
            orelse = self.if_stmt(st.orelse)
        elif st.orelse is not None:
            orelse = self.block(st.orelse)

        if orelse is None:
            def run_if(fr: Frame) -> None:
                if cond(fr):
                    then(fr)

            return run_if
        alt = orelse

        def run_if_else(fr: Frame) -> None:
            if cond(fr):
                then(fr)
            else:
                alt(fr)

        return run_if_else

    def assign_var(self, st: ast.AssignVar) -> Stmt:
        name = st.target.name
        if st.op == "=":
            value = self.expr(st.value)

            def assign(fr: Frame) -> None:
                fr.vars[name] = value(fr)

            return assign
        op = self.int_op(ast.COMPOUND_OPS[st.op], self.type_of(st.target), self.type_of(st.value),
                         self.type_of(st.target))
        rhs = self.expr(st.value)

        def compound(fr: Frame) -> None:
            fr.vars[name] = op(fr.vars.get(name, 0), rhs(fr))

        return compound

    def map_key(self, m: ast.Map) -> Fn:
        keys = tuple(self.expr(k) for k in m.keys)
        if not keys:
            return lambda fr: ()
        if len(keys) == 1:
            k0 = keys[0]
            return lambda fr: (k0(fr),)
        return lambda fr: tuple(k(fr) for k in keys)

    def assign_map(self, st: ast.AssignMap) -> Stmt:
        m = self.rt.maps[st.target.name]
        key = self.map_key(st.target)
        value = st.value
        if st.op == "=" and isinstance(value, ast.Call) and value.name in (
            "count", "sum", "avg", "min", "max", "stats", "hist", "lhist"
        ):
            update = m.update
            if value.name == "count":
                return lambda fr: update(key(fr))
            arg = self.expr(value.args[0])
            return lambda fr: update(key(fr), arg(fr))
        rhs = self.expr(value)
        update = m.update
        if st.op == "=":
            return lambda fr: update(key(fr), rhs(fr))
        mt = self.checked.maps[st.target.name].value_type
        op = self.int_op(ast.COMPOUND_OPS[st.op], mt, self.type_of(value), mt)
        read = self.map_reader(m)

        def compound(fr: Frame) -> None:
            k = key(fr)
            update(k, op(read(k), rhs(fr)))

        return compound

    def map_reader(self, m: BpfMap) -> Callable[[Tuple[Any, ...]], Any]:
        get = m.get
        default: Any = "" if isinstance(m.template, StrValue) else 0
        if isinstance(m.template, TupleValue):
            default = _zero_of(self.checked.maps[m.name.lstrip("@")].value_type)

        def read(k: Tuple[Any, ...]) -> Any:
            agg = get(k)
            return default if agg is None else _agg_value(agg)

        return read

    # -- expressions -----------------------------------------------------------
    def expr(self, e: ast.Expr) -> Fn:
        name = self.field_of.get(id(e))
        if name is not None and isinstance(e, ast.Call) and e.name == "join":
            return self.call_join(e)
        if name is not None and isinstance(e, ast.Call) and e.name in ("buf", "macaddr"):
            return self.call_bytes(e, name)
        if name is not None:
            if isinstance(e, ast.Call) and e.name == "str" and len(e.args) == 2:
                return self.call_str(e, self.field(e, name))
            return self.field(e, name)
        method = getattr(self, "x_" + type(e).__name__)
        fn: Fn = method(e)
        return fn

    def field(self, e: ast.Expr, name: str) -> Fn:
        t = self.type_of(e)
        if isinstance(t, StringType):
            limit = t.size - 1

            def read_str(fr: Frame) -> str:
                v = fr.fields.get(name, "")
                if type(v) is not str or v == _FAULT:
                    return ""
                return v if len(v) <= limit and v.isascii() else _trunc(v, limit)

            return read_str
        bits, signed = (t.bits, t.signed) if isinstance(t, IntType) else (64, False)
        mask = (1 << bits) - 1
        top = 1 << (bits - 1)

        def read_int(fr: Frame) -> int:
            v = fr.fields.get(name, 0)
            if type(v) is not int:
                return 0
            v &= mask
            return v - (top << 1) if signed and v & top else v

        return read_int

    def x_IntLit(self, e: ast.IntLit) -> Fn:
        v = e.value
        return lambda fr: v

    def x_StrLit(self, e: ast.StrLit) -> Fn:
        v = e.value
        return lambda fr: v

    def x_Var(self, e: ast.Var) -> Fn:
        name = e.name
        default: Any = _zero_of(self.type_of(e))
        return lambda fr: fr.vars.get(name, default)

    def x_Tuple(self, e: ast.Tuple) -> Fn:
        elems = tuple(self.expr(x) for x in e.elems)
        return lambda fr: tuple(f(fr) for f in elems)

    def x_TupleIndex(self, e: ast.TupleIndex) -> Fn:
        inner, i = self.expr(e.expr), e.index
        return lambda fr: inner(fr)[i]

    def x_Builtin(self, e: ast.Builtin) -> Fn:
        rt = self.rt
        n = e.name
        if n == "pid":
            return lambda fr: rt.pid_of(fr.ev)
        if n == "tid":
            return lambda fr: fr.ev.pid
        if n == "comm":
            return lambda fr: fr.ev.comm
        if n == "nsecs":
            return lambda fr: fr.ev.timestamp_ns
        if n == "elapsed":
            return lambda fr: (fr.ev.timestamp_ns - rt.start_ns) & _M64
        if n == "cpu":
            return lambda fr: fr.ev.cpu
        if n == "uid":
            return lambda fr: rt.proc.uid(fr.ev.pid)
        if n == "gid":
            return lambda fr: rt.proc.gid(fr.ev.pid)
        if n == "probe":
            return lambda fr: fr.target.name
        if n == "func":
            return lambda fr: fr.target.func
        if n == "cpid":
            return lambda fr: rt.cpid
        if n == "username":
            return lambda fr: F.format_username(rt.proc.uid(fr.ev.pid))
        raise KprobesError(f"the {n} builtin has no value here")

    def x_Map(self, e: ast.Map) -> Fn:
        m = self.rt.maps[e.name]
        key = self.map_key(e)
        read = self.map_reader(m)
        return lambda fr: read(key(fr))

    def x_Cast(self, e: ast.Cast) -> Fn:
        inner = self.expr(e.expr)
        tn = e.type
        if tn.kind == "int" and tn.pointer == 0:
            bits, signed = tn.bits, tn.signed
            return lambda fr: _norm(inner(fr), bits, signed)
        return lambda fr: inner(fr) & _M64

    def x_Ternary(self, e: ast.Ternary) -> Fn:
        cond, then, orelse = self.expr(e.cond), self.expr(e.then), self.expr(e.orelse)
        t = self.type_of(e)
        if isinstance(t, IntType):
            wrap = _wrapper(t)
            return lambda fr: wrap(then(fr) if cond(fr) else orelse(fr))
        return lambda fr: then(fr) if cond(fr) else orelse(fr)

    def x_Unary(self, e: ast.Unary) -> Fn:
        operand = self.expr(e.operand)
        wrap = _wrapper(self.type_of(e))
        if e.op == "-":
            return lambda fr: wrap(-operand(fr))
        if e.op == "~":
            return lambda fr: wrap(~operand(fr))
        if e.op == "!":
            return lambda fr: 0 if operand(fr) else 1
        if e.op == "+":
            return operand
        raise KprobesError(f"the unary {e.op} operator is not supported by the tracefs engine")

    def x_IncDec(self, e: ast.IncDec) -> Fn:
        delta = 1 if e.op == "++" else -1
        prefix = e.prefix
        t = self.type_of(e)
        bits, signed = (t.bits, t.signed) if isinstance(t, IntType) else (64, True)
        target = e.target
        if isinstance(target, ast.Var):
            name = target.name

            def var_step(fr: Frame) -> int:
                old = fr.vars.get(name, 0)
                new = _norm(old + delta, bits, signed)
                fr.vars[name] = new
                return new if prefix else old

            return var_step
        assert isinstance(target, ast.Map)
        m = self.rt.maps[target.name]
        key = self.map_key(target)
        read = self.map_reader(m)
        update = m.update

        def map_step(fr: Frame) -> int:
            k = key(fr)
            old = read(k)
            new = _norm(old + delta, 64, signed)
            update(k, new)
            return new if prefix else old

        return map_step

    def x_Binary(self, e: ast.Binary) -> Fn:
        lf, rf = self.expr(e.left), self.expr(e.right)
        op = e.op
        if op == "&&":
            return lambda fr: 1 if lf(fr) and rf(fr) else 0
        if op == "||":
            return lambda fr: 1 if lf(fr) or rf(fr) else 0
        lt, rt = self.type_of(e.left), self.type_of(e.right)
        if isinstance(lt, (StringType, SymType)) or isinstance(rt, (StringType, SymType)):
            return self.string_compare(e, lf, rf)
        fn = self.int_op(op, lt, rt, self.type_of(e))
        return lambda fr: fn(lf(fr), rf(fr))

    def string_compare(self, e: ast.Binary, lf: Fn, rf: Fn) -> Fn:
        sizes = [t.size if isinstance(t, StringType) else 1 << 20
                 for t in (self.type_of(e.left), self.type_of(e.right))]
        n = min(sizes)
        want = 1 if e.op == "==" else 0

        def cmp(fr: Frame) -> int:
            a = lf(fr) + "\0"
            b = rf(fr) + "\0"
            return want if a[:n] == b[:n] else 1 - want

        return cmp

    def int_op(self, op: str, lt: Type, rt: Type, result: Type) -> Callable[[int, int], int]:
        """``(a, b) -> a OP b`` on integer values, bpftrace 0.17's semantics."""
        both_signed = _signed(lt) and _signed(rt)
        wrap = _wrapper(result)
        M = _M64
        table: Dict[str, Callable[[int, int], int]] = {
            "+": lambda a, b: wrap(a + b),
            "-": lambda a, b: wrap(a - b),
            "*": lambda a, b: wrap(a * b),
            "/": lambda a, b: wrap((a & M) // (b & M)) if b & M else 0,
            "%": lambda a, b: wrap((a & M) % (b & M)) if b & M else wrap(a),
            "<<": lambda a, b: wrap(a << (b & 63)),
            ">>": lambda a, b: wrap((a & M) >> (b & 63)),
            "&": lambda a, b: wrap(a & b),
            "|": lambda a, b: wrap(a | b),
            "^": lambda a, b: wrap(a ^ b),
            "==": lambda a, b: 1 if (a & M) == (b & M) else 0,
            "!=": lambda a, b: 1 if (a & M) != (b & M) else 0,
        }
        if both_signed:
            table.update({
                "<": lambda a, b: 1 if a < b else 0,
                "<=": lambda a, b: 1 if a <= b else 0,
                ">": lambda a, b: 1 if a > b else 0,
                ">=": lambda a, b: 1 if a >= b else 0,
            })
        else:
            table.update({
                "<": lambda a, b: 1 if (a & M) < (b & M) else 0,
                "<=": lambda a, b: 1 if (a & M) <= (b & M) else 0,
                ">": lambda a, b: 1 if (a & M) > (b & M) else 0,
                ">=": lambda a, b: 1 if (a & M) >= (b & M) else 0,
            })
        return table[op]

    # -- calls -----------------------------------------------------------------
    def x_Call(self, e: ast.Call) -> Fn:
        method = getattr(self, "call_" + e.name, None)
        if method is None:
            raise KprobesError(f"{e.name}() is not supported by the tracefs engine")
        fn: Fn = method(e)
        return fn

    def call_printf(self, e: ast.Call) -> Fn:
        fmt = e.args[0]
        assert isinstance(fmt, ast.StrLit)
        compiled = compile_printf(fmt.value)
        args = tuple(self.expr(a) for a in e.args[1:])
        out = self.rt.out

        def printf(fr: Frame) -> None:
            out.printf(compiled([a(fr) for a in args]))

        return printf

    def call_time(self, e: ast.Call) -> Fn:
        fmt: Optional[str] = None
        if e.args and isinstance(e.args[0], ast.StrLit):
            fmt = e.args[0].value
        out = self.rt.out
        return lambda fr: out.time(format_time(fmt))

    def call_print(self, e: ast.Call) -> Fn:
        arg = e.args[0]
        out = self.rt.out
        if isinstance(arg, ast.Map) and not arg.indexed:
            m = self.rt.maps[arg.name]
            lits = [a.value if isinstance(a, ast.IntLit) else 0 for a in e.args[1:]]
            top = lits[0] if lits else 0
            div = lits[1] if len(lits) > 1 else 1
            return lambda fr: out.print_map(m, top, div)
        value = self.expr(arg)
        return lambda fr: out.print_value(value(fr))

    def call_str(self, e: ast.Call, fetched: Optional[Fn] = None) -> Fn:
        """``str(x[, n])``; ``fetched``: the string the kernel read for it (a field)."""
        inner = fetched if fetched is not None else self.expr(e.args[0])
        t = self.type_of(e)
        limit = (t.size if isinstance(t, StringType) else 64) - 1
        if len(e.args) == 2 and not isinstance(e.args[1], ast.IntLit):
            length = self.expr(e.args[1])
            # a negative length is a huge unsigned one in bpftrace: the whole buffer
            return lambda fr: _trunc(inner(fr), min(limit, length(fr) & _M64))
        if fetched is not None:
            return fetched  # already cut to the type's size
        return lambda fr: _trunc(inner(fr), limit)

    def call_ksym(self, e: ast.Call) -> Fn:
        inner = self.expr(e.args[0])
        ksym = self.rt.ksym
        return lambda fr: ksym(inner(fr) & _M64)

    def call_exit(self, e: ast.Call) -> Fn:
        rt = self.rt

        def do_exit(fr: Frame) -> None:
            rt.exit_requested = True
            raise ExitProgram()

        return do_exit

    def _whole_map(self, e: ast.Call) -> BpfMap:
        arg = e.args[0]
        assert isinstance(arg, ast.Map)
        return self.rt.maps[arg.name]

    def call_clear(self, e: ast.Call) -> Fn:
        m = self._whole_map(e)
        return lambda fr: m.clear()

    def call_zero(self, e: ast.Call) -> Fn:
        m = self._whole_map(e)
        return lambda fr: m.zero()

    def call_delete(self, e: ast.Call) -> Fn:
        arg = e.args[0]
        assert isinstance(arg, ast.Map)
        m = self.rt.maps[arg.name]
        if len(e.args) == 2:
            k = self.expr(e.args[1])
            return lambda fr: m.delete((k(fr),))
        key = self.map_key(arg)
        return lambda fr: m.delete(key(fr))

    # -- functions formatted or resolved in user space (see .functions) ------------------
    def call_strftime(self, e: ast.Call) -> Fn:
        fmt = e.args[0]
        assert isinstance(fmt, ast.StrLit)
        text = fmt.value
        inner = self.expr(e.args[1])
        return lambda fr: F.format_strftime(text, inner(fr))

    def call_strerror(self, e: ast.Call) -> Fn:
        inner = self.expr(e.args[0])
        return lambda fr: F.format_strerror(inner(fr))

    def call_strncmp(self, e: ast.Call) -> Fn:
        a, b = self.expr(e.args[0]), self.expr(e.args[1])
        n = e.args[2].value if isinstance(e.args[2], ast.IntLit) else 0

        def strncmp(fr: Frame) -> int:
            x = (a(fr) + "\0").encode("utf-8", "surrogateescape")[:n]
            y = (b(fr) + "\0").encode("utf-8", "surrogateescape")[:n]
            return 0 if x.split(b"\0", 1)[0] == y.split(b"\0", 1)[0] else 1

        return strncmp

    def call_strcontains(self, e: ast.Call) -> Fn:
        hay, needle = self.expr(e.args[0]), self.expr(e.args[1])
        return lambda fr: 1 if needle(fr) in hay(fr) else 0

    def call_bswap(self, e: ast.Call) -> Fn:
        inner = self.expr(e.args[0])
        t = self.type_of(e)
        nbytes = (t.bits if isinstance(t, IntType) else 64) // 8
        mask = (1 << (8 * nbytes)) - 1
        return lambda fr: int.from_bytes((inner(fr) & mask).to_bytes(nbytes, "little"), "big")

    def _const(self, e: ast.Call, value: int) -> Fn:
        return lambda fr: value

    def call_kaddr(self, e: ast.Call) -> Fn:
        name = e.args[0].value if isinstance(e.args[0], ast.StrLit) else ""
        addr = F.kernel_address(name)
        if addr is None:
            raise plan_error(self.checked.program, f"Failed to resolve kernel symbol: {name}", e.span)
        return self._const(e, addr)

    def call_uaddr(self, e: ast.Call) -> Fn:
        name = e.args[0].value if isinstance(e.args[0], ast.StrLit) else ""
        return self._const(e, F.user_address(uprobe_binary(self.probe), name))

    def call_cgroupid(self, e: ast.Call) -> Fn:
        path = e.args[0].value if isinstance(e.args[0], ast.StrLit) else ""
        return self._const(e, F.cgroup_id(path))

    def call_kptr(self, e: ast.Call) -> Fn:
        return self.expr(e.args[0])

    call_uptr = call_kptr

    def call_pton(self, e: ast.Call) -> Fn:
        from ..lang.calls import pton_bytes

        raw = pton_bytes(e.args[0].value if isinstance(e.args[0], ast.StrLit) else "") or b""
        return lambda fr: raw

    def call_ntop(self, e: ast.Call) -> Fn:
        arg = e.args[-1]
        fetched = self.field_of.get(id(arg))
        addr: Fn
        if fetched is not None:  # the raw bytes (or little-endian int) the kernel read
            addr = lambda fr: fr.fields.get(fetched, 0)  # noqa: E731
        else:
            addr = self.expr(arg)
        af = self.expr(e.args[0]) if len(e.args) == 2 else None
        at = self.type_of(arg)
        nbytes = at.size if isinstance(at, StringType) else (
            at.count * (at.elem.bits // 8 if isinstance(at.elem, IntType) else 1)
            if isinstance(at, ArrayType) else 4)
        size = 16 if nbytes == 16 else 4

        def ntop(fr: Frame) -> str:
            v = addr(fr)
            if isinstance(v, (tuple, list)):
                raw = bytes(x & 0xFF for x in v if isinstance(x, int))
            elif isinstance(v, str):
                raw = v.encode("latin-1", "replace")
            elif isinstance(v, bytes):
                raw = v
            else:
                raw = (int(v) & ((1 << 128) - 1)).to_bytes(16, "little")
            family = af(fr) if af is not None else (F.AF_INET6 if size == 16 else F.AF_INET)
            return F.format_ntop(family, raw)

        return ntop

    def call_join(self, e: ast.Call) -> Fn:
        """``join(argv[, sep])``: the strings the kernel fetched, up to the first NULL pointer."""
        from .fetch import JOIN_MARK

        sep = e.args[1].value if len(e.args) == 2 and isinstance(e.args[1], ast.StrLit) else " "
        fetched = {f.expr: f.name for f in self.variant.fetches}
        names = []
        mark = self.field_of.get(id(e), "")
        if not mark.startswith(JOIN_MARK):
            raise KprobesError("join() has no fetched arguments here")
        base = mark[len(JOIN_MARK):]
        for i in range(F.JOIN_ARGS):
            names.append((fetched.get(f"+{8 * i}({base})", ""),
                          fetched.get(f"+0(+{8 * i}({base}))", "")))
        out = self.rt.out

        def join(fr: Frame) -> None:
            parts = []
            for p, s in names:
                if not fr.fields.get(p):
                    break
                v = fr.fields.get(s, "")
                parts.append(v if isinstance(v, str) and v != _FAULT else "")
            out.printf(sep.join(parts) + "\n")

        return join

    def call_bytes(self, e: ast.Call, name: str) -> Fn:
        """``buf()``/``macaddr()`` of the ``u8[N]`` array the kernel fetched."""
        t = self.type_of(e)
        n = t.size - 8 if isinstance(t, FmtType) and t.kind == "buf" else 6
        computed = len(e.args) == 2 and not isinstance(e.args[1], ast.IntLit)
        length = self.expr(e.args[1]) if computed else None
        mac = e.name == "macaddr"

        def read(fr: Frame) -> str:
            v = fr.fields.get(name, ())
            raw = bytes(x & 0xFF for x in v if isinstance(x, int)) if isinstance(v, (tuple, list)) \
                else bytes(n)
            if mac:
                return F.format_macaddr(raw)
            cut = n if length is None else min(n, length(fr) & _M64)
            return F.format_buf(raw[:cut])

        return read

    def call_cat(self, e: ast.Call) -> Fn:
        fmt = e.args[0]
        assert isinstance(fmt, ast.StrLit)
        compiled = compile_printf(fmt.value)
        args = tuple(self.expr(a) for a in e.args[1:])
        out = self.rt.out

        def cat(fr: Frame) -> None:
            out.message("cat", read_for_cat(compiled([a(fr) for a in args])))

        return cat

    def call_system(self, e: ast.Call) -> Fn:
        fmt = e.args[0]
        assert isinstance(fmt, ast.StrLit)
        compiled = compile_printf(fmt.value)
        args = tuple(self.expr(a) for a in e.args[1:])
        out = self.rt.out

        def system(fr: Frame) -> None:
            out.message("syscall", run_system(compiled([a(fr) for a in args])))

        return system

    def x_Param(self, e: ast.Param) -> Fn:  # pragma: no cover - refused by the checker
        raise KprobesError("positional parameters are not supported")


def compile_variants(
    checked: CheckedProgram, variants: List[Variant], rt: Runtime
) -> List[ProbeRunner]:
    """One runner per variant, in order."""
    return [ProbeCompiler(checked, v, rt).compile() for v in variants]
