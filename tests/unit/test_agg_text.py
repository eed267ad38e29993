"""Text and JSON renderers: labels, bars, top/div, escaping, and message lines."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kprobes.agg import (
    Avg,
    BpfMap,
    Count,
    LinearHist,
    Log2Hist,
    Stats,
    StrValue,
    Sum,
    attached_probes_json,
    attached_probes_text,
    format_exit,
    format_map,
    format_map_json,
    json_escape,
    lost_events_json,
    message_json,
    time_json,
    value_json,
)
from kprobes.agg.text import bar_width, format_hist, hist_label, lhist_label
from kprobes.errors import KprobesError


@pytest.mark.parametrize(
    ("power", "label"),
    [(0, "1"), (9, "512"), (10, "1K"), (19, "512K"), (20, "1M"), (30, "1G"), (31, "2G"), (40, "1T"), (62, "4194304T")],
)
def test_hist_labels(power: int, label: str) -> None:
    assert hist_label(power) == label


@pytest.mark.parametrize(
    ("number", "label"), [(0, "0"), (5, "5"), (1024, "1K"), (3072, "3K"), (1536, "1536"), (1 << 20, "1M"), (3 << 20, "3M")]
)
def test_lhist_labels(number: int, label: str) -> None:
    assert lhist_label(number) == label


def test_bar_width_uses_float32() -> None:
    assert bar_width(15, 26) == 30  # float64 arithmetic would give 29
    assert bar_width(1, 1) == 52 and bar_width(0, 5) == 0 and bar_width(1, 3) == 17


def test_hist_beyond_2g_uses_64_bit_buckets() -> None:
    h = Log2Hist()
    h.add(1 << 40)
    assert format_hist(h) == "[1T, 2T)               1 |" + "@" * 52 + "|\n"


@given(st.lists(st.integers(-10, 5000), min_size=1, max_size=40))
@settings(max_examples=50)
def test_hist_lines_cover_first_to_last_bucket(values: list[int]) -> None:
    h = Log2Hist()
    for v in values:
        h.add(v)
    lines = format_hist(h).splitlines()
    used = sorted({i for i, c in enumerate(h.counts()) if c})
    assert len(lines) == used[-1] - used[0] + 1
    assert all(len(line) == 16 + 8 + 2 + 52 + 1 for line in lines)
    assert sum(int(line[16:24]) for line in lines) == len(values)


def _sum_map() -> BpfMap:
    m = BpfMap("@c", Sum())
    for k, v in ((1, 10), (2, 25), (3, -7), (4, 99)):
        m.update(k, v)
    return m


def test_format_map_top_and_div() -> None:
    m = _sum_map()
    assert format_map(m) == "@c[3]: -7\n@c[1]: 10\n@c[2]: 25\n@c[4]: 99\n"
    assert format_map(m, top=2) == "@c[2]: 25\n@c[4]: 99\n"
    assert format_map(m, top=3, div=4) == "@c[1]: 2\n@c[2]: 6\n@c[4]: 24\n"
    assert format_map(m, 0, 10).startswith("@c[3]: 0\n")  # -7 / 10 truncates to 0
    assert format_map_json(m, 2, 0) == '{"type": "map", "data": {"@c": {"2": 25, "4": 99}}}\n'


def test_stats_ignore_top_and_div_but_avg_does_not() -> None:
    st_map, avg_map = BpfMap("@s", Stats()), BpfMap("@a", Avg())
    for k, v in (("x", 10), ("y", 20), ("z", 30)):
        st_map.update(k, v)
        avg_map.update(k, v)
    assert format_map(st_map, 1, 5).count("\n") == 4
    assert format_map(avg_map, 2, 3) == "@a[y]: 6\n@a[z]: 10\n\n"
    assert '"x"' in format_map_json(st_map, 1, 5)
    assert format_map_json(avg_map, 1, 10) == '{"type": "stats", "data": {"@a": {"z": 3}}}\n'


def test_empty_maps() -> None:
    assert format_map(BpfMap("@c", Count())) == "\n"
    assert format_map(BpfMap("@h", Log2Hist())) == "\n"
    assert format_map(BpfMap("@s", Stats())) == "\n\n"
    assert format_map_json(BpfMap("@c", Count())) == ""
    assert format_map(BpfMap("@n", Count(), scalar=True)) == "@n: 0\n"
    zeroed = BpfMap("@l", LinearHist(0, 10, 1))
    zeroed.update((), 3)
    zeroed.zero()
    assert format_map(zeroed) == "@l: \n\n"
    assert format_map_json(zeroed) == '{"type": "hist", "data": {"@l": []}}\n'


def test_exit_output_orders_maps_by_name_bytes() -> None:
    maps = []
    for name in ("@b", "@a", "@B", "@_x", "@"):
        m = BpfMap(name, Count())
        m.update()
        maps.append(m)
    assert format_exit(maps) == "\n\n@: 1\n@B: 1\n@_x: 1\n@a: 1\n@b: 1\n"


def test_string_keys_and_values() -> None:
    m = BpfMap("@k", StrValue())
    m.update(("a\"b c", 2), "v\n")
    assert format_map(m) == '@k[a"b c, 2]: v\n\n'
    assert format_map_json(m) == '{"type": "map", "data": {"@k": {"a\\"b c,2": "v\\n"}}}\n'
    json.loads(format_map_json(m))


def test_json_escape_and_messages() -> None:
    assert json_escape('a"b\\c\n\r\t\x01\x1f\x7fé') == 'a\\"b\\\\c\\n\\r\\t\\u0001\\u001f\x7fé'
    assert attached_probes_text(1) == "Attaching 1 probe...\n"
    assert attached_probes_text(3) == "Attaching 3 probes...\n"
    assert attached_probes_json(2) == '{"type": "attached_probes", "data": {"probes": 2}}\n'
    assert lost_events_json(4) == '{"type": "lost_events", "data": {"events": 4}}\n'
    assert time_json("12:00:00\n") == '{"type": "time", "data": "12:00:00\\n"}\n'
    assert message_json("cat", "x") == '{"type": "cat", "data": "x"}\n'
    assert value_json(5) == '{"type": "value", "data": 5}\n'
    assert value_json("s") == '{"type": "value", "data": "s"}\n'
    with pytest.raises(KprobesError):
        value_json(1.5)
