"""Semantic checks and type inference for a parsed bpftrace program.

The checker follows bpftrace's semantic analyser where this front end has
the same features: builtins are only available in the probe types that
provide them, maps keep one key and value type across the whole program,
aggregations may only be assigned to a map, ``$variables`` live for one
probe, printf arguments must match the format string.  Error texts are
bpftrace's, with close-match hints for misspelled names.

Map types are inferred over several walks: the first ones only record every
map's key and value types (so a map read in ``END`` before the probe that
fills it is known, and ``@n = @n + 1`` makes ``@n`` an unsigned 64-bit
integer as in bpftrace), the last reports errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

from . import ast
from .builtins import ARG_PROVIDERS, BUILTINS, NOT_IN_BPFTRACE_017, UNSUPPORTED_BUILTINS
from .calls import CallChecks
from .checked import CheckedProgram, MapInfo, ProbeSummary
from .diagnostics import ERROR, WARNING, Diagnostic, LangError, close_matches
from .provider import MemberInfo, TypeProvider
from .source import Source, Span
from .state import MapState, Usage
from .typesys import (
    INT64,
    NONE,
    UINT32,
    UINT64,
    AggType,
    ArrayType,
    FmtType,
    IntType,
    NoneType,
    PointerType,
    RecordType,
    StackType,
    StringType,
    SymType,
    TupleType,
    Type,
    VoidType,
    is_int_like,
    kind_name,
    merge_kind,
    same_kind,
)

__all__ = ["check", "DEFAULT_MAX_ARGS"]

#: ``argN`` available by default (x86_64 passes six arguments in registers).
DEFAULT_MAX_ARGS = 6
_COMM_SIZE = 16
_UNKNOWN_PROBE_SIZE = 256


def _hint(name: str, candidates: Sequence[str], sigil: str = "") -> tuple[str, ...]:
    close = close_matches(name, list(candidates))
    return (f"Did you mean '{sigil}{close[0]}'?",) if close else ()


def _as_value(t: Type) -> Type:
    """How a member/pointee type reads as a value: char arrays become strings."""
    if isinstance(t, ArrayType) and isinstance(t.elem, IntType) and t.elem.bits == 8:
        return StringType(t.count)
    return t


def _key_type(t: Type) -> Type:
    if isinstance(t, IntType):
        return IntType(64, t.signed)
    if isinstance(t, PointerType):
        return UINT64
    return t


def _keys_str(keys: Sequence[Type]) -> str:
    return ", ".join(str(k) for k in keys)


class _Checker(CallChecks):
    #: Whether a ``-c`` command runs (``cpid`` needs one); None: not known, not checked.
    child: bool | None = None

    def __init__(
        self,
        program: ast.Program,
        provider: TypeProvider,
        max_args: int,
        arch_name: str,
        maps: dict[str, MapState],
        report: bool,
    ) -> None:
        self.program = program
        self.provider = provider
        self.max_args = max_args
        self.arch_name = arch_name
        self.maps = maps
        self.report = report
        self.diags: list[Diagnostic] = []
        self.types: dict[int, Type] = {}
        self.vars: dict[str, Type] = {}
        self.use = Usage()
        self.probe: ast.Probe | None = None
        self.summaries: list[ProbeSummary] = []
        #: ``sizeof`` node id -> its value (see :func:`_resolve_sizeof`).
        self.sizes: dict[int, int] = {}
        self.handlers: dict[type, Callable[[ast.Expr], Type]] = {
            ast.IntLit: self.int_lit,  # type: ignore[dict-item]
            ast.StrLit: self.str_lit,  # type: ignore[dict-item]
            ast.Builtin: self.builtin,  # type: ignore[dict-item]
            ast.Ident: self.ident,  # type: ignore[dict-item]
            ast.Var: self.var,  # type: ignore[dict-item]
            ast.Param: self.param,  # type: ignore[dict-item]
            ast.Map: self.map_read,  # type: ignore[dict-item]
            ast.FieldAccess: self.field_access,  # type: ignore[dict-item]
            ast.Index: self.index,  # type: ignore[dict-item]
            ast.Call: self.call,  # type: ignore[dict-item]
            ast.Binary: self.binary,  # type: ignore[dict-item]
            ast.Unary: self.unary,  # type: ignore[dict-item]
            ast.IncDec: self.incdec,  # type: ignore[dict-item]
            ast.Ternary: self.ternary,  # type: ignore[dict-item]
            ast.Cast: self.cast,  # type: ignore[dict-item]
            ast.Sizeof: self.sizeof,  # type: ignore[dict-item]
            ast.Tuple: self.tuple,  # type: ignore[dict-item]
            ast.TupleIndex: self.tuple_index,  # type: ignore[dict-item]
        }

    # -- diagnostics ---------------------------------------------------------
    def error(self, message: str, span: Span | None, hints: Sequence[str] = ()) -> None:
        if self.report:
            self.diags.append(Diagnostic(ERROR, message, span, tuple(hints)))

    def warning(self, message: str, span: Span | None) -> None:
        if self.report:
            self.diags.append(Diagnostic(WARNING, message, span))

    # -- program / probes ----------------------------------------------------
    def run(self) -> None:
        for index, probe in enumerate(self.program.probes):
            self.probe = probe
            self.vars = {}
            self.use = Usage()
            if probe.predicate is not None:
                t = self.expr(probe.predicate)
                if not self.is_condition(t):
                    self.error(f"Invalid type for predicate: {self.kind(t)}", probe.predicate.span)
            self.block(probe.body)
            u = self.use
            self.summaries.append(
                ProbeSummary(
                    index=index,
                    probe=probe,
                    builtins=frozenset(u.builtins),
                    args=frozenset(u.args),
                    tracepoint_fields=frozenset(u.tp_fields),
                    struct_fields=frozenset(u.struct_fields),
                    maps_read=frozenset(u.maps_read),
                    maps_written=frozenset(u.maps_written),
                    calls=frozenset(u.calls),
                    variables=dict(self.vars),
                )
            )

    @property
    def providers(self) -> tuple[str, ...]:
        return self.probe.providers if self.probe is not None else ()

    # -- statements ----------------------------------------------------------
    def block(self, block: ast.Block) -> None:
        for stmt in block.stmts:
            self.stmt(stmt)

    def stmt(self, stmt: ast.Stmt) -> None:
        if isinstance(stmt, ast.ExprStmt):
            self.expr(stmt.expr)
        elif isinstance(stmt, ast.AssignVar):
            self.assign_var(stmt)
        elif isinstance(stmt, ast.AssignMap):
            self.assign_map(stmt)
        elif isinstance(stmt, ast.If):
            self.if_stmt(stmt)
        elif isinstance(stmt, ast.Block):
            self.block(stmt)
        elif isinstance(stmt, ast.While):
            t = self.expr(stmt.cond)
            if not self.is_condition(t):
                self.error(f"Invalid condition in while(): {self.kind(t)}", stmt.cond.span)
            self.block(stmt.body)
        elif isinstance(stmt, ast.Unroll):
            self.unroll(stmt)

    def unroll(self, stmt: ast.Unroll) -> None:
        c = stmt.count
        n = c.value if isinstance(c, ast.IntLit) else None
        if isinstance(c, ast.Unary) and c.op == "-" and isinstance(c.operand, ast.IntLit):
            n = -c.operand.value
        if n is None:
            self.expr(c)
            self.error("unroll takes an integer literal or a positional parameter", c.span)
        elif n > 100:
            self.error("unroll maximum value is 100", stmt.span)
        elif n < 1:
            self.error("unroll minimum value is 1", stmt.span)
        else:
            self.types[id(c)] = INT64
        self.block(stmt.body)

    def if_stmt(self, stmt: ast.If) -> None:
        t = self.expr(stmt.cond)
        if not self.is_condition(t):
            self.error(f"Invalid condition in if(): {self.kind(t)}", stmt.cond.span)
        self.block(stmt.then)
        if isinstance(stmt.orelse, ast.If):
            self.if_stmt(stmt.orelse)
        elif stmt.orelse is not None:
            self.block(stmt.orelse)

    def assign_var(self, stmt: ast.AssignVar) -> None:
        name = stmt.target.name
        if stmt.op != "=":
            current = self.var(stmt.target)
            self.types[id(stmt.target)] = current
            value = self.expr(stmt.value)
            self.arith(ast.COMPOUND_OPS[stmt.op], current, value, stmt.span)
            return
        value = self.expr(stmt.value)
        self.types[id(stmt.target)] = value
        if isinstance(value, (VoidType, AggType)):
            self.error(f"Value '{value}' cannot be assigned to a scratch variable.", stmt.span)
            self.vars.setdefault(name, NONE)
            return
        old = self.vars.get(name)
        if old is None or isinstance(old, NoneType):
            self.vars[name] = value
        elif isinstance(old, TupleType) and isinstance(value, TupleType) and not same_kind(old, value):
            self.error(f"Tuple type mismatch: {old} != {value}.", stmt.span)
        elif not same_kind(old, value):
            self.error(
                f"Type mismatch for ${name}: trying to assign value of type '{value}' "
                f"when variable already contains a value of type '{old}'",
                stmt.span,
            )
        elif isinstance(old, (StringType, TupleType)):
            self.vars[name] = merge_kind(old, value)

    def assign_map(self, stmt: ast.AssignMap) -> None:
        target = stmt.target
        keys = self.map_keys(target)
        self.use.maps_written.add(target.name)
        value_expr = stmt.value
        if stmt.op == "=" and isinstance(value_expr, ast.Call) and self.is_aggregation(value_expr):
            value = self.aggregation(value_expr)
        elif stmt.op != "=":
            state = self.maps.get(target.name)
            current = state.value if state is not None and state.value is not None else INT64
            value_t = self.expr(value_expr)
            self.use.maps_read.add(target.name)
            if isinstance(current, AggType):
                self.error(
                    f"The {stmt.op} operator can not be used on expressions of types "
                    f"{current}, {value_t}",
                    stmt.span,
                )
                value = NONE
            else:
                self.arith(ast.COMPOUND_OPS[stmt.op], current, value_t, stmt.span)
                value = current
        else:
            value = self.expr(value_expr)
            if isinstance(value, VoidType):
                self.error(f"Not a valid assignment: {value}", stmt.span)
                value = NONE
        self.types[id(target)] = value
        self.define_map(target, keys, value, stmt.span)

    # -- maps ----------------------------------------------------------------
    def map_keys(self, m: ast.Map) -> tuple[Type, ...]:
        keys: list[Type] = []
        for k in m.keys:
            t = self.expr(k)
            if isinstance(t, TupleType):
                self.error("tuple cannot be used as a map key. Try a multi-key associative "
                           "array instead (eg `@map[$1, $2] = ...)`.", k.span)
                t = NONE
            if isinstance(t, (RecordType, AggType, VoidType, ArrayType)):
                self.error(f"{t} cannot be used as a map key", k.span)
                t = NONE
            keys.append(_key_type(t))
        return tuple(keys)

    def reconcile_keys(self, m: ast.Map, keys: tuple[Type, ...], span: Span) -> None:
        state = self.maps.setdefault(m.name, MapState())
        if state.keys is None:
            state.keys = keys
            return
        old = state.keys
        if not old and keys:
            self.error(
                f"{m.display} used as a map with an explicit key (non-scalar map), "
                "previously used without an explicit key (scalar map)",
                span,
            )
        elif old and not keys:
            self.error(
                f"{m.display} used as a map without an explicit key (scalar map), "
                "previously used with an explicit key (non-scalar map)",
                span,
            )
        elif len(old) != len(keys) or not all(same_kind(a, b) for a, b in zip(old, keys)):
            self.error(
                f"Argument mismatch for {m.display}: trying to access with arguments: "
                f"'{_keys_str(keys)}' when map expects arguments: '{_keys_str(old)}'",
                span,
            )
        else:
            state.keys = tuple(
                StringType(max(a.size, b.size))
                if isinstance(a, StringType) and isinstance(b, StringType)
                else a
                for a, b in zip(old, keys)
            )

    def define_map(self, m: ast.Map, keys: tuple[Type, ...], value: Type, span: Span) -> None:
        self.reconcile_keys(m, keys, m.span)
        state = self.maps[m.name]
        old = state.value
        if old is None or isinstance(old, NoneType):
            state.value = value
        elif isinstance(old, TupleType) and isinstance(value, TupleType) and not same_kind(old, value):
            self.error(f"Tuple type mismatch: {old} != {value}.", span)
        elif not same_kind(old, value):
            self.error(
                f"Type mismatch for {m.display}: trying to assign value of type '{value}' "
                f"when map already contains a value of type '{old}'",
                span,
            )
        elif isinstance(old, (StringType, TupleType)):
            state.value = merge_kind(old, value)

    def lookup_map(self, m: ast.Map) -> MapState | None:
        state = self.maps.get(m.name)
        if state is None or state.value is None:
            self.error(f"Undefined map: {m.display}", m.span, _hint(m.name, self.map_names(), "@"))
            return None
        return state

    def map_names(self) -> list[str]:
        return [n for n, s in self.maps.items() if s.value is not None]

    def map_read(self, m: ast.Map) -> Type:
        keys = self.map_keys(m)
        self.use.maps_read.add(m.name)
        state = self.lookup_map(m)
        if state is None:
            return NONE
        self.reconcile_keys(m, keys, m.span)
        value = state.value if state.value is not None else NONE
        if isinstance(value, AggType):
            if value.kind == "count":
                return UINT64
            if value.kind in ("sum", "min", "max", "avg"):
                return IntType(64, value.signed)
            self.error(
                f"Map value '{value}' of {m.display} cannot be used in an expression", m.span
            )
            return NONE
        return value

    # -- expressions ---------------------------------------------------------
    def expr(self, e: ast.Expr) -> Type:
        t = self.handlers[type(e)](e)
        self.types[id(e)] = t
        return t

    @staticmethod
    def kind(t: Type) -> str:
        return kind_name(t)

    @staticmethod
    def is_condition(t: Type) -> bool:
        return isinstance(t, (IntType, PointerType, NoneType))

    def int_lit(self, e: ast.IntLit) -> Type:
        return INT64 if e.value < (1 << 63) else UINT64

    def str_lit(self, e: ast.StrLit) -> Type:
        return StringType(len(e.data) + 1)

    def ident(self, e: ast.Ident) -> Type:
        candidates = sorted(set(BUILTINS) | {f"arg{i}" for i in range(self.max_args)})
        self.error(f"Unknown identifier: '{e.name}'", e.span, _hint(e.name, candidates))
        return NONE

    def var(self, e: ast.Var) -> Type:
        t = self.vars.get(e.name)
        if t is None:
            self.error(
                f"Undefined or undeclared variable: ${e.name}",
                e.span,
                _hint(e.name, list(self.vars), "$"),
            )
            return NONE
        return t

    def param(self, e: ast.Param) -> Type:
        self.error(f"positional parameter ${e.text} was not substituted", e.span)  # see .params
        return NONE

    def builtin(self, e: ast.Builtin) -> Type:
        name = e.name
        if name in NOT_IN_BPFTRACE_017 and name in UNSUPPORTED_BUILTINS:
            self.error(f"Unknown identifier: '{name}'", e.span,
                       (f"{name} is not in bpftrace 0.17, the language kprobes follows",))
            return NONE
        if name in UNSUPPORTED_BUILTINS:
            self.error(f"the {name} builtin is not supported yet", e.span)
            return NONE
        if name.startswith("sarg"):
            return self.sarg_builtin(e)
        index = e.arg_index
        if index is not None:
            return self.arg_builtin(e, index)
        self.use.builtins.add(name)
        allowed = BUILTINS[name]
        bad = [p for p in self.providers if p not in allowed]
        if name == "retval" and bad:
            extra = " (try to use args.ret instead)" if "tracepoint" in bad else ""
            self.error(
                "The retval builtin can only be used with 'kretprobe' and 'uretprobe' probes"
                + extra,
                e.span,
            )
            return NONE
        if name == "func" and bad:
            self.error(f"The func builtin can not be used with '{bad[0]}' probes", e.span)
            return NONE
        if name == "args":
            if bad:
                self.error(
                    f"The args builtin can only be used with tracepoint probes ({bad[0]} used here)",
                    e.span,
                )
            else:
                self.error("The args builtin must be used with a field: args.FIELD", e.span)
            return NONE
        if name in ("kstack", "ustack"):
            if bad:
                self.error(f"The {name} builtin can not be used with '{bad[0]}' probes", e.span)
                return NONE
            return StackType(user=name == "ustack")
        if name == "curtask":
            return PointerType(RecordType("struct task_struct"))
        if name == "cpid" and self.child is False:
            self.error("cpid cannot be used without child command", e.span,
                       ("run a command with -c CMD",))
            return NONE
        if name in ("pid", "tid", "rand", "cpid"):
            return UINT32
        if name == "comm":
            return StringType(_COMM_SIZE)
        if name == "func":
            return SymType(kernel=self.providers[0] in ("kprobe", "kretprobe", "kfunc", "kretfunc"))
        if name == "probe":
            return self.probe_name_type()
        if name == "retval" and self.providers == ("kretfunc",):
            return self.kretfunc_retval(e)
        if name == "username":
            return FmtType("username")
        return UINT64

    def probe_name_type(self) -> Type:
        if self.probe is None or any(ap.is_pattern for ap in self.probe.attach_points):
            return StringType(_UNKNOWN_PROBE_SIZE)
        return StringType(max(len(ap.name) for ap in self.probe.attach_points) + 1)

    def sarg_builtin(self, e: ast.Builtin) -> Type:
        """``sargN``: the Nth 8-byte slot above the return address on the stack."""
        bad = [p for p in self.providers if p not in ARG_PROVIDERS or p == "usdt"]
        if bad:
            self.error(
                f"The {e.name} builtin can only be used with 'kprobes' and 'uprobes' probes",
                e.span,
            )
            return NONE
        self.use.builtins.add(e.name)
        return UINT64

    def arg_builtin(self, e: ast.Builtin, index: int) -> Type:
        from .builtins import CTX_ARG_PROVIDERS, RAW_TP_MAX_ARGS

        raw = bool(self.providers) and all(p in CTX_ARG_PROVIDERS for p in self.providers)
        bad = [p for p in self.providers if p not in ARG_PROVIDERS]
        if bad and not raw:
            self.error(
                f"The {e.name} builtin can only be used with 'kprobes' and 'uprobes' probes",
                e.span,
            )
            return NONE
        if raw:
            if index >= RAW_TP_MAX_ARGS:
                self.error(f"rawtracepoint probes have at most {RAW_TP_MAX_ARGS} arguments "
                           f"({e.name} asked)", e.span)
                return NONE
        elif index >= self.max_args:
            self.error(f"{self.arch_name} doesn't support {e.name}", e.span)
            return NONE
        self.use.args.add(index)
        return UINT64

    def field_access(self, e: ast.FieldAccess) -> Type:
        if isinstance(e.expr, ast.Builtin) and e.expr.name == "args":
            return self.tracepoint_field(e)
        base = self.expr(e.expr)
        if isinstance(base, NoneType):
            return NONE
        if e.arrow:
            if not isinstance(base, PointerType) or not isinstance(base.pointee, RecordType):
                self.error(
                    f"Can not access field '{e.field}' on expression of type '{base}' with '->'",
                    e.span,
                    ("'->' needs a pointer to a struct; use '.' on a struct value",)
                    if isinstance(base, RecordType)
                    else (),
                )
                return NONE
            record = base.pointee
        else:
            if isinstance(base, PointerType):
                self.error(
                    f"Can not access field '{e.field}' on type '{base}'. "
                    "Try dereferencing it first, or using '->'",
                    e.span,
                )
                return NONE
            if not isinstance(base, RecordType):
                self.error(
                    f"Can not access field '{e.field}' on expression of type '{base}'", e.span
                )
                return NONE
            record = base
        members = self.provider.struct_members(record.name)
        if members is None:
            self.error(f"Unknown struct/union: '{record.name}'", e.span)
            return NONE
        member = members.get(e.field)
        if member is None:
            self.error(
                f"Struct/union of type '{record.name}' does not contain a field named '{e.field}'",
                e.field_span,
                _hint(e.field, sorted(members)),
            )
            return NONE
        self.use.struct_fields.add((record.name, e.field))
        return _as_value(member.type)

    def tracepoint_field(self, e: ast.FieldAccess) -> Type:
        self.use.builtins.add("args")
        args = e.expr
        self.types[id(args)] = NONE
        if self.providers and all(p in ("kfunc", "kretfunc") for p in self.providers):
            return self.kfunc_arg(e)
        bad = [p for p in self.providers if p != "tracepoint"]
        if bad:
            self.error(
                f"The args builtin can only be used with tracepoint probes ({bad[0]} used here)",
                args.span,
            )
            return NONE
        result: Type | None = None
        attach_points = self.probe.attach_points if self.probe is not None else ()
        for ap in attach_points:
            if ap.is_pattern:
                self.error(
                    "The args builtin is not supported yet with wildcard tracepoints", args.span
                )
                return NONE
            fields = self.provider.tracepoint_fields(ap.target, ap.func)
            if fields is None:
                self.error(f"tracepoint not found: {ap.target}:{ap.func}", ap.span)
                return NONE
            member = fields.get(e.field)
            if member is None:
                self.error(
                    f"Struct/union of type 'struct _tracepoint_{ap.target}_{ap.func}' does not "
                    f"contain a field named '{e.field}'",
                    e.field_span,
                    _hint(e.field, sorted(fields)),
                )
                return NONE
            if result is None:
                result = _as_value(member.type)
        self.use.tp_fields.add(e.field)
        return result if result is not None else NONE

    def function_args(self, ap: ast.AttachPoint) -> tuple[dict[str, MemberInfo], Type] | None:
        """The BTF parameters (offset 8*i in the context) and return type of a kfunc's function."""
        get = getattr(self.provider, "function_args", None)
        if get is None:
            return None
        got = get(ap.func)
        if got is None:
            return None
        params, ret = got
        return dict(params), ret

    def kfunc_arg(self, e: ast.FieldAccess) -> Type:
        """``args->NAME`` / ``args.NAME`` in kfunc/kretfunc: a BTF-typed function parameter."""
        self.use.builtins.add("args")
        result: Type | None = None
        for ap in self.probe.attach_points if self.probe is not None else ():
            if ap.is_pattern:
                self.error("The args builtin is not supported yet with wildcard kfunc probes",
                           e.expr.span, ("name one function, or read the argument in a kprobe "
                                         "with argN",))
                return NONE
            got = self.function_args(ap)
            if got is None:
                self.error(f"no BTF type information for function '{ap.func}'", ap.span,
                           ("kfunc probes need the kernel's BTF (/sys/kernel/btf/vmlinux)",))
                return NONE
            member = got[0].get(e.field)
            if member is None:
                self.error(f"Can't find function parameter {e.field}", e.field_span,
                           _hint(e.field, sorted(got[0])))
                return NONE
            if result is None:
                result = _as_value(member.type)
        self.use.tp_fields.add(e.field)
        return result if result is not None else NONE

    def kretfunc_retval(self, e: ast.Builtin) -> Type:
        """``retval`` of a kretfunc: the function's BTF return type (u64 with no BTF)."""
        aps = self.probe.attach_points if self.probe is not None else ()
        if len(aps) != 1 or aps[0].is_pattern:
            return UINT64
        got = self.function_args(aps[0])
        if got is None:
            return UINT64
        if isinstance(got[1], VoidType):
            self.error(f"'{aps[0].func}' returns void: kretfunc has no retval", e.span)
            return NONE
        return _as_value(got[1])

    def index(self, e: ast.Index) -> Type:
        base = self.expr(e.expr)
        idx = self.expr(e.index)
        if isinstance(base, NoneType):
            return NONE
        if isinstance(base, PointerType):
            elem: Type = base.pointee
        elif isinstance(base, ArrayType):
            elem = base.elem
        else:
            self.error(
                "The array index operator [] can only be used on arrays and pointers, "
                f"found {self.kind(base)}.",
                e.span,
            )
            return NONE
        if not isinstance(e.index, ast.IntLit):
            if not isinstance(idx, NoneType):
                self.error(
                    "The array index operator [] only accepts positive literal integer indices.",
                    e.index.span,
                )
            return NONE
        if isinstance(base, ArrayType) and base.count and e.index.value >= base.count:
            self.error(
                f"the index {e.index.value} is out of bounds for array of size {base.count}",
                e.span,
            )
            return NONE
        if isinstance(elem, VoidType):
            self.error(
                "The array index operator [] cannot be used on a pointer to an unsized type "
                "(void *).",
                e.span,
            )
            return NONE
        return _as_value(elem)

    def arith(self, op: str, lt: Type, rt: Type, span: Span, shown: str | None = None) -> Type:
        """Result type of ``lt op rt`` for arithmetic/bitwise/logical/comparison ``op``."""
        shown = shown or op
        if isinstance(lt, NoneType) or isinstance(rt, NoneType):
            if self.report:
                return NONE
            # Inference walks: a map read before any assignment gave it a type
            # (``@n = @n + 1``) is bpftrace's untyped value, an unsigned 64-bit
            # integer; absent keys read as 0 at run time.
            lt = UINT64 if isinstance(lt, NoneType) else lt
            rt = UINT64 if isinstance(rt, NoneType) else rt
            if not (is_int_like(lt) and is_int_like(rt)):
                return NONE
        if isinstance(lt, PointerType) or isinstance(rt, PointerType):
            return self.pointer_arith(op, lt, rt, span, shown)
        if is_int_like(lt) and is_int_like(rt):
            lbits = lt.bits if isinstance(lt, IntType) else 64
            rbits = rt.bits if isinstance(rt, IntType) else 64
            lsign = lt.signed if isinstance(lt, (IntType, AggType)) else True
            rsign = rt.signed if isinstance(rt, (IntType, AggType)) else True
            signed = lsign if op in ("<<", ">>") else (lsign and rsign)
            return IntType(max(lbits, rbits), signed)
        if type(lt) is not type(rt) and not (
            isinstance(lt, (StringType, SymType)) and isinstance(rt, (StringType, SymType))
        ):
            self.error(f"Type mismatch for '{shown}': comparing {lt} with {rt}", span)
            return NONE
        if op in ("==", "!=") and isinstance(lt, (StringType, SymType)):
            return UINT64
        self.error(f"The {shown} operator can not be used on expressions of types {lt}, {rt}", span)
        return NONE

    def pointer_arith(self, op: str, lt: Type, rt: Type, span: Span, shown: str) -> Type:
        compare = op in ("==", "!=", "<", ">", "<=", ">=")
        if isinstance(lt, PointerType) and isinstance(rt, PointerType):
            if compare or op in ("&&", "||"):
                return UINT64
        elif is_int_like(rt) or is_int_like(lt):
            ptr = lt if isinstance(lt, PointerType) else rt
            if op == "+" or (op == "-" and isinstance(lt, PointerType)):
                return ptr
            if compare or op in ("&&", "||"):
                return INT64
        self.error(f"The {shown} operator can not be used on expressions of types {lt}, {rt}", span)
        return NONE

    def binary(self, e: ast.Binary) -> Type:
        lt = self.expr(e.left)
        rt = self.expr(e.right)
        return self.arith(e.op, lt, rt, e.span)

    def unary(self, e: ast.Unary) -> Type:
        if e.op == "-" and isinstance(e.operand, ast.IntLit):
            self.types[id(e.operand)] = INT64
            if e.operand.value > (1 << 63):
                self.error(f"integer literal -{e.operand.value} is out of range", e.span)
                return NONE
            return INT64
        if e.op == "&":
            self.expr(e.operand)
            self.error("The & (address-of) operator is not supported yet", e.span)
            return NONE
        t = self.expr(e.operand)
        if isinstance(t, NoneType):
            return NONE
        if e.op == "*":
            if isinstance(t, PointerType):
                return _as_value(t.pointee)
            if is_int_like(t):
                return UINT64
        elif e.op == "!" and (is_int_like(t) or isinstance(t, PointerType)):
            return IntType(t.bits, False) if isinstance(t, IntType) else UINT64
        elif is_int_like(t):
            signed = t.signed if isinstance(t, (IntType, AggType)) else True
            if e.op == "+":
                return t if isinstance(t, IntType) else INT64
            return IntType(64, signed)
        self.error(f"The {e.op} operator can not be used on expressions of type '{t}'", e.span)
        return NONE

    def incdec(self, e: ast.IncDec) -> Type:
        target = e.target
        if isinstance(target, ast.Map):
            keys = self.map_keys(target)
            self.use.maps_read.add(target.name)
            self.use.maps_written.add(target.name)
            state = self.maps.get(target.name)
            if state is None or state.value is None:
                self.define_map(target, keys, INT64, e.span)
                self.types[id(target)] = INT64
                return INT64
            self.reconcile_keys(target, keys, target.span)
            value = state.value
            self.types[id(target)] = value
        elif isinstance(target, ast.Var):
            value = self.var(target)
            self.types[id(target)] = value
        else:
            self.expr(target)
            self.error(f"The {e.op} operator must be applied to a map or variable", e.span)
            return NONE
        if isinstance(value, NoneType):
            return NONE
        if not isinstance(value, IntType):
            self.error(
                f"The {e.op} operator can not be used on expressions of type '{value}'", e.span
            )
            return NONE
        return value

    def ternary(self, e: ast.Ternary) -> Type:
        cond = self.expr(e.cond)
        lt = self.expr(e.then)
        rt = self.expr(e.orelse)
        if not self.is_condition(cond):
            self.error(f"Invalid condition in ternary: {self.kind(cond)}", e.cond.span)
            return NONE
        if isinstance(lt, NoneType) or isinstance(rt, NoneType):
            return NONE
        if not same_kind(lt, rt):
            self.error(
                f"Ternary operator must return the same type: have '{lt}' and '{rt}'", e.span
            )
            return NONE
        if isinstance(lt, IntType):
            return IntType(64, lt.signed)
        if isinstance(lt, StringType) and isinstance(rt, StringType):
            return StringType(max(lt.size, rt.size))
        return lt

    def tuple(self, e: ast.Tuple) -> Type:
        """``(a, b, ...)``: integers (kept 64-bit, with their signedness) and strings."""
        elems: list[Type] = []
        for x in e.elems:
            t = self.expr(x)
            if isinstance(t, IntType):
                t = IntType(64, t.signed)
            elif isinstance(t, PointerType):
                t = UINT64
            elif isinstance(t, NoneType):
                return NONE
            elif not isinstance(t, StringType):
                self.error(f"a tuple element cannot be of type {t} (integers and strings only)",
                           x.span)
                return NONE
            elems.append(t)
        return TupleType(tuple(elems))

    def tuple_index(self, e: ast.TupleIndex) -> Type:
        base = self.expr(e.expr)
        if isinstance(base, NoneType):
            return NONE
        if not isinstance(base, TupleType):
            self.error(f"Can not access index {e.index} on expression of type '{base}'", e.span)
            return NONE
        if e.index >= len(base.elems):
            self.error(f"Invalid tuple index: {e.index}. Found {len(base.elems)} elements in tuple.",
                       e.span)
            return NONE
        return base.elems[e.index]

    def sizeof(self, e: ast.Sizeof) -> Type:
        """``sizeof(TYPE|expr)``: an unsigned 64-bit integer (recorded in :attr:`sizes`)."""
        size: int | None
        if e.type is not None:
            tn = e.type
            if tn.pointer:
                size = 8
            elif tn.kind == "int":
                size = tn.bits // 8
            else:
                size = self.record_size(f"{tn.kind} {tn.name}", e.span)
        else:
            assert e.expr is not None
            t = self.expr(e.expr)
            name = e.expr.name if isinstance(e.expr, ast.Builtin) else ""
            # bpftrace 0.17's builtin types: ids and counters are 64-bit, cpid 32-bit
            size = _BUILTIN_SIZES.get(name) if not isinstance(t, NoneType) else None
            if size is None:
                size = self.type_size(t, e.span)
        if size is not None:
            self.sizes[id(e)] = size
        return UINT64

    def record_size(self, name: str, span: Span) -> int | None:
        size_of = getattr(self.provider, "struct_size", None)
        size = size_of(name) if size_of is not None else None
        if size is None:
            self.error(f"Unknown identifier: '{name}'", span)
        return int(size) if size is not None else None

    def type_size(self, t: Type, span: Span) -> int | None:
        if isinstance(t, IntType):
            return t.bits // 8
        if isinstance(t, (PointerType, SymType, StackType)):
            return 8
        if isinstance(t, StringType):
            return t.size
        if isinstance(t, ArrayType):
            elem = self.type_size(t.elem, span)
            return None if elem is None else elem * t.count
        if isinstance(t, RecordType):
            return self.record_size(t.name, span)
        if not isinstance(t, NoneType):
            self.error(f"sizeof() cannot be used on expressions of type '{t}'", span)
        return None

    def cast(self, e: ast.Cast) -> Type:
        src = self.expr(e.expr)
        tn = e.type
        target: Type
        if tn.kind == "int":
            target = IntType(tn.bits, tn.signed)
        else:
            record = RecordType(f"{tn.kind} {tn.name}")
            if tn.pointer == 0:
                self.error(f'Cannot cast to "{record}"', tn.span)
                return NONE
            if self.provider.struct_members(record.name) is None:
                self.error(f"Unknown struct/union: '{record}'", tn.span)
                return NONE
            target = record
        for _ in range(tn.pointer):
            target = PointerType(target)
        if isinstance(src, NoneType):
            return target
        if not (is_int_like(src) or isinstance(src, PointerType)):
            self.error(f'Cannot cast from "{src}" to "{tn.c_name}"', e.span)
            return NONE
        return target


