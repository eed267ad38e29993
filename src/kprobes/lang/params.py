"""Positional parameters: ``$1``..``$N`` and ``$#`` replaced by the command line's values.

bpftrace 0.17's rules (checked against it on a host):

* ``$N`` is an integer when its argument is one ``strtoll(s, &end, 0)`` reads
  whole (``42``, ``-3``, ``+5``, ``0x10``, octal ``010``, leading blanks; an
  int64), else using it numerically is an error that says to use ``str($N)``;
* ``str($N)`` (and ``str($N, n)``) is the argument as a string;
* a missing argument is ``0``, resp. ``""``; ``$0`` is refused;
* ``$#`` is the number of arguments (``str($#)`` is refused);
* in an attach point (``uprobe:$1:main``, ``interval:ms:$2``) a parameter is its text
  (a missing one: nothing), and the attach point is parsed after the substitution.

:func:`substitute` runs before type checking, so both engines only ever see
integer and string literals (with the parameter's span, for diagnostics).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Callable, Optional

from . import ast
from .diagnostics import ERROR, Diagnostic, LangError
from .source import Source

__all__ = ["substitute", "numeric_value", "rewrite", "PARAM_IN_ATTACH", "PARAM_PROVIDER"]

#: ``$N``/``$#`` inside an attach point (``uprobe:$1:main``, ``interval:ms:$2``).
PARAM_IN_ATTACH = re.compile(r"\$(\d+|#)")
#: The provider of an attach point the parser left for :func:`substitute` to parse.
PARAM_PROVIDER = "$params"

_NUMBER = re.compile(r"([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
_INT64_MAX = (1 << 63) - 1


def numeric_value(text: str) -> Optional[int]:
    """``text`` as bpftrace reads a numeric positional parameter, or None."""
    m = _NUMBER.fullmatch(text.lstrip(" \t\n\v\f\r"))
    if m is None:
        return None
    body = m.group(2)
    if body[:2] in ("0x", "0X"):
        value = int(body[2:], 16)
    elif len(body) > 1 and body[0] == "0":
        value = int(body[1:], 8)
    else:
        value = int(body)
    if m.group(1) == "-":
        value = -value
    if not -(1 << 63) <= value <= _INT64_MAX:
        return None
    return value


def rewrite(node: Any, fn: Callable[[Any], Any]) -> Any:
    """``node`` with every sub-node for which ``fn`` returns a replacement replaced."""
    new = fn(node)
    if new is not None:
        return new
    if type(node).__module__ != ast.__name__:
        return node
    fields = type(node).__dataclass_fields__
    changed = False
    values = {}
    for name in fields:
        old = getattr(node, name)
        if isinstance(old, tuple):
            value: Any = tuple(rewrite(x, fn) for x in old)
            same = all(a is b for a, b in zip(value, old))
        elif type(old).__module__ == ast.__name__:
            value = rewrite(old, fn)
            same = value is old
        else:
            value, same = old, True
        values[name] = value
        changed = changed or not same
    return type(node)(**values) if changed else node


class _Substituter:
    def __init__(self, params: Sequence[str]) -> None:
        self.params = list(params)
        self.diags: list[Diagnostic] = []

    def index(self, p: ast.Param) -> Optional[int]:
        n = int(p.text)
        if not 1 <= n <= _INT64_MAX:
            self.diags.append(Diagnostic(
                ERROR, f"param ${p.text} is out of integer range [1, {_INT64_MAX}]", p.span))
            return None
        return n

    def as_string(self, p: ast.Param, call: ast.Call) -> ast.Expr:
        if p.text == "#":
            self.diags.append(Diagnostic(ERROR, "use $#, not str($#)", call.span))
            return ast.StrLit("", p.span)
        n = self.index(p)
        value = self.params[n - 1] if n is not None and n <= len(self.params) else ""
        return ast.StrLit(value, p.span)

    def as_int(self, p: ast.Param) -> ast.Expr:
        if p.text == "#":
            return ast.IntLit(len(self.params), p.span)
        n = self.index(p)
        if n is None:
            return ast.IntLit(0, p.span)
        if n > len(self.params):
            return ast.IntLit(0, p.span)
        text = self.params[n - 1]
        value = numeric_value(text)
        if value is None:
            self.diags.append(Diagnostic(
                ERROR, f'${n} used numerically but given "{text}". Try using str(${n}).', p.span))
            return ast.IntLit(0, p.span)
        if value < 0:
            return ast.Unary("-", ast.IntLit(-value, p.span), p.span)
        return ast.IntLit(value, p.span)

    def attach_point(self, ap: ast.AttachPoint) -> ast.AttachPoint:
        """``ap`` with its parameters replaced by their text (missing: ""), then parsed."""
        from .attach import AttachError, parse_attach_point

        def text(m: "re.Match[str]") -> str:
            if m.group(1) == "#":
                return str(len(self.params))
            n = int(m.group(1))
            return self.params[n - 1] if 1 <= n <= len(self.params) else ""

        raw = PARAM_IN_ATTACH.sub(text, ap.raw)
        try:
            return parse_attach_point(raw, ap.span)
        except AttachError as exc:
            self.diags.append(Diagnostic(ERROR, exc.message, ap.span, exc.hints))
            return ast.AttachPoint("invalid", raw, ap.span)

    def __call__(self, node: Any) -> Any:
        if isinstance(node, ast.AttachPoint):
            return self.attach_point(node) if node.provider == PARAM_PROVIDER else node
        if isinstance(node, ast.Param):
            return self.as_int(node)
        if isinstance(node, ast.Call) and node.name == "str" and node.args \
                and isinstance(node.args[0], ast.Param):
            rest = tuple(rewrite(a, self) for a in node.args[1:])
            return ast.Call(node.name, (self.as_string(node.args[0], node),) + rest, node.span,
                            node.name_span)
        return None


def substitute(program: ast.Program, params: Sequence[str] = ()) -> ast.Program:
    """``program`` with its positional parameters replaced (see the module docstring).

    Raises :class:`LangError` for ``$0``, ``str($#)`` and a non-numeric
    argument used as an integer.
    """
    if "$" not in program.text:
        return program
    sub = _Substituter(params)
    result: ast.Program = rewrite(program, sub)
    if sub.diags:
        raise LangError(sub.diags, Source(program.text, program.filename))
    return result
