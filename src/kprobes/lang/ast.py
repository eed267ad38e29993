"""AST of a bpftrace program: frozen value classes, each with its source span.

Expressions::

    IntLit StrLit Builtin Ident Var Param Map FieldAccess Index Call
    Binary Unary IncDec Ternary Cast Sizeof Tuple TupleIndex

Statements::

    ExprStmt AssignVar AssignMap If Return Block While Unroll Jump

A :class:`Program` is a list of :class:`Probe`; a probe has one or more
:class:`AttachPoint`, an optional predicate and a :class:`Block`.

Nodes compare by value (spans included), so two occurrences of ``comm`` in
different places are different nodes.

The node classes are made by :func:`dataclass` below, not :mod:`dataclasses`:
the same frozen value semantics (``__init__`` by field order with defaults,
``__eq__``/``__hash__`` over the compared fields, ``__repr__``, assignment
refused, ``__dataclass_fields__`` naming the fields) without generating and
compiling five methods per class at import, which cost a third of a second
on a slow VM for every ``kprobes -e`` run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, TypeVar, Union

from .._record import FrozenInstanceError
from .diagnostics import Diagnostic
from .source import Span

_T = TypeVar("_T")

__all__ = [
    "IntLit", "StrLit", "Builtin", "Ident", "Var", "Param", "Map", "FieldAccess", "Index",
    "Call", "Binary", "Unary", "IncDec", "Ternary", "Cast", "TypeName", "Expr", "Sizeof",
    "Tuple", "TupleIndex",
    "ExprStmt", "AssignVar", "AssignMap", "If", "Return", "Block", "Stmt", "While", "Unroll", "Jump",
    "AttachPoint", "Probe", "Program",
    "BINARY_OPS", "COMPOUND_OPS", "walk",
]  # fmt: skip

#: Binary operators, C precedence (higher binds tighter).
BINARY_OPS = {
    "||": 1, "&&": 2, "|": 3, "^": 4, "&": 5,
    "==": 6, "!=": 6, "<": 7, ">": 7, "<=": 7, ">=": 7,
    "<<": 8, ">>": 8, "+": 9, "-": 9, "*": 10, "/": 10, "%": 10,
}  # fmt: skip
#: Compound assignment operator -> the binary operator it applies.
COMPOUND_OPS = {
    "+=": "+", "-=": "-", "*=": "*", "/=": "/", "%=": "%",
    "&=": "&", "|=": "|", "^=": "^", "<<=": "<<", ">>=": ">>",
}  # fmt: skip


if TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:
    def dataclass_transform(**_kw: object) -> Callable[[_T], _T]:
        return lambda f: f

_MISSING: Any = object()
_C = TypeVar("_C")


class _Field:
    """A field's options (what ``dataclasses.field`` offers that the AST uses)."""

    __slots__ = ("name", "default", "compare")

    def __init__(self, default: Any = _MISSING, compare: bool = True) -> None:
        self.name = ""
        self.default = default
        self.compare = compare


def field(*, default: Any = _MISSING, compare: bool = True) -> Any:
    """A field with a ``default`` and/or left out of ``==`` and ``hash`` (``compare=False``)."""
    return _Field(default, compare)


def _frozen_setattr(self: object, name: str, value: object) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: object, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


