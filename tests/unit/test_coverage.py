"""docs/bpftrace-coverage.md is generated from the code (kprobes.engines.coverage) and
cannot drift: regenerating it must give the committed rows and statuses, every test it
names must exist, no row may be unknown or refused without a reason, and every probe type,
builtin and function the front end knows has its row."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kprobes.engines import coverage
from kprobes.lang import attach, builtins

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "bpftrace-coverage.md"
REGENERATE = "regenerate it: python -m kprobes.engines.coverage > docs/bpftrace-coverage.md"


@pytest.fixture(scope="module")
def text() -> str:
    return coverage.render(ROOT / "tests")


def _statuses(doc: str) -> list[tuple[str, ...]]:
    """(item, bpf, tracefs) of every table row: what must never drift (the tests column may
    name other tests as tests are added; each named test must exist)."""
    rows = []
    for line in doc.splitlines():
        if line.startswith("| ") and not line.startswith(("| item ", "|---")):
            cells = re.split(r" (?<!\\)\| ", line[2:])
            rows.append(tuple(cells[:3]))
    return rows


def test_the_committed_table_is_current(text: str) -> None:
    assert DOC.exists(), REGENERATE
    committed = DOC.read_text()
    assert _statuses(committed) == _statuses(text), f"docs/bpftrace-coverage.md is stale: {REGENERATE}"
    assert len(_statuses(text)) == len(coverage.ROWS)


def test_every_named_test_exists(text: str) -> None:
    names = re.findall(r"`(tests/[^`]+)`", text + DOC.read_text())
    assert len(names) > 100
    for ref in names:
        path, _, name = ref.partition("::")
        source = (ROOT / path).read_text()
        assert not name or re.search(rf"^\s*def {re.escape(name)}\(", source, re.M), ref


def test_every_row_has_a_status_and_refusals_a_reason() -> None:
    for row in coverage.ROWS:
        for s in coverage.status(row):
            assert s in ("works", "n.a.") or (s.startswith("refused: ") and len(s) > 20), (row, s)
    assert any(row.kind == "lang" for row in coverage.ROWS)


def test_every_name_the_front_end_knows_has_a_row() -> None:
    keys = {(row.kind, row.key) for row in coverage.ROWS}
    for p in set(attach.PROVIDERS.values()) | set(attach.UNSUPPORTED_PROVIDERS.values()):
        if p not in ("END", "self"):  # END shares BEGIN's row; 'self' is not in 0.17
            assert ("provider", p) in keys, p
    for b in builtins.BUILTINS:
        assert ("builtin", b) in keys, b
    for f in builtins.FUNCTIONS:
        assert ("function", f) in keys, f


def test_an_unclassified_name_raises() -> None:
    with pytest.raises(coverage.CoverageError):
        coverage.status(coverage.Row("Functions", "nope()", "function", "nope"))
    with pytest.raises(coverage.CoverageError):
        coverage.status(coverage.Row("Probe types", "nope:", "provider", "nope"))
