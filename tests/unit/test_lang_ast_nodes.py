"""AST nodes are frozen value objects (lang.ast's own light dataclass)."""

from __future__ import annotations

import pytest

from kprobes._record import FrozenInstanceError
from kprobes.lang import ast, parse_program
from kprobes.lang.source import Span


def test_value_semantics() -> None:
    sp = Span(1, 1, 1, 3, 0, 2)
    a, b = ast.IntLit(42, sp), ast.IntLit(value=42, span=sp)
    assert a == b and hash(a) == hash(b) and a != ast.IntLit(43, sp)
    assert a != ast.StrLit("42", sp)
    assert repr(a) == f"IntLit(value=42, span={sp!r})"
    with pytest.raises(FrozenInstanceError):
        a.value = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        ast.IntLit(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        ast.IntLit(1, sp, nope=2)  # type: ignore[call-arg]
    assert list(ast.IntLit.__dataclass_fields__) == ["value", "span"]  # the engines walk these


def test_defaults_and_fields_left_out_of_equality() -> None:
    p1 = parse_program("BEGIN { exit(); }", "a.bt")
    p2 = ast.Program(p1.probes, p1.filename, p1.text, warnings=("w",))  # type: ignore[arg-type]
    assert p1.includes == () and p1 == p2 and hash(p1) == hash(p2)
    assert p2.warnings == ("w",)
    assert parse_program("BEGIN { exit(); }", "a.bt") == p1