@dataclass_transform(field_specifiers=(field,))
def dataclass(*, frozen: bool = True) -> Callable[[type[_C]], type[_C]]:
    """Make a class a frozen value type over its annotated fields (see the module docstring)."""

    def wrap(cls: type[_C]) -> type[_C]:
        names = tuple(cls.__dict__.get("__annotations__", {}))
        fields: Dict[str, _Field] = {}
        for name in names:
            value = cls.__dict__.get(name, _MISSING)
            f = value if isinstance(value, _Field) else _Field(value)
            f.name = name
            fields[name] = f
            if f.default is _MISSING:
                if name in cls.__dict__:
                    delattr(cls, name)
            else:
                setattr(cls, name, f.default)
        defaults = {n: f.default for n, f in fields.items() if f.default is not _MISSING}
        compared = tuple(n for n, f in fields.items() if f.compare)
        count = len(names)
        qualname = cls.__qualname__
        setattr_ = object.__setattr__

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            if len(args) > count:
                raise TypeError(f"{qualname}() takes {count} arguments, {len(args)} given")
            for i, name in enumerate(names):
                if i < len(args):
                    value = args[i]
                    if name in kwargs:
                        raise TypeError(f"{qualname}() got multiple values for {name!r}")
                elif name in kwargs:
                    value = kwargs.pop(name)
                elif name in defaults:
                    value = defaults[name]
                else:
                    raise TypeError(f"{qualname}() missing required argument: {name!r}")
                setattr_(self, name, value)
            if kwargs:
                raise TypeError(f"{qualname}() got an unexpected keyword argument {next(iter(kwargs))!r}")

        def key(self: Any) -> tuple[Any, ...]:
            return tuple([getattr(self, n) for n in compared])

        def __eq__(self: Any, other: object) -> bool:
            if other.__class__ is not self.__class__:
                return NotImplemented
            return key(self) == key(other)

        def __hash__(self: Any) -> int:
            return hash(key(self))

        def __repr__(self: Any) -> str:
            inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
            return f"{qualname}({inner})"

        methods: Dict[str, object] = {"__init__": __init__, "__eq__": __eq__, "__hash__": __hash__,
                                      "__repr__": __repr__, "__dataclass_fields__": fields,
                                      "__match_args__": names}
        if frozen:
            methods.update(__setattr__=_frozen_setattr, __delattr__=_frozen_delattr)
        for attr, value in methods.items():
            setattr(cls, attr, value)
        return cls

    return wrap


# -- expressions ------------------------------------------------------------
@dataclass(frozen=True)
class IntLit:
    """An integer literal (``42``, ``0x10``, ``1_000``, ``0755``); value in 0..2**64-1."""

    value: int
    span: Span


@dataclass(frozen=True)
class StrLit:
    """A string literal with escapes decoded.

    Bytes that are not UTF-8 (``"\\xff"``) are kept as surrogate escapes:
    ``value.encode("utf-8", "surrogateescape")`` gives the exact bytes.
    """

    value: str
    span: Span

    @property
    def data(self) -> bytes:
        """The literal's bytes (without the terminating NUL)."""
        return self.value.encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class Builtin:
    """A builtin variable: ``pid``, ``comm``, ``arg0``, ``retval``, ``args``..."""

    name: str
    span: Span

    @property
    def arg_index(self) -> int | None:
        """N for ``argN``, else None."""
        if self.name.startswith("arg") and self.name[3:].isdigit():
            return int(self.name[3:])
        return None


@dataclass(frozen=True)
class Ident:
    """A bare identifier that is no builtin (the checker reports it)."""

    name: str
    span: Span


@dataclass(frozen=True)
class Var:
    """A scratch variable ``$name`` (name without the ``$``)."""

    name: str
    span: Span


@dataclass(frozen=True)
class Param:
    """A positional parameter ``$1`` / ``$#`` (text after the ``$``)."""

    text: str
    span: Span


@dataclass(frozen=True)
class Map:
    """``@name`` or ``@name[k1, k2]``; ``name`` is "" for the anonymous map ``@``."""

    name: str
    keys: tuple[Expr, ...]
    span: Span
    indexed: bool = False

    @property
    def display(self) -> str:
        return "@" + self.name


@dataclass(frozen=True)
class FieldAccess:
    """``expr.field`` (``arrow`` False) or ``expr->field`` (``arrow`` True)."""

    expr: Expr
    field: str
    arrow: bool
    span: Span
    field_span: Span


@dataclass(frozen=True)
class Index:
    """``expr[index]`` on a pointer or array (map subscripts are :class:`Map`)."""

    expr: Expr
    index: Expr
    span: Span


