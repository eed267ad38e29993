"""Predicates pushed down to kernel event filters, when the kernel decides exactly as bpftrace.

A predicate ``/A && B && C/`` is split into its conjuncts.  Each conjunct that
a kernel event filter (Documentation/trace/events.rst, "Event filtering")
computes with bpftrace's exact result goes to the kernel; the others stay in
Python, evaluated in order after the kernel's filter passed.  Pushed down:

* ``FIELD OP N`` / ``N OP FIELD`` for a fetched integer field (argN, retval,
  struct members, tracepoint fields) and an integer literal, OP one of
  ``== != < <= > >=``, when the literal fits the field's type and bpftrace's
  signedness rule (signed compare only when both sides are signed) gives the
  same order as the kernel's compare of the field's declared type;
* ``FIELD`` alone (``!= 0``) and ``!FIELD`` (``== 0``);
* ``STRFIELD == "lit"`` / ``!=`` for a fetched string (``str(argN)``,
  ``comm``, string tracepoint fields) when the literal has no glob
  characters (the kernel would glob-match them) and is shorter than the
  string bpftrace keeps (longer strings are truncated by bpftrace, not by the
  kernel);
* ``tid == N`` as ``common_pid == N`` (the kernel's pid is the thread id);
* ``&&`` and ``||`` of pushable parts.

Not pushed down: ``pid`` (the kernel filter only sees the thread id; a
multi-threaded process has many), map reads, arithmetic, anything computed.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from ..lang import ast
from ..lang.checked import CheckedProgram
from ..lang.typesys import IntType, PointerType, StringType, Type
from .fetch import Fetch

__all__ = ["split_predicate", "conjuncts"]

_COMPARE = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_GLOB = frozenset('*?[]\\"')
_COMM_SIZE = 16


def conjuncts(e: ast.Expr) -> List[ast.Expr]:
    """``a && b && c`` as ``[a, b, c]``."""
    if isinstance(e, ast.Binary) and e.op == "&&":
        return conjuncts(e.left) + conjuncts(e.right)
    return [e]


def _literal(e: ast.Expr) -> Optional[int]:
    if isinstance(e, ast.IntLit):
        return e.value
    if isinstance(e, ast.Unary) and e.op == "-" and isinstance(e.operand, ast.IntLit):
        return -e.operand.value
    return None


def _fetch_int_info(f: Fetch) -> Optional[Tuple[int, bool]]:
    """(bits, signed) of an integer fetch type (``u64``, ``s32``, ``x16``), else None."""
    t = f.type
    if t[:1] in ("u", "s", "x") and t[1:].isdigit():
        return int(t[1:]), t[0] == "s"
    return None


class _Pusher:
    def __init__(
        self,
        checked: CheckedProgram,
        field_of: Dict[int, str],
        fetches: Dict[str, Fetch],
        plain_fields: bool,
    ) -> None:
        self.checked = checked
        self.field_of = field_of
        self.fetches = fetches
        self.plain_fields = plain_fields

    def field(self, e: ast.Expr) -> Optional[Tuple[str, Type, Optional[Fetch]]]:
        name = self.field_of.get(id(e))
        if name is None:
            return None
        return name, self.checked.type_of(e), self.fetches.get(name)

    def int_field(self, e: ast.Expr) -> Optional[Tuple[str, int, bool]]:
        found = self.field(e)
        if found is None:
            return None
        name, t, fetch = found
        if not isinstance(t, (IntType, PointerType)):
            return None
        if fetch is not None:
            info = _fetch_int_info(fetch)
            if info is None:
                return None
            bits, signed = info
        elif self.plain_fields and isinstance(t, IntType):
            # A tracepoint's own field: the kernel compares it as the format declares.
            bits, signed = t.bits, t.signed
        else:
            return None
        tsigned = t.signed if isinstance(t, IntType) else False
        if tsigned != signed or (isinstance(t, IntType) and t.bits != bits):
            return None  # the checker and the fetch disagree: let Python decide
        return name, bits, signed

    def compare(self, e: ast.Binary) -> Optional[str]:
        op = e.op
        left, right = e.left, e.right
        lit = _literal(right)
        if lit is None:
            lit = _literal(left)
            if lit is None:
                return self.string_compare(e)
            left, op = right, _FLIP[op]
        if isinstance(left, ast.Builtin) and left.name == "tid":
            if op == "==" or op == "!=":
                return f"common_pid {op} {lit}" if 0 <= lit < 1 << 32 else None
            return None
        info = self.int_field(left)
        if info is None:
            return None
        name, bits, signed = info
        lit_type = self.checked.type_of(right if _literal(right) is not None else e.left)
        lit_signed = not (isinstance(lit_type, IntType) and not lit_type.signed)
        if op not in ("==", "!=") and signed and not lit_signed:
            return None  # bpftrace compares unsigned then; the kernel would compare signed
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        if not lo <= lit <= hi:
            return None
        return f"{name} {op} {lit}"

    def string_compare(self, e: ast.Binary) -> Optional[str]:
        if e.op not in ("==", "!="):
            return None
        left, right = e.left, e.right
        if isinstance(left, ast.StrLit):
            left, right = right, left
        if not isinstance(right, ast.StrLit):
            return None
        found = self.field(left)
        if found is None:
            return None
        name, t, fetch = found
        if not isinstance(t, StringType):
            return None
        if fetch is not None and not fetch.is_string:
            return None
        text = right.value
        limit = t.size - 1
        if isinstance(left, ast.Builtin) and left.name == "comm":
            limit = _COMM_SIZE - 1
        if len(right.data) >= limit or any(c in _GLOB for c in text) or not text.isprintable():
            return None
        return f'{name} {e.op} "{text}"'

    def filter(self, e: ast.Expr) -> Optional[str]:
        if isinstance(e, ast.Binary):
            if e.op in ("&&", "||"):
                left = self.filter(e.left)
                right = self.filter(e.right)
                if left is None or right is None:
                    return None
                return f"({left}) {e.op} ({right})"
            if e.op in _COMPARE:
                return self.compare(e)
            return None
        if isinstance(e, ast.Unary) and e.op == "!":
            info = self.int_field(e.operand)
            return f"{info[0]} == 0" if info else None
        info = self.int_field(e)
        return f"{info[0]} != 0" if info else None


def split_predicate(
    checked: CheckedProgram,
    predicate: Optional[ast.Expr],
    field_of: Dict[int, str],
    fetches: Dict[str, Fetch],
    *,
    plain_fields: bool = False,
) -> Tuple[Optional[str], Tuple[ast.Expr, ...]]:
    """(kernel filter or None, conjuncts left for Python) for ``predicate``.

    ``fetches`` maps field names to their fetchargs; ``plain_fields`` says
    that fields without a fetcharg are a tracepoint's own fields.
    """
    if predicate is None:
        return None, ()
    pusher = _Pusher(checked, field_of, fetches, plain_fields)
    kernel: List[str] = []
    python: List[ast.Expr] = []
    for part in conjuncts(predicate):
        text = pusher.filter(part)
        if text is None:
            python.append(part)
        else:
            kernel.append(text)
    if not kernel:
        return None, tuple(python)
    if len(kernel) == 1:
        return kernel[0], tuple(python)
    return " && ".join(f"({k})" for k in kernel), tuple(python)
