"""Diff kprobes.agg output against real bpftrace output, byte for byte.

tests/unit/golden/agg/cases.json lists BEGIN-only programs as ops;
capture.py ran each through bpftrace (version in golden/agg/VERSION) in
text and ``-f json`` mode.  Here the same ops are replayed on BpfMap and the
renderers, and the whole stdout must match.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, Callable

import pytest

from kprobes.agg import (
    Aggregation,
    Avg,
    BpfMap,
    Count,
    IntValue,
    LinearHist,
    Log2Hist,
    Max,
    Min,
    Stats,
    StrValue,
    Sum,
    attached_probes_json,
    attached_probes_text,
    compile_printf,
    format_exit,
    format_exit_json,
    format_map,
    format_map_json,
    printf_json,
)

GOLDEN = Path(__file__).resolve().parent / "golden" / "agg"
CASES: dict[str, list[list[Any]]] = json.loads((GOLDEN / "cases.json").read_text())["cases"]


def _template(kind: str, params: list[int]) -> Aggregation:
    simple: dict[str, Callable[[], Aggregation]] = {"count": Count, "sum": Sum, "avg": Avg, "min": Min, "max": Max, "stats": Stats, "hist": Log2Hist}
    if kind == "lhist":
        return LinearHist(*params)
    return simple[kind]()


def replay(ops: list[list[Any]], as_json: bool) -> str:
    maps: dict[str, BpfMap] = {}
    out = [attached_probes_json(1) if as_json else attached_probes_text(1)]

    def get(name: str, template: Aggregation, key: list[Any]) -> BpfMap:
        if name not in maps:
            maps[name] = BpfMap(name, template, scalar=not key)
        return maps[name]

    for op in ops:
        verb = op[0]
        if verb == "update":
            _, name, kind, params, key, value, repeat = op
            m = get(name, _template(kind, params), key)
            for _ in range(repeat):
                m.update(tuple(key), value)
        elif verb == "assign":
            _, name, key, value = op
            tmpl: Aggregation = StrValue() if isinstance(value, str) else IntValue()
            get(name, tmpl, key).update(tuple(key), value)
        elif verb == "declare":
            _, name, kind, params = op
            get(name, _template(kind, params), [])
        elif verb == "clear":
            maps[op[1]].clear()
        elif verb == "zero":
            maps[op[1]].zero()
        elif verb == "delete":
            maps[op[1]].delete(tuple(op[2]))
        elif verb == "print":
            _, name, top, div = op
            render = format_map_json if as_json else format_map
            out.append(render(maps[name], top, div))
        elif verb == "printf":
            _, fmt, args = op
            text = compile_printf(fmt)(args)
            out.append(printf_json(text) if as_json else text)
        else:  # pragma: no cover
            raise AssertionError(f"unknown op {verb}")
    out.append(format_exit_json(maps.values()) if as_json else format_exit(maps.values()))
    return "".join(out)


def test_golden_files_exist_for_every_case() -> None:
    assert "bpftrace v0.17.0" in (GOLDEN / "VERSION").read_text()
    for name in CASES:
        for ext in ("bt", "txt", "json"):
            assert (GOLDEN / f"{name}.{ext}").is_file(), f"{name}.{ext}: run capture.py"


def test_captured_programs_match_cases() -> None:
    """The stored .bt files were generated from the current cases.json."""
    spec = importlib.util.spec_from_file_location("agg_capture", GOLDEN / "capture.py")
    assert spec is not None and spec.loader is not None
    capture = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(capture)
    for name, ops in CASES.items():
        stored = (GOLDEN / f"{name}.bt").read_text().split("\n", 1)[1]
        assert stored == capture.program(ops), f"{name}.bt is stale: rerun capture.py"


@pytest.mark.parametrize("name", sorted(CASES))
def test_text_output_matches_bpftrace(name: str) -> None:
    expected = (GOLDEN / f"{name}.txt").read_text()
    assert replay(CASES[name], as_json=False) == expected


@pytest.mark.parametrize("name", sorted(CASES))
def test_json_output_matches_bpftrace(name: str) -> None:
    expected = (GOLDEN / f"{name}.json").read_text()
    got = replay(CASES[name], as_json=True)
    assert got == expected
    for line in got.splitlines():
        if line:
            json.loads(line)  # every non-blank line is one JSON document
