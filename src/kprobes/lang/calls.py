"""Checks for function calls: printf, print, str, ksym, map functions, aggregations.

:class:`CallChecks` is mixed into the checker; it relies on the checker's
``expr``/``error``/map helpers declared below.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import ast
from .builtins import (
    AGGREGATIONS,
    BUILTINS,
    FUNCTIONS,
    MAX_STACK,
    NOT_IN_BPFTRACE_017,
    REFUSED_REASONS,
    REGISTERS,
    SIGNALS,
    STACK_MODES,
    UNSUPPORTED_FUNCTIONS,
)
from .diagnostics import close_matches
from .printf import check_format_args
from .source import Span
from .state import MapState, Usage
from .typesys import (
    NONE,
    UINT64,
    VOID,
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
    Type,
    VoidType,
    is_int_like,
    kind_name,
)

__all__ = ["CallChecks", "MAX_STRLEN", "pton_bytes", "signal_number"]

#: bpftrace's default BPFTRACE_MAX_STRLEN.
MAX_STRLEN = 64
_MAX_LHIST_BUCKETS = 1000


def _literal_int(e: ast.Expr) -> int | None:
    """The value of an integer literal, also a negated one (``-5``)."""
    if isinstance(e, ast.IntLit):
        return e.value
    if isinstance(e, ast.Unary) and e.op == "-" and isinstance(e.operand, ast.IntLit):
        return -e.operand.value
    return None


class CallChecks:
    """Function-call checking, mixed into the checker."""

    use: Usage
    maps: dict[str, MapState]
    types: dict[int, Type]

    # Provided by the checker.
    def expr(self, e: ast.Expr) -> Type:
        raise NotImplementedError

    def error(self, message: str, span: Span | None, hints: Sequence[str] = ()) -> None:
        raise NotImplementedError

    def warning(self, message: str, span: Span | None) -> None:
        raise NotImplementedError

    def map_keys(self, m: ast.Map) -> tuple[Type, ...]:
        raise NotImplementedError

    def reconcile_keys(self, m: ast.Map, keys: tuple[Type, ...], span: Span) -> None:
        raise NotImplementedError

    def lookup_map(self, m: ast.Map) -> MapState | None:
        raise NotImplementedError

    @property
    def providers(self) -> tuple[str, ...]:
        raise NotImplementedError

    # -- entry points ------------------------------------------------------
    @staticmethod
    def is_aggregation(call: ast.Call) -> bool:
        return call.name in AGGREGATIONS

    def call(self, call: ast.Call) -> Type:
        name = call.name
        if name in NOT_IN_BPFTRACE_017:
            self.error(f"Unknown function: '{name}'", call.span,
                       (f"{name}() is not in bpftrace 0.17, the language kprobes follows",))
            return NONE
        if name in UNSUPPORTED_FUNCTIONS:
            reason = REFUSED_REASONS.get(name)
            self.error(f"{name}() is not supported yet", call.span, (reason,) if reason else ())
            return NONE
        if name not in FUNCTIONS:
            close = close_matches(name, sorted(FUNCTIONS))
            hints = (f"Did you mean '{close[0]}'?",) if close else ()
            self.error(f"Unknown function: '{name}'", call.span, hints)
            return NONE
        self.use.calls.add(name)
        if name in AGGREGATIONS:
            self.error(f"{name}() should be directly assigned to a map", call.span)
            return NONE
        if not self.check_nargs(call):
            return VOID if name not in ("str", "ksym") else NONE
        handler = getattr(self, f"call_{name}")
        result: Type = handler(call)
        return result

    def aggregation(self, call: ast.Call) -> Type:
        """Check ``agg(...)`` on the right of ``@m = agg(...)``; returns its AggType."""
        self.use.calls.add(call.name)
        self.types[id(call)] = NONE
        if not self.check_nargs(call):
            return NONE
        arg_types = [self.expr(a) for a in call.args]
        result: Type
        if call.name == "count":
            result = AggType("count", False)
        elif call.name == "lhist":
            result = self.check_lhist(call, arg_types)
        else:
            if not self.check_int_arg(call, 0, arg_types[0]):
                return NONE
            signed = True
            if call.name in ("sum", "min", "max") and isinstance(arg_types[0], IntType):
                signed = arg_types[0].signed
            result = AggType(call.name, signed)
            if call.name == "hist" and len(call.args) == 2:
                bits = self.literal_arg(call, 1)
                if bits is not None and not 0 <= bits <= 5:
                    self.error(f"hist: bits {bits} must be 0..5", call.span)
        self.types[id(call)] = result
        return result

    # -- argument helpers --------------------------------------------------
    def check_nargs(self, call: ast.Call) -> bool:
        lo, hi = FUNCTIONS[call.name]
        n = len(call.args)
        name = call.name
        if lo == hi and n != lo:
            need = {0: "no arguments", 1: "one argument"}.get(lo, f"{lo} arguments")
            self.error(f"{name}() requires {need} ({n} provided)", call.span)
            return False
        if n < lo:
            need = "one argument" if lo == 1 else f"{lo} arguments"
            self.error(f"{name}() requires at least {need} ({n} provided)", call.span)
            return False
        if n > hi:
            need = {0: "requires no arguments", 1: "takes up to one argument"}.get(
                hi, f"takes up to {hi} arguments"
            )
            self.error(f"{name}() {need} ({n} provided)", call.span)
            return False
        return True

    def check_int_arg(self, call: ast.Call, index: int, t: Type) -> bool:
        if isinstance(t, NoneType) or is_int_like(t):
            return True
        self.error(
            f"{call.name}() only supports integer arguments ({kind_name(t)} provided)", call.span
        )
        return False

    def literal_arg(self, call: ast.Call, index: int) -> int | None:
        arg = call.args[index]
        value = _literal_int(arg)
        if value is None:
            t = self.types.get(id(arg)) or self.expr(arg)
            self.error(
                f"{call.name}() expects a integer literal ({kind_name(t)} provided)", call.span
            )
        return value

    def string_literal_arg(self, call: ast.Call, index: int) -> str | None:
        arg = call.args[index]
        if isinstance(arg, ast.StrLit):
            return arg.value
        t = self.expr(arg)
        self.error(f"{call.name}() expects a string literal ({kind_name(t)} provided)", call.span)
        return None

    def map_arg(self, call: ast.Call, index: int) -> ast.Map | None:
        arg = call.args[index]
        if not isinstance(arg, ast.Map):
            self.expr(arg)
            self.error(f"{call.name}() expects a map argument", call.span)
            return None
        return arg

    # -- aggregations ------------------------------------------------------
    def check_lhist(self, call: ast.Call, arg_types: Sequence[Type]) -> Type:
        if not self.check_int_arg(call, 0, arg_types[0]):
            return NONE
        lo, hi, step = (self.literal_arg(call, i) for i in (1, 2, 3))
        if lo is None or hi is None or step is None:
            return NONE
        if step <= 0:
            self.error(f"lhist() step must be >= 1 ({step} provided)", call.span)
        elif (hi - lo) // step > _MAX_LHIST_BUCKETS:
            self.error(
                f"lhist() too many buckets, must be <= {_MAX_LHIST_BUCKETS} "
                f"(would need {(hi - lo) // step})",
                call.span,
            )
        if lo > hi:
            self.error(
                f"lhist() min must be less than max (provided min {lo} and max {hi})", call.span
            )
        elif step > 0 and hi - lo < step:
            self.error(
                f"lhist() step is too large for the given range "
                f"(provided step {step} for range {hi - lo})",
                call.span,
            )
        return AggType("lhist", True)

    # -- ordinary functions ------------------------------------------------
    def call_printf(self, call: ast.Call) -> Type:
        fmt = self.string_literal_arg(call, 0)
        arg_types = [self.expr(a) for a in call.args[1:]]
        if fmt is not None:
            msg = check_format_args(fmt, arg_types)
            if msg:
                self.error(msg, call.span)
        return VOID

    def call_time(self, call: ast.Call) -> Type:
        if call.args:
            self.string_literal_arg(call, 0)
        return VOID

    def call_exit(self, call: ast.Call) -> Type:
        if call.args:
            self.check_int_arg(call, 0, self.expr(call.args[0]))
        return VOID

    def call_str(self, call: ast.Call) -> Type:
        t = self.expr(call.args[0])
        ok = isinstance(t, (NoneType, IntType, PointerType, StringType))
        if not ok:
            self.error(
                f"str() expects an integer or a pointer type as first argument ({t} provided)",
                call.span,
            )
        size = MAX_STRLEN
        if len(call.args) == 2:
            length_t = self.expr(call.args[1])
            if self.check_int_arg(call, 1, length_t):
                # str(x, n) keeps n characters (bpftrace 0.17, checked on a host):
                # a buffer of n + 1 bytes, at most BPFTRACE_MAX_STRLEN (63 characters).
                value = _literal_int(call.args[1])
                if value is not None and value < 0:
                    self.error(f"str: cannot use negative length ({value})", call.span)
                elif value is not None and value > MAX_STRLEN:
                    self.warning(
                        f"length param ({value}) is too long and will be shortened to "
                        f"{MAX_STRLEN} bytes (see BPFTRACE_MAX_STRLEN)",
                        call.span,
                    )
                elif value is not None:
                    size = min(value + 1, MAX_STRLEN)
        if isinstance(t, StringType) and len(call.args) == 1:
            size = min(size, t.size)
        return StringType(size) if ok else NONE

    def call_ksym(self, call: ast.Call) -> Type:
        t = self.expr(call.args[0])
        if not isinstance(t, (NoneType, IntType, PointerType)):
            self.error("ksym() expects an integer or pointer argument", call.span)
            return NONE
        return SymType(kernel=True)

    def call_usym(self, call: ast.Call) -> Type:
        t = self.expr(call.args[0])
        if not isinstance(t, (NoneType, IntType, PointerType)):
            self.error("usym() expects an integer or pointer argument", call.span)
            return NONE
        return SymType(kernel=False)

    def call_kstack(self, call: ast.Call) -> Type:
        return self.stack_call(call, user=False)

    def call_ustack(self, call: ast.Call) -> Type:
        return self.stack_call(call, user=True)

    def stack_call(self, call: ast.Call, user: bool) -> Type:
        """``kstack(MODE)``, ``kstack(N)``, ``kstack(MODE, N)`` (and ``ustack``)."""
        name = call.name
        bad = [p for p in self.providers if p not in BUILTINS[name]]
        if bad:
            self.error(f"{name}() can not be used with '{bad[0]}' probes", call.span)
            return NONE
        mode, limit = "bpftrace", 127
        args = list(call.args)
        if args and isinstance(args[0], ast.Ident):
            mode = args.pop(0).name  # type: ignore[union-attr]
            if mode not in STACK_MODES:
                self.error(f"{name}: unknown stack mode '{mode}' (expected "
                           + ", ".join(STACK_MODES) + ")", call.span)
                return NONE
        if args:
            value = args[0]
            if not isinstance(value, ast.IntLit) or len(args) > 1:
                self.error(f"{name}: expected a stack mode and/or a literal frame limit", call.span)
                return NONE
            limit = value.value
            if not 0 < limit <= MAX_STACK:
                self.error(f"{name}: limit must be 1..{MAX_STACK}, not {limit}", value.span)
                return NONE
        return StackType(user=user, mode=mode, limit=limit)

    def call_print(self, call: ast.Call) -> Type:
        arg = call.args[0]
        if isinstance(arg, ast.Map) and not arg.indexed:
            self.use.maps_read.add(arg.name)
            state = self.lookup_map(arg)
            self.types[id(arg)] = state.value if state and state.value else NONE
            for i in range(1, len(call.args)):
                self.literal_arg(call, i)
            return VOID
        if isinstance(arg, ast.Map):
            state = self.maps.get(arg.name)
            if state is not None and isinstance(state.value, AggType):
                self.map_keys(arg)
                self.error(
                    f"Map type {state.value} cannot print the value of individual keys. "
                    "You must print the whole map.",
                    call.span,
                )
                return VOID
        t = self.expr(arg)
        if len(call.args) != 1:
            self.error(f"Non-map print() only takes 1 argument, {len(call.args)} found", call.span)
        elif isinstance(t, VoidType):
            self.error(f"{t} type passed to print() is not printable", call.span)
        return VOID

    def whole_map_call(self, call: ast.Call) -> Type:
        m = self.map_arg(call, 0)
        if m is None:
            return VOID
        self.use.maps_written.add(m.name)
        if m.indexed:
            self.map_keys(m)
            self.error(f"The map passed to {call.name}() should not be indexed by a key", call.span)
            return VOID
        state = self.lookup_map(m)
        self.types[id(m)] = state.value if state and state.value else NONE
        return VOID

    call_clear = whole_map_call
    call_zero = whole_map_call

    def call_delete(self, call: ast.Call) -> Type:
        m = self.map_arg(call, 0)
        if m is None:
            return VOID
        self.use.maps_written.add(m.name)
        if len(call.args) == 2:
            if m.indexed:
                self.map_keys(m)
                self.expr(call.args[1])
                self.error("delete() expects a map without a key and a key argument", call.span)
                return VOID
            keys: tuple[Type, ...] = (self.key_of(call.args[1]),)
        else:
            keys = self.map_keys(m)
        state = self.lookup_map(m)
        if state is not None:
            self.reconcile_keys(m, keys, m.span)
            self.types[id(m)] = state.value if state.value else NONE
        return VOID

    def key_of(self, e: ast.Expr) -> Type:
        t = self.expr(e)
        if isinstance(t, IntType):
            return IntType(64, t.signed)
        if isinstance(t, PointerType):
            return IntType(64, False)
        if isinstance(t, RecordType):
            self.error(f"{t} cannot be used as a map key", e.span)
            return NONE
        return t

    # -- functions formatted or resolved in user space ------------------------------
    def only_in(self, call: ast.Call, allowed: Sequence[str], what: str) -> bool:
        """bpftrace's ``NAME can not be used with "P" probes`` for a probe outside ``allowed``."""
        bad = [p for p in self.providers if p not in allowed]
        if bad:
            self.error(f'{call.name} can not be used with "{bad[0]}" probes', call.span,
                       (f"{call.name}() works in {what}",))
            return False
        return True

    def call_strftime(self, call: ast.Call) -> Type:
        fmt = self.string_literal_arg(call, 0)
        if not self.check_int_arg(call, 1, self.expr(call.args[1])) or fmt is None:
            return NONE
        return FmtType("strftime", 8, fmt)

    def call_strncmp(self, call: ast.Call) -> Type:
        ok = True
        for i in (0, 1):
            t = self.expr(call.args[i])
            if not isinstance(t, (NoneType, StringType)):
                self.error(f"strncmp() expects a string argument {i + 1} ({kind_name(t)} "
                           "provided)", call.args[i].span)
                ok = False
        self.expr(call.args[2])
        n = _literal_int(call.args[2])
        if n is None:
            self.error("Builtin strncmp requires a literal size (an integer constant)",
                       call.args[2].span)
            return NONE
        if n < 0:
            self.error("Builtin strncmp requires a non-negative size", call.span)
            return NONE
        return UINT64 if ok else NONE

    def call_strcontains(self, call: ast.Call) -> Type:
        ok = True
        for a in call.args:
            t = self.expr(a)
            if not isinstance(t, (NoneType, StringType)):
                self.error(f"strcontains() only supports string arguments ({kind_name(t)} provided)",
                           call.span)
                ok = False
        return UINT64 if ok else NONE

    def call_bswap(self, call: ast.Call) -> Type:
        t = self.expr(call.args[0])
        if not self.check_int_arg(call, 0, t):
            return NONE
        return IntType(t.bits if isinstance(t, IntType) else 64, False)

    def call_strerror(self, call: ast.Call) -> Type:
        if not self.check_int_arg(call, 0, self.expr(call.args[0])):
            return NONE
        return FmtType("strerror")

    def call_kaddr(self, call: ast.Call) -> Type:
        return UINT64 if self.string_literal_arg(call, 0) is not None else NONE

    def call_uaddr(self, call: ast.Call) -> Type:
        ok = self.only_in(call, ("uprobe", "uretprobe", "usdt"),
                          "uprobes (the symbol is looked up in the probed binary)")
        sym = self.string_literal_arg(call, 0)
        return UINT64 if ok and sym is not None else NONE

    def call_cgroupid(self, call: ast.Call) -> Type:
        return UINT64 if self.string_literal_arg(call, 0) is not None else NONE

    def call_kptr(self, call: ast.Call) -> Type:
        t = self.expr(call.args[0])
        if not isinstance(t, (NoneType, IntType, PointerType)):
            self.error(f"{call.name}() expects an integer or pointer argument "
                       f"({kind_name(t)} provided)", call.span)
            return NONE
        return t

    call_uptr = call_kptr

    def call_pton(self, call: ast.Call) -> Type:
        text = self.string_literal_arg(call, 0)
        if text is None:
            return NONE
        raw = pton_bytes(text)
        if raw is None:
            self.error(f"pton() expects an string argument of an IPv4/IPv6 address, got {text}",
                       call.span)
            return NONE
        return ArrayType(IntType(8, False), len(raw))

    def call_ntop(self, call: ast.Call) -> Type:
        types = [self.expr(a) for a in call.args]
        addr = types[-1]
        if len(types) == 2 and not self.check_int_arg(call, 0, types[0]):
            return NONE
        if isinstance(addr, NoneType):
            return NONE
        size = _byte_size(addr)
        if size not in (4, 16) and not isinstance(addr, IntType):
            self.error("ntop() argument must be 4 or 16 bytes in size", call.span)
            return NONE
        return FmtType("ntop", 24)

    def call_macaddr(self, call: ast.Call) -> Type:
        if isinstance(call.args[0], ast.StrLit):
            self.error("macaddr() does not support literal string arguments", call.span)
            return NONE
        t = self.expr(call.args[0])
        if isinstance(t, NoneType):
            return NONE
        if not isinstance(t, PointerType) and _byte_size(t) != 6:
            self.error("macaddr() argument must be 6 bytes in size", call.span)
            return NONE
        return FmtType("macaddr", 8)

    def call_buf(self, call: ast.Call) -> Type:
        t = self.expr(call.args[0])
        if isinstance(t, NoneType):
            return NONE
        if len(call.args) == 1:
            size = _byte_size(t) if isinstance(t, (ArrayType, StringType)) else None
            if size is None:
                self.error(f"buf() expects a length argument for non-array type {kind_name(t)}",
                           call.span)
                return NONE
        else:
            self.expr(call.args[1])
            lit = _literal_int(call.args[1])
            if lit is None:  # computed at run time: at most BPFTRACE_MAX_STRLEN bytes
                lit = MAX_STRLEN
            if lit < 0:
                self.error(f"buf cannot use negative length ({lit})", call.span)
                return NONE
            size = lit
            if not isinstance(t, (IntType, PointerType, ArrayType, StringType)):
                self.error(f"buf() expects an integer, pointer or array argument "
                           f"({kind_name(t)} provided)", call.span)
                return NONE
        if size > MAX_STRLEN:
            self.warning(f"length param ({size}) is too long and will be shortened to "
                         f"{MAX_STRLEN} bytes (see BPFTRACE_MAX_STRLEN)", call.span)
            size = MAX_STRLEN
        return FmtType("buf", 8 + size)

    def call_reg(self, call: ast.Call) -> Type:
        ok = self.only_in(call, ("kprobe", "kretprobe", "uprobe", "uretprobe", "usdt", "profile"),
                          "kprobes, uprobes and profile probes (they have registers)")
        name = self.string_literal_arg(call, 0)
        if name is None:
            return NONE
        arch = getattr(self, "arch_name", "x86_64")
        names = REGISTERS.get(arch, ())
        if name not in names:
            close = close_matches(name, names)
            self.error(f"'{name}' is not a valid register on this architecture ({arch})",
                       call.span, (f"Did you mean '{close[0]}'?",) if close else ())
            return NONE
        return UINT64 if ok else NONE

    def call_join(self, call: ast.Call) -> Type:
        t = self.expr(call.args[0])
        if not isinstance(t, (NoneType, IntType, PointerType)):
            self.error(f"join() only supports int or pointer arguments ({kind_name(t)} provided)",
                       call.span)
        if len(call.args) == 2:
            self.string_literal_arg(call, 1)
        return VOID

    def printf_like(self, call: ast.Call) -> Type:
        fmt = self.string_literal_arg(call, 0)
        arg_types = [self.expr(a) for a in call.args[1:]]
        if fmt is not None:
            msg = check_format_args(fmt, arg_types, call.name)
            if msg:
                self.error(msg, call.span)
        return VOID

    call_cat = printf_like

    call_system = printf_like

    def call_signal(self, call: ast.Call) -> Type:
        self.only_in(call, ("kprobe", "kretprobe", "uprobe", "uretprobe", "usdt", "tracepoint",
                            "profile"), "probes that run in the kernel for a task")
        arg = call.args[0]
        if isinstance(arg, ast.StrLit):
            self.types[id(arg)] = StringType(len(arg.data) + 1)
            if signal_number(arg.value) is None:
                self.error(f"Invalid signal: {arg.value}", call.span,
                           ("signals are named like SIGKILL or KILL, or numbered 1..64",))
            return VOID
        t = self.expr(arg)
        if not self.check_int_arg(call, 0, t):
            return VOID
        value = _literal_int(arg)
        if value is not None and not 1 <= value <= 64:
            self.error(f"sig must be between 1 and 64, not {value}", call.span)
        return VOID

    def call_override(self, call: ast.Call) -> Type:
        self.only_in(call, ("kprobe",), "kprobes on functions marked ALLOW_ERROR_INJECTION")
        self.check_int_arg(call, 0, self.expr(call.args[0]))
        return VOID


def _byte_size(t: Type) -> int | None:
    if isinstance(t, IntType):
        return t.bits // 8
    if isinstance(t, ArrayType) and isinstance(t.elem, IntType):
        return t.count * t.elem.bits // 8
    if isinstance(t, StringType):
        return t.size
    return None


def pton_bytes(text: str) -> bytes | None:
    """``pton("1.2.3.4")``: the 4 or 16 network-order bytes, None when not an address."""
    import ipaddress

    try:
        return ipaddress.ip_address(text).packed
    except ValueError:
        return None


def signal_number(name: str) -> int | None:
    """``SIGKILL``/``KILL``/``9`` -> 9; None when not a signal."""
    n = name.upper()
    if n.isdigit():
        v = int(n)
        return v if 1 <= v <= 64 else None
    return SIGNALS.get(n[3:] if n.startswith("SIG") else n)
