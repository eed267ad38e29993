"""AST of a bpftrace program: frozen dataclasses, each with its source span.

Expressions::

    IntLit StrLit Builtin Ident Var Param Map FieldAccess Index Call
    Binary Unary IncDec Ternary Cast

Statements::

    ExprStmt AssignVar AssignMap If Return Block

A :class:`Program` is a list of :class:`Probe`; a probe has one or more
:class:`AttachPoint`, an optional predicate and a :class:`Block`.

Nodes compare by value (spans included), so two occurrences of ``comm`` in
different places are different nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from .diagnostics import Diagnostic
from .source import Span

__all__ = [
    "IntLit", "StrLit", "Builtin", "Ident", "Var", "Param", "Map", "FieldAccess", "Index",
    "Call", "Binary", "Unary", "IncDec", "Ternary", "Cast", "TypeName", "Expr",
    "ExprStmt", "AssignVar", "AssignMap", "If", "Return", "Block", "Stmt",
    "AttachPoint", "Probe", "Program",
    "BINARY_OPS", "COMPOUND_OPS",
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


Expr = Union[
    IntLit, StrLit, Builtin, Ident, Var, Param, Map, FieldAccess, Index, Call,
    Binary, Unary, IncDec, Ternary, Cast,
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


Stmt = Union[ExprStmt, AssignVar, AssignMap, If, Return, Block]


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