def check(
    program: ast.Program,
    provider: TypeProvider | None = None,
    *,
    max_args: int = DEFAULT_MAX_ARGS,
    arch_name: str = "x86_64",
    params: Sequence[str] = (),
    child: bool | None = None,
) -> CheckedProgram:
    """Type-check ``program``; raise :class:`LangError` listing every error.

    ``provider`` answers struct and tracepoint questions (none known when
    omitted); ``max_args``/``arch_name`` bound ``argN`` (``arch_name`` only
    appears in the error message); ``params`` are the positional parameters
    (``$1``.., ``$#``; see :mod:`.params`), substituted before checking: the
    checked program holds literals in their place.  ``child``: whether a ``-c``
    command will run (False: ``cpid`` is an error, as in bpftrace; None: unchecked).
    """
    from .constants import resolve_constants
    from .params import substitute
    from .provider import DictTypeProvider

    program = substitute(program, params)
    prov: TypeProvider = provider if provider is not None else DictTypeProvider()
    program = resolve_constants(program, prov)  # TCP_CLOSE (BTF enums), AF_INET (#include)
    if "sizeof" in program.text:
        program = _resolve_sizeof(program, prov, max_args, arch_name)
    maps: dict[str, MapState] = {}
    # Inference walks until every map's type is settled (``@a = @b; @b = @a + 1``
    # needs two), then the walk that reports.
    for _ in range(4):
        before = {name: (st.keys, st.value) for name, st in maps.items()}
        _Checker(program, prov, max_args, arch_name, maps, report=False).run()
        if {name: (st.keys, st.value) for name, st in maps.items()} == before:
            break
    checker = _Checker(program, prov, max_args, arch_name, maps, report=True)
    checker.child = child
    checker.run()
    source = Source(program.text, program.filename)
    errors = [d for d in checker.diags if d.severity == ERROR]
    if errors:
        raise LangError(checker.diags, source)
    warnings = tuple(program.warnings) + tuple(checker.diags)
    infos = {
        name: MapInfo(name, state.keys or (), state.value if state.value is not None else NONE)
        for name, state in maps.items()
        if state.value is not None
    }
    return CheckedProgram(program, tuple(checker.summaries), infos, warnings, checker.types)


