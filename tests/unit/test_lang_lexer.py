"""Lexer: tokens, literals, comments, context-sensitive attach points and predicates."""

from __future__ import annotations

import pytest

from kprobes.lang.diagnostics import LangError
from kprobes.lang.lexer import MAX_UINT64, Token, tokenize
from kprobes.lang.source import Source


def lex(text: str) -> list[Token]:
    return tokenize(Source(text))


def kinds(text: str) -> list[str]:
    return [t.kind for t in lex(text)]


def body_values(text: str) -> list[object]:
    """Values of the tokens inside ``BEGIN { ... }``."""
    toks = lex("BEGIN { " + text + " }")
    return [t.value if t.value is not None else t.text for t in toks[2:-2]]


def test_header_tokens_and_block() -> None:
    assert kinds("kprobe:vfs_read, kretprobe:vfs_read { @x = 1; }") == [
        "ATTACH", ",", "ATTACH", "{", "MAP", "=", "INT", ";", "}", "EOF",
    ]  # fmt: skip


def test_attach_point_keeps_paths_wildcards_and_quotes() -> None:
    toks = lex('uprobe:/usr/lib/libc.so.6:mal* k:"fn.isra.0" {}')
    assert [t.kind for t in toks] == ["ATTACH", "ATTACH", "{", "}", "EOF"]
    assert toks[0].kind == "ATTACH" and toks[0].text == "uprobe:/usr/lib/libc.so.6:mal*"
    assert toks[1].kind == "ATTACH" and toks[1].text == 'k:"fn.isra.0"'


def test_predicate_ends_only_before_brace() -> None:
    toks = lex("kprobe:f /arg0 / 2 > 1/ { }")
    assert [t.kind for t in toks] == [
        "ATTACH", "PRED_START", "IDENT", "/", "INT", ">", "INT", "PRED_END", "{", "}", "EOF",
    ]  # fmt: skip


def test_predicate_end_across_newline() -> None:
    assert "PRED_END" in kinds("kprobe:f /pid/\n{ }")


@pytest.mark.parametrize(
    "text, value",
    [
        ("42", 42),
        ("0x1F", 31),
        ("0xff", 255),
        ("0755", 0o755),
        ("1_000_000", 1_000_000),
        ("0xdead_beef", 0xDEADBEEF),
        ("10ul", 10),
        ("7LL", 7),
        ("0", 0),
        (str(MAX_UINT64), MAX_UINT64),
    ],
)
def test_integer_literals(text: str, value: int) -> None:
    assert body_values(text) == [value]


@pytest.mark.parametrize(
    "text, message",
    [
        ("0x", "invalid integer literal '0x'"),
        ("08", "invalid integer literal '08'"),
        ("1_", "invalid integer literal '1_'"),
        ("12abc", "invalid integer literal '12abc'"),
        ("18446744073709551616", "integer literal '18446744073709551616' is out of range"),
        ("9" * 5000, "is out of range"),
    ],
)
def test_bad_integer_literals(text: str, message: str) -> None:
    with pytest.raises(LangError) as exc:
        lex("BEGIN { " + text + " }")
    assert message in exc.value.errors[0].message


def test_string_escapes() -> None:
    assert body_values(r'"a\tb\n\"q\"\\ \101\x41\0"') == ['a\tb\n"q"\\ AA\x00']


def test_non_utf8_escape_is_kept_as_bytes() -> None:
    (value,) = body_values(r'"\xff"')
    assert isinstance(value, str)
    assert value.encode("utf-8", "surrogateescape") == b"\xff"


def test_bad_escape_and_unterminated_string() -> None:
    with pytest.raises(LangError) as exc:
        lex('BEGIN { "a\\q" }')
    assert exc.value.errors[0].message == "invalid escape character '\\q'"
    with pytest.raises(LangError) as exc:
        lex('BEGIN { "abc\n" }')
    assert [d.message for d in exc.value.errors][0] == "unterminated string"


def test_comments_are_skipped() -> None:
    text = "// line\nBEGIN /* block\n comment */ { @x = 1; // trailing\n }"
    assert kinds(text) == ["ATTACH", "{", "MAP", "=", "INT", ";", "}", "EOF"]


def test_unterminated_block_comment() -> None:
    with pytest.raises(LangError, match="unterminated comment"):
        lex("BEGIN { /* never closed }")


def test_maps_vars_params_and_operators() -> None:
    assert body_values("@ @name $v $1 <<= >>= -> ++ -- != && ||") == [
        "", "name", "v", "1", "<<=", ">>=", "->", "++", "--", "!=", "&&", "||",
    ]  # fmt: skip


def test_preprocessor_lines_at_top_level() -> None:
    toks = lex("#include <linux/sched.h>\nBEGIN {}")
    assert toks[0].kind == "PREPROC" and toks[0].text == "#include <linux/sched.h>"


def test_shebang_line_in_column_one_is_skipped() -> None:
    # bpftrace 0.17 runs its tools as `#!/usr/bin/env bpftrace` scripts; a "#!" line starting
    # in column 1 is skipped (also after a blank line), an indented one is not.
    assert kinds("#!/usr/bin/env bpftrace\nBEGIN {}") == ["ATTACH", "{", "}", "EOF"]
    assert kinds("\n#!/usr/bin/bpftrace\n#include <x.h>\nBEGIN {}")[:2] == ["PREPROC", "ATTACH"]
    assert kinds(" #!/usr/bin/bpftrace\nBEGIN {}")[0] == "PREPROC"


def test_btf_conditionals_of_bpftrace_tools() -> None:
    # bpftrace's tools guard their header fallbacks with #ifndef BPFTRACE_HAVE_BTF; kprobes
    # takes types from BTF, so that branch (struct declarations too) is skipped, #else is kept.
    text = (
        "#ifndef BPFTRACE_HAVE_BTF\n#include <net/sock.h>\nstruct x {\n int a;\n};\n"
        "#ifdef NESTED\n#endif\n#else\n#include <sys/socket.h>\n#endif\n"
        "#ifdef BPFTRACE_HAVE_BTF\nBEGIN {}\n#else\nEND {}\n#endif\n"
        "#ifdef OTHER\nkprobe:f {}\n#endif\n"
    )
    toks = lex(text)
    assert [t.kind for t in toks] == ["PREPROC", "ATTACH", "{", "}", "EOF"]
    assert toks[0].text == "#include <sys/socket.h>" and toks[1].text == "BEGIN"


@pytest.mark.parametrize(
    "text, message",
    [
        ("#ifdef BPFTRACE_HAVE_BTF\nBEGIN {}\n", "unterminated conditional directive"),
        ("#ifndef BPFTRACE_HAVE_BTF\nBEGIN {}\n", "unterminated conditional directive"),
        ("#endif\nBEGIN {}\n", "#endif without #ifdef"),
        ("#ifdef\n#endif\n", "#ifdef needs one macro name"),
    ],
)
def test_bad_conditionals(text: str, message: str) -> None:
    with pytest.raises(LangError) as exc:
        lex(text)
    assert exc.value.errors[0].message == message


def test_invalid_character_reports_position() -> None:
    with pytest.raises(LangError) as exc:
        lex("BEGIN { `x }")
    err = exc.value.errors[0]
    assert err.message == "invalid character '`'"
    assert err.span is not None and (err.span.col, err.span.end_col) == (9, 10)


def test_spans_are_one_based_with_exclusive_end() -> None:
    toks = lex("BEGIN {\n  @abc = 1 }")
    m = toks[2]
    assert (m.span.line, m.span.col, m.span.end_col) == (2, 3, 7)
    assert (m.span.start, m.span.end) == (10, 14)
