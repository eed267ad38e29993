"""Error rendering: bpftrace's exact ``FILE:LINE:COL-COL: ERROR: ...`` format with markers."""

from __future__ import annotations

import pytest

from kprobes.errors import KprobesError
from kprobes.lang import LangError, check, parse_program
from kprobes.lang.diagnostics import ERROR, Diagnostic, render_diagnostic
from kprobes.lang.source import Source


def message(text: str, filename: str = "stdin") -> str:
    with pytest.raises(LangError) as exc:
        check(parse_program(text, filename=filename))
    return exc.value.message


def test_unknown_identifier_matches_bpftrace() -> None:
    assert message("kprobe:f { fake }") == (
        "stdin:1:12-16: ERROR: Unknown identifier: 'fake'\nkprobe:f { fake }\n           ~~~~"
    )


def test_map_type_mismatch_matches_bpftrace() -> None:
    assert message('kprobe:f { @x = 1; @x = "a"; }') == (
        "stdin:1:20-28: ERROR: Type mismatch for @x: trying to assign value of type "
        "'string[2]' when map already contains a value of type 'int64'\n"
        'kprobe:f { @x = 1; @x = "a"; }\n'
        "                   ~~~~~~~~"
    )


def test_unterminated_string_matches_bpftrace() -> None:
    assert message('kprobe:f { "asdf }') == (
        'stdin:1:12-19: ERROR: unterminated string\nkprobe:f { "asdf }\n           ~~~~~~~'
    )


def test_syntax_error_with_tabs_uses_four_columns() -> None:
    assert message("i:s:1\t\t$a") == (
        "stdin:1:8-10: ERROR: syntax error, unexpected variable, expecting , or {\n"
        "i:s:1        $a\n"
        "             ~~"
    )


def test_error_on_later_line_and_filename() -> None:
    text = "kprobe:f {\n  @x = count();\n  $y = @x + retval;\n}"
    assert message(text, filename="prog.bt") == (
        "prog.bt:3:13-19: ERROR: The retval builtin can only be used with 'kretprobe' and "
        "'uretprobe' probes\n"
        "  $y = @x + retval;\n"
        "            ~~~~~~"
    )


def test_hint_follows_the_marker() -> None:
    assert message("kprobe:f { @x = comn; }") == (
        "stdin:1:17-21: ERROR: Unknown identifier: 'comn'\n"
        "kprobe:f { @x = comn; }\n"
        "                ~~~~\n"
        "HINT: Did you mean 'comm'?"
    )


def test_several_errors_in_one_message() -> None:
    text = "kprobe:f { @a = nope; @b = retval; }"
    assert message(text) == (
        "stdin:1:17-21: ERROR: Unknown identifier: 'nope'\n"
        f"{text}\n"
        "                ~~~~\n"
        "stdin:1:28-34: ERROR: The retval builtin can only be used with 'kretprobe' and "
        "'uretprobe' probes\n"
        f"{text}\n"
        "                           ~~~~~~"
    )


def test_multi_line_span_prints_line_range_only() -> None:
    text = "kprobe:f { unroll (0\n\n) {\n @x = 1;\n} }"
    assert message(text) == "stdin:1-3: ERROR: unroll minimum value is 1"


def test_error_without_location() -> None:
    source = Source("", "stdin")
    assert render_diagnostic(Diagnostic(ERROR, "No probes defined", None), source) == (
        "ERROR: No probes defined"
    )


def test_lang_error_is_a_kprobes_error_with_exit_code_1() -> None:
    with pytest.raises(KprobesError) as exc:
        parse_program("BEGIN { @x = ; }")
    assert isinstance(exc.value, LangError)
    assert exc.value.exit_code == 1
    assert str(exc.value) == exc.value.format() == exc.value.message
    assert exc.value.errors[0].span is not None and exc.value.errors[0].span.col == 14
