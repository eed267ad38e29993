"""printf format strings: split into conversion specifiers and check arguments.

Accepted conversions are bpftrace 0.17's, in one grammar shared with the
formatter (:mod:`kprobes.agg.printf`): ``d i u x X o c`` with the length
modifiers ``hh h l ll j z t``, ``s`` and ``p``, with ``-``, width and
precision (``%-8s``, ``%08lx``, ``%.3d``).  ``%%`` is a literal percent.
Other C flags (``%+d``, ``% d``, ``%#x``) are refused, as bpftrace does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .._record import dataclass
from .typesys import (
    AggType,
    ArrayType,
    FmtType,
    IntType,
    NoneType,
    PointerType,
    StackType,
    StringType,
    SymType,
    Type,
    kind_name,
)

__all__ = ["FormatSpec", "FormatError", "parse_format", "check_format_args"]

_SPEC = re.compile(
    r"%(?P<flags>[-+ #0]*)(?P<width>[0-9]*)(?P<prec>\.[0-9]*)?(?P<len>hh|h|ll|l|j|z|t)?(?P<conv>[a-zA-Z%]?)"
)


@dataclass(frozen=True)
class FormatSpec:
    """One conversion: ``text`` as written (``%-8lu``), ``conv`` (``u``), ``length`` (``l``)."""

    text: str
    conv: str
    length: str
    start: int

    @property
    def expects(self) -> str:
        """``integer`` or ``string``: the kind of argument the conversion takes."""
        if self.conv == "r":
            return "buffer"
        return "string" if self.conv == "s" else "integer"


class FormatError(Exception):
    """Internal: a malformed format string (message is bpftrace's wording)."""


def parse_format(fmt: str) -> list[FormatSpec]:
    """The conversion specifiers of ``fmt`` in order (``%%`` excluded).

    The grammar is :func:`kprobes.agg.printf.parse_printf`'s, the one the
    engines format with: what passes here prints at run time.  Errors keep
    bpftrace's wording (``printf: Unknown format string token: %+d``).
    """
    from ..agg.printf import PrintfFormatError, parse_printf

    try:
        parsed = parse_printf(fmt)
    except PrintfFormatError as e:
        m = _SPEC.match(fmt, e.position)
        token = m.group(0)[1:] if m is not None else fmt[e.position + 1:e.position + 2]
        raise FormatError(f"printf: Unknown format string token: %{token}") from None
    return [FormatSpec(sp.text, sp.conversion, sp.length, sp.position) for sp in parsed.specs]


def _arg_kind(t: Type) -> str:
    if isinstance(t, FmtType):
        return "buffer" if t.kind == "buf" else "string"
    if isinstance(t, (StringType, SymType, StackType)):
        return "string"
    if isinstance(t, ArrayType) and isinstance(t.elem, IntType) and t.elem.bits == 8:
        return "string"
    if isinstance(t, (IntType, PointerType)):
        return "integer"
    if isinstance(t, AggType) and t.kind in ("count", "sum", "avg", "min", "max"):
        return "integer"
    return kind_name(t)


def check_format_args(fmt: str, args: Sequence[Type], func: str = "printf") -> str | None:
    """None when ``args`` fit ``fmt``, else the error message bpftrace would give."""
    try:
        specs = parse_format(fmt)
    except FormatError as exc:
        return str(exc).replace("printf:", f"{func}:", 1)
    if len(args) < len(specs):
        return (
            f"{func}: Not enough arguments for format string "
            f"({len(args)} supplied, {len(specs)} expected)"
        )
    if len(args) > len(specs):
        return (
            f"{func}: Too many arguments for format string "
            f"({len(args)} supplied, {len(specs)} expected)"
        )
    pairs: list[tuple[FormatSpec, Type]] = list(zip(specs, args))
    for spec, arg in pairs:
        if isinstance(arg, NoneType):
            continue
        got = _arg_kind(arg)
        if got != spec.expects:
            return (
                f"{func}: %{spec.length}{spec.conv} specifier expects a value of type "
                f"{spec.expects} ({got} supplied)"
            )
    return None