#: ``sizeof(builtin)`` as bpftrace 0.17 gives it where its type differs from this checker's.
_BUILTIN_SIZES = {"pid": 8, "tid": 8, "uid": 8, "gid": 8, "cpu": 8, "rand": 8, "cgroup": 8,
                  "nsecs": 8, "elapsed": 8, "numaid": 8, "probe": 8, "func": 8, "cpid": 4}
_UINT64_NAME = ast.TypeName("int", "uint64", 0, Span(0, 0, 0, 0, 0, 0), bits=64, signed=False)


def _resolve_sizeof(program: ast.Program, prov: TypeProvider, max_args: int,
                    arch_name: str) -> ast.Program:
    """``program`` with every ``sizeof(...)`` replaced by ``(uint64)N``: a first check
    computes the sizes (reporting every error of the program, as the real check would)."""
    from .params import rewrite

    maps: dict[str, MapState] = {}
    for _ in range(4):
        _Checker(program, prov, max_args, arch_name, maps, report=False).run()
    checker = _Checker(program, prov, max_args, arch_name, maps, report=True)
    checker.run()
    if any(d.severity == ERROR for d in checker.diags):
        raise LangError(checker.diags, Source(program.text, program.filename))
    sizes = checker.sizes

    def value(node: object) -> ast.Expr | None:
        if isinstance(node, ast.Sizeof) and id(node) in sizes:
            return ast.Cast(_UINT64_NAME, ast.IntLit(sizes[id(node)], node.span), node.span)
        return None

    result: ast.Program = rewrite(program, value)
    return result
