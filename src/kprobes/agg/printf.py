"""bpftrace's ``printf()`` and ``time()`` formatting, in Python.

bpftrace hands each argument to C ``snprintf`` as a 64-bit integer (strings
as pointers) with the conversion exactly as written, so the C length
modifier decides how many bits are printed:

* ``%d %i %u %x %X %o`` and ``%c`` read a 32-bit ``int``: ``printf("%u", -5)``
  prints ``4294967291``, ``%x`` prints ``fffffffb`` and ``%d`` of
  ``4294967301`` prints ``5``;
* ``h``/``hh`` narrow further to 16/8 bits (``%hhu`` of 300 is ``44``);
* ``l``, ``ll``, ``j``, ``z``, ``t`` print all 64 bits (``%lu`` of -1 is
  ``18446744073709551615``);
* ``%p`` prints ``0x``-prefixed hex of all 64 bits, or ``(nil)`` for 0;
* ``%s`` takes a string; precision and width count bytes, as C does.

Accepted conversions follow bpftrace's grammar
``%[-][width][.precision][hh|h|l|ll|j|z|t](d|i|u|x|X|o|c|p|s)`` plus
``%%``; C flags other than ``-`` and a leading ``0`` (``+``, space, ``#``),
``%rx`` and anything else raise :class:`PrintfFormatError`; ``%r`` prints a
``buf()`` value (already hex-escaped).
``%i`` is an extension (bpftrace 0.17 does not count it as a conversion).
``%%`` always prints ``%`` (bpftrace 0.17 leaves ``%%`` doubled when it comes
after the last conversion, a bug not reproduced here).

:func:`compile_printf` parses a format once and returns a callable that the
engine runs per event.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Callable

from kprobes.errors import KprobesError, ProbeSyntaxError

from .._record import dataclass

__all__ = [
    "PrintfFormatError",
    "PrintfSpec",
    "PrintfFormat",
    "parse_printf",
    "compile_printf",
    "format_time",
    "DEFAULT_TIME_FORMAT",
]

#: time()'s format when called without one.
DEFAULT_TIME_FORMAT = "%H:%M:%S\n"

_SPEC_RE = re.compile(r"%(-?)([0-9]*)(?:\.([0-9]+))?(hh|h|ll|l|j|z|t)?([a-zA-Z])")
_INT_CONVERSIONS = frozenset("diuxXoc")
_LENGTH_BITS = {"": 32, "h": 16, "hh": 8, "l": 64, "ll": 64, "j": 64, "z": 64, "t": 64}


class PrintfFormatError(ProbeSyntaxError):
    """A printf format bpftrace would refuse, or arguments that do not fit it."""

    def __init__(self, message: str, text: str, position: int, *, hint: str | None = None) -> None:
        super().__init__(message, text, position, hint=hint, command="printf")


@dataclass(frozen=True)
class PrintfSpec:
    """One conversion: ``%-08.3lx`` is left=True, width=8, zero=True (ignored
    with ``-``), precision=3, length="l", conversion="x"; ``position`` is the
    offset of its ``%`` in the format."""

    text: str
    position: int
    left: bool
    zero: bool
    width: int
    precision: int | None
    length: str
    conversion: str

    @property
    def wants_string(self) -> bool:
        """True for ``%s``: the argument must be a string."""
        return self.conversion == "s"


@dataclass(frozen=True)
class PrintfFormat:
    """A parsed format: ``literals`` has one more item than ``specs``."""

    text: str
    literals: tuple[str, ...]
    specs: tuple[PrintfSpec, ...]


def parse_printf(fmt: str) -> PrintfFormat:
    """Split ``fmt`` into literal text and conversions (``%%`` becomes ``%``)."""
    literals: list[str] = []
    specs: list[PrintfSpec] = []
    current: list[str] = []
    i = 0
    n = len(fmt)
    while i < n:
        j = fmt.find("%", i)
        if j < 0:
            current.append(fmt[i:])
            break
        current.append(fmt[i:j])
        if fmt.startswith("%%", j):
            current.append("%")
            i = j + 2
            continue
        m = _SPEC_RE.match(fmt, j)
        if m is None:
            bad = fmt[j + 1:j + 2] or "end of format"
            raise PrintfFormatError(
                f"printf: invalid conversion after '%' ({bad!r})",
                fmt,
                j,
                hint="conversions are %[-][width][.precision][hh|h|l|ll]d|i|u|x|X|o|c|p|s; write %% for a percent sign",
            )
        left, width, precision, length, conv = m.groups()
        if conv not in _INT_CONVERSIONS and conv not in "psr":
            raise PrintfFormatError(
                f"printf: unknown format string token: %{m.group(0)[1:]}",
                fmt,
                j,
                hint="use %s, %d, %u, %x, %o, %c, %p or %r (a buf() value)",
            )
        if conv in "scr" and length:
            raise PrintfFormatError(f"printf: %{length}{conv} is not a valid conversion", fmt, j)
        specs.append(
            PrintfSpec(
                text=m.group(0),
                position=j,
                left=bool(left),
                zero=width.startswith("0"),
                width=int(width) if width else 0,
                precision=int(precision) if precision is not None else None,
                length=length or "",
                conversion=conv,
            )
        )
        literals.append("".join(current))
        current = []
        i = m.end()
    literals.append("".join(current))
    return PrintfFormat(fmt, tuple(literals), tuple(specs))


def _pad(body: str, spec: PrintfSpec) -> str:
    if len(body) >= spec.width:
        return body
    return body.ljust(spec.width) if spec.left else body.rjust(spec.width)


def _int_converter(spec: PrintfSpec) -> Callable[[object], str]:
    conv = spec.conversion
    bits = 8 if conv == "c" else _LENGTH_BITS[spec.length]
    mask = (1 << bits) - 1
    sign_bit = 1 << (bits - 1)
    signed = conv in "di"
    base_fmt = {"d": "d", "i": "d", "u": "d", "x": "x", "X": "X", "o": "o"}.get(conv, "d")
    precision = spec.precision
    zero_fill = spec.zero and not spec.left and precision is None

    def convert(arg: object) -> str:
        value = _int_arg(arg, spec)
        v = value & mask
        if conv == "c":
            return _pad(chr(v), spec)
        if signed and v & sign_bit:
            v -= 1 << bits
        sign = "-" if v < 0 else ""
        digits = format(abs(v), base_fmt)
        if precision is not None:
            digits = "" if (precision == 0 and v == 0) else digits.rjust(precision, "0")
        if zero_fill and len(sign) + len(digits) < spec.width:
            digits = digits.rjust(spec.width - len(sign), "0")
        return _pad(sign + digits, spec)

    return convert


def _pointer_converter(spec: PrintfSpec) -> Callable[[object], str]:
    def convert(arg: object) -> str:
        v = _int_arg(arg, spec) & ((1 << 64) - 1)
        return _pad("(nil)" if v == 0 else f"0x{v:x}", spec)

    return convert


def _string_converter(spec: PrintfSpec) -> Callable[[object], str]:
    precision = spec.precision

    def convert(arg: object) -> str:
        if isinstance(arg, bytes):
            s = arg.decode("utf-8", "surrogateescape")
        elif isinstance(arg, str):
            s = arg
        else:
            s = str(arg)
        if s.isascii():
            if precision is not None:
                s = s[:precision]
            return _pad(s, spec)
        raw = s.encode("utf-8", "surrogateescape")
        if precision is not None:
            raw = raw[:precision]
        if len(raw) < spec.width:
            fill = b" " * (spec.width - len(raw))
            raw = raw + fill if spec.left else fill + raw
        return raw.decode("utf-8", "surrogateescape")

    return convert


def _int_arg(arg: object, spec: PrintfSpec) -> int:
    if isinstance(arg, int):
        return int(arg)
    raise PrintfFormatError(
        f"printf: {spec.text} specifier expects an integer ({type(arg).__name__} supplied)",
        spec.text,
        0,
    )


class CompiledPrintf:
    """A parsed format ready to run: ``compiled(args) -> str``."""

    __slots__ = ("format", "_literals", "_converters", "_nargs")

    def __init__(self, parsed: PrintfFormat) -> None:
        self.format = parsed
        self._literals = parsed.literals
        converters: list[Callable[[object], str]] = []
        for spec in parsed.specs:
            if spec.conversion in "sr":  # %r: a buf() value, already hex-escaped
                converters.append(_string_converter(spec))
            elif spec.conversion == "p":
                converters.append(_pointer_converter(spec))
            else:
                converters.append(_int_converter(spec))
        self._converters = tuple(converters)
        self._nargs = len(converters)

    @property
    def nargs(self) -> int:
        """How many arguments the format takes."""
        return self._nargs

    def __call__(self, args: Sequence[object] = ()) -> str:
        if len(args) != self._nargs:
            which = "Not enough" if len(args) < self._nargs else "Too many"
            raise PrintfFormatError(
                f"printf: {which} arguments for format string "
                f"({len(args)} supplied, {self._nargs} expected)",
                self.format.text,
                0,
            )
        lits = self._literals
        if not self._nargs:
            return lits[0]
        out = [lits[0]]
        for conv, arg, lit in zip(self._converters, args, lits[1:]):
            out.append(conv(arg))
            out.append(lit)
        return "".join(out)


def compile_printf(fmt: str | PrintfFormat) -> CompiledPrintf:
    """Parse ``fmt`` once; the result formats one event's arguments."""
    parsed = fmt if isinstance(fmt, PrintfFormat) else parse_printf(fmt)
    return CompiledPrintf(parsed)


def format_time(fmt: str | None = None, when: float | None = None) -> str:
    """``time(fmt)``: local time through C ``strftime`` (default ``%H:%M:%S\\n``).

    ``when`` is seconds since the epoch (now when None).
    """
    try:
        return time.strftime(DEFAULT_TIME_FORMAT if fmt is None else fmt, time.localtime(when))
    except ValueError as exc:
        raise KprobesError(f"time(): bad format {fmt!r}: {exc}") from exc
