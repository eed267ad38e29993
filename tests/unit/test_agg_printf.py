"""printf()/time() formatting: grammar, 64-bit semantics, and glibc as an oracle."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kprobes.agg import (
    DEFAULT_TIME_FORMAT,
    PrintfFormatError,
    compile_printf,
    format_time,
    parse_printf,
)
from kprobes.errors import KprobesError


@pytest.mark.parametrize(
    ("fmt", "args", "expected"),
    [
        ("%d|%u|%x|%X|%o", [-5] * 5, "-5|4294967291|fffffffb|FFFFFFFB|37777777773"),
        ("%d|%u", [4294967301, 4294967301], "5|5"),
        ("%lu|%llu|%ld|%lx", [-1, -1, -1, -1], "18446744073709551615|18446744073709551615|-1|ffffffffffffffff"),
        ("%hd|%hhu|%hhd|%hu", [70000, 300, 200, -1], "4464|44|-56|65535"),
        ("%i|%li", [-3, -3], "-3|-3"),
        ("%-10s|%10s|%.3s|%-6.2s|", ["abc", "abc", "abcdef", "xyz"], "abc       |       abc|abc|xy    |"),
        ("%05d|%-5d|%010d|%-010d", [42, 42, -42, -42], "00042|42   |-000000042|-42       "),
        ("%5.3d|%.0d|%.10d", [7, 0, -123], "  007||-0000000123"),
        ("%c%c|%3c|%-3c|", [65, 322, 67, 66], "AB|  C|B  |"),
        ("%p|%p|%p", [0, -1, 4096], "(nil)|0xffffffffffffffff|0x1000"),
        ("100%% %d%%", [5], "100% 5%"),
        ("plain\n", [], "plain\n"),
        ("%s", [b"raw"], "raw"),
        ("%5s|%.1s|", ["é", "é"], "   é|\udcc3|"),  # widths count bytes, as C does
    ],
)
def test_formats_like_bpftrace(fmt: str, args: list[object], expected: str) -> None:
    assert compile_printf(fmt)(args) == expected


@pytest.mark.parametrize(
    ("fmt", "position"),
    [("%+d", 0), ("x % d", 2), ("%#x", 0), ("abc%", 3), ("%ls", 0), ("%lc", 0), ("%q", 0), ("%5.d", 0)],
)
def test_rejects_what_bpftrace_rejects(fmt: str, position: int) -> None:
    with pytest.raises(PrintfFormatError) as err:
        parse_printf(fmt)
    assert err.value.position == position
    assert isinstance(err.value, KprobesError)


def test_parse_exposes_specs_for_type_checking() -> None:
    parsed = parse_printf("pid %-6d comm %16s ret %lx%%\n")
    assert [s.conversion for s in parsed.specs] == ["d", "s", "x"]
    assert [s.wants_string for s in parsed.specs] == [False, True, False]
    assert parsed.specs[0].left and parsed.specs[0].width == 6
    assert parsed.specs[2].length == "l"
    assert parsed.literals == ("pid ", " comm ", " ret ", "%\n")
    assert compile_printf(parsed).nargs == 3


def test_argument_count_and_types_are_checked() -> None:
    fmt = compile_printf("%d %s\n")
    with pytest.raises(PrintfFormatError, match="Not enough arguments"):
        fmt([1])
    with pytest.raises(PrintfFormatError, match="Too many arguments"):
        fmt([1, "a", 2])
    with pytest.raises(PrintfFormatError, match="expects an integer"):
        fmt(["x", "a"])
    assert fmt([1, 2]) == "1 2\n"  # %s of an int prints its decimal form


def test_time_default_format_and_custom() -> None:
    assert DEFAULT_TIME_FORMAT == "%H:%M:%S\n"
    when = 1_700_000_000.0
    assert format_time(when=when) == time.strftime("%H:%M:%S\n", time.localtime(when))
    assert format_time("%Y", when) == time.strftime("%Y", time.localtime(when))


# ---------------------------------------------------------------- glibc oracle
_LIBC_NAME = ctypes.util.find_library("c")
_libc = ctypes.CDLL(_LIBC_NAME) if _LIBC_NAME and sys.platform.startswith("linux") else None
needs_glibc = pytest.mark.skipif(_libc is None, reason="needs the C library's snprintf")


def _c_snprintf(fmt: str, arg: object) -> str:
    assert _libc is not None
    buf = ctypes.create_string_buffer(512)
    c_arg: object = (
        ctypes.c_char_p(arg.encode("utf-8", "surrogateescape"))
        if isinstance(arg, str)
        else ctypes.c_uint64(arg & ((1 << 64) - 1))  # type: ignore[operator]
    )
    n = _libc.snprintf(buf, ctypes.c_size_t(512), fmt.encode(), c_arg)
    return buf.raw[:n].decode("latin-1" if fmt.endswith("c") else "utf-8", "surrogateescape")


_width = st.one_of(st.just(""), st.integers(1, 24).map(str), st.integers(1, 24).map(lambda w: f"0{w}"))
_precision = st.one_of(st.just(""), st.integers(0, 24).map(lambda p: f".{p}"))
_int_value = st.one_of(st.integers(-(1 << 63), (1 << 64) - 1), st.integers(-300, 300))


@needs_glibc
@settings(max_examples=100, deadline=None)
@given(
    left=st.booleans(),
    width=_width,
    precision=_precision,
    length=st.sampled_from(["", "h", "hh", "l", "ll", "j", "z", "t"]),
    conv=st.sampled_from(list("diuxXo")),
    value=_int_value,
)
def test_integer_conversions_match_glibc(
    left: bool, width: str, precision: str, length: str, conv: str, value: int
) -> None:
    fmt = "%" + ("-" if left else "") + width + precision + length + conv
    assert compile_printf(fmt)([value]) == _c_snprintf(fmt, value)


@needs_glibc
@settings(max_examples=100, deadline=None)
@given(left=st.booleans(), width=st.integers(0, 24), value=_int_value, conv=st.sampled_from(["c", "p"]))
def test_char_and_pointer_match_glibc(left: bool, width: int, value: int, conv: str) -> None:
    if conv == "c" and value & 0xFF == 0:
        value += 1  # C would end the string at the NUL
    fmt = "%" + ("-" if left else "") + (str(width) if width else "") + conv
    assert compile_printf(fmt)([value]) == _c_snprintf(fmt, value)


@needs_glibc
@settings(max_examples=100, deadline=None)
@given(
    left=st.booleans(),
    width=st.integers(0, 20),
    precision=_precision,
    text=st.text(st.characters(min_codepoint=1, max_codepoint=0x2FF), max_size=12),
)
def test_string_conversion_matches_glibc(left: bool, width: int, precision: str, text: str) -> None:
    fmt = "%" + ("-" if left else "") + (str(width) if width else "") + precision + "s"
    assert compile_printf(fmt)([text]) == _c_snprintf(fmt, text)


@pytest.mark.parametrize("fmt", ["%+d\n", "% d\n", "%#x\n"])
def test_checker_and_formatter_share_one_grammar(fmt: str) -> None:
    # printf("%+d\n", 1) used to pass the checker (--dry-run) and fail when run
    from kprobes.lang.printf import FormatError, check_format_args, parse_format
    from kprobes.lang.typesys import IntType

    with pytest.raises(PrintfFormatError):
        parse_printf(fmt)
    with pytest.raises(FormatError):
        parse_format(fmt)
    msg = check_format_args(fmt, [IntType(64, True)])
    assert msg == f"printf: Unknown format string token: {fmt.strip()}"


def test_dry_run_refuses_what_the_formatter_refuses() -> None:
    from kprobes.lang import check, parse_program
    from kprobes.lang.diagnostics import LangError

    with pytest.raises(LangError, match="Unknown format string token: %\\+d"):
        check(parse_program('BEGIN { printf("%+d\\n", 1); }', "stdin"))
    # what the checker accepts, the formatter prints
    check(parse_program('BEGIN { printf("%-5d|%05lx|%.2s|%%\\n", 1, 2, "abc"); }', "stdin"))
    assert compile_printf("%-5d|%05lx|%.2s|%%\n")([1, 2, "abc"]) == "1    |00002|ab|%\n"