@dataclass(frozen=True)
class Call:
    """A function call ``name(args...)``."""

    name: str
    args: tuple[Expr, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Binary:
    """``left op right`` for an operator of :data:`BINARY_OPS`."""

    op: str
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True)
class Unary:
    """Prefix ``-``, ``+``, ``!``, ``~``, ``*`` (dereference) or ``&`` (address-of)."""

    op: str
    operand: Expr
    span: Span


@dataclass(frozen=True)
class IncDec:
    """``++x``/``x++``/``--x``/``x--`` on a map or variable."""

    op: str
    prefix: bool
    target: Expr
    span: Span


@dataclass(frozen=True)
class Ternary:
    """``cond ? then : orelse``."""

    cond: Expr
    then: Expr
    orelse: Expr
    span: Span


@dataclass(frozen=True)
class TypeName:
    """A type written in a cast.

    ``kind`` is ``"int"`` (``name`` like ``uint32``, with ``bits``/``signed``)
    or ``"struct"``/``"union"`` (``name`` like ``task_struct``).
    ``pointer`` counts the ``*``.
    """

    kind: str
    name: str
    pointer: int
    span: Span
    bits: int = 0
    signed: bool = False

    @property
    def c_name(self) -> str:
        base = self.name if self.kind == "int" else f"{self.kind} {self.name}"
        return base + (" " + "*" * self.pointer if self.pointer else "")


@dataclass(frozen=True)
class Cast:
    """``(type)expr``."""

    type: TypeName
    expr: Expr
    span: Span


@dataclass(frozen=True)
class Tuple:
    """``(a, b, ...)``: a tuple of two or more expressions."""

    elems: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class TupleIndex:
    """``expr.N``: element ``index`` of a tuple."""

    expr: Expr
    index: int
    span: Span


@dataclass(frozen=True)
class Sizeof:
    """``sizeof(TYPE)`` (``type``) or ``sizeof(expr)`` (``expr``): the checker replaces it
    by its value, an unsigned 64-bit literal; engines never see it."""

    type: TypeName | None
    expr: Expr | None
    span: Span


Expr = Union[
    IntLit, StrLit, Builtin, Ident, Var, Param, Map, FieldAccess, Index, Call,
    Binary, Unary, IncDec, Ternary, Cast, Sizeof, Tuple, TupleIndex,
]  # fmt: skip


# -- statements -------------------------------------------------------------
@dataclass(frozen=True)
class ExprStmt:
    """An expression evaluated for its effect (``printf(...)``, ``@x++``)."""

    expr: Expr
    span: Span


@dataclass(frozen=True)
class AssignVar:
    """``$v = e`` or ``$v op= e`` (``op`` is ``"="`` or a key of :data:`COMPOUND_OPS`)."""

    target: Var
    op: str
    value: Expr
    span: Span


@dataclass(frozen=True)
class AssignMap:
    """``@m[k] = e`` or ``@m[k] op= e``."""

    target: Map
    op: str
    value: Expr
    span: Span


@dataclass(frozen=True)
class Block:
    """``{ stmt; stmt; ... }``."""

    stmts: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True)
class If:
    """``if (cond) { ... } [else if ... | else { ... }]``."""

    cond: Expr
    then: Block
    orelse: Block | If | None
    span: Span


@dataclass(frozen=True)
class Return:
    """``return`` (ends the probe's action)."""

    span: Span


@dataclass(frozen=True)
class While:
    """``while (cond) { ... }`` (a bounded loop on the BPF engine: kernel 5.3+)."""

    cond: Expr
    body: Block
    span: Span


@dataclass(frozen=True)
class Unroll:
    """``unroll (N) { ... }``: the body N times (N a literal 1..100, checked by the checker)."""

    count: Expr
    body: Block
    span: Span


@dataclass(frozen=True)
class Jump:
    """``break`` or ``continue`` (``kind``) inside a ``while`` loop."""

    kind: str
    span: Span


Stmt = Union[ExprStmt, AssignVar, AssignMap, If, Return, Block, While, Unroll, Jump]


# -- probes -----------------------------------------------------------------
@dataclass(frozen=True)
class AttachPoint:
    """One attach point, canonicalised.

    ``provider`` is the full bpftrace name (``kprobe``, ``kretprobe``,
    ``uprobe``, ``uretprobe``, ``tracepoint``, ``interval``, ``BEGIN``, ``END``)
    whatever alias was written; ``raw`` is the text as written.

    * kprobe/kretprobe: ``func`` (may be a wildcard pattern), ``module``
      (or ""), ``offset`` (kprobe ``FN+OFFS``).
    * uprobe/uretprobe: ``target`` (path or library name), ``func`` (symbol
      or ""), ``address`` (``uprobe:PATH:0x1234``), ``offset``.
    * tracepoint: ``target`` (category / subsystem) and ``func`` (event).
    * interval, profile: ``unit`` (``s``, ``ms``, ``us``, ``hz``) and ``period``.
    * usdt: ``target`` (binary path or library name), ``module`` (the provider, or ""
      for any) and ``func`` (the probe name).
    * kfunc/kretfunc (fentry/fexit), rawtracepoint: ``func`` and ``module`` (or "").
    * software/hardware: ``target`` (the canonical event name) and ``period`` (events
      per sample).
    """

    provider: str
    raw: str
    span: Span
    target: str = ""
    func: str = ""
    module: str = ""
    offset: int = 0
    address: int | None = None
    unit: str = ""
    period: int = 0

    @property
    def is_pattern(self) -> bool:
        """True when the target or function contains ``*``, ``?`` or ``[``."""
        return any(c in s for s in (self.target, self.func, self.module) for c in "*?[")

    @property
    def name(self) -> str:
        """The canonical name, as bpftrace's ``probe`` builtin shows it."""
        if self.provider in ("BEGIN", "END"):
            return self.provider
        if self.provider in ("kprobe", "kretprobe"):
            mod = f"{self.module}:" if self.module else ""
            off = f"+{self.offset}" if self.offset else ""
            return f"{self.provider}:{mod}{self.func}{off}"
        if self.provider in ("uprobe", "uretprobe"):
            where = self.func if self.address is None else hex(self.address)
            off = f"+{self.offset}" if self.offset else ""
            return f"{self.provider}:{self.target}:{where}{off}"
        if self.provider in ("interval", "profile"):
            return f"{self.provider}:{self.unit}:{self.period}"
        if self.provider == "usdt":
            return f"usdt:{self.target}:{self.module + ':' if self.module else ''}{self.func}"
        if self.provider in ("kfunc", "kretfunc"):  # bpftrace 0.17 names the BTF object
            return f"{self.provider}:{self.module or 'vmlinux'}:{self.func}"
        if self.provider == "rawtracepoint":
            return f"{self.provider}:{self.module + ':' if self.module else ''}{self.func}"
        if self.provider in ("software", "hardware"):
            return f"{self.provider}:{self.target}:{self.period}"
        return f"{self.provider}:{self.target}:{self.func}"


@dataclass(frozen=True)
class Probe:
    """``attach[, attach...] [/predicate/] { block }``."""

    attach_points: tuple[AttachPoint, ...]
    predicate: Expr | None
    body: Block
    span: Span

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(ap.provider for ap in self.attach_points))


@dataclass(frozen=True)
class Program:
    """A parsed program: its probes plus the ignored ``#include`` lines."""

    probes: tuple[Probe, ...]
    filename: str
    text: str
    includes: tuple[str, ...] = ()
    warnings: tuple[Diagnostic, ...] = field(default=(), compare=False)


def walk(node: object) -> Iterator[object]:
    """Every node below ``node`` (itself included), depth first in field order; tuples of
    nodes are walked through, spans and plain values are not yielded."""
    if isinstance(node, tuple):
        for x in node:
            yield from walk(x)
        return
    fields = getattr(type(node), "__dataclass_fields__", None)
    if fields is None or type(node).__module__ != __name__:
        return
    yield node
    for name in fields:
        if name != "span":
            yield from walk(getattr(node, name))

