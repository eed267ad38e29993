"""Aggregation values and BpfMap: bpftrace's bucketing, 64-bit arithmetic, map operations."""

from __future__ import annotations

from typing import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    log2_bucket,
    normalize_key,
)
from kprobes.agg.aggregations import c_div, to_s64, to_u64
from kprobes.errors import KprobesError


@pytest.mark.parametrize(
    ("value", "index"),
    [(-5, 0), (-1, 0), (0, 1), (1, 2), (2, 3), (3, 3), (4, 4), (1023, 11), (1024, 12),
     ((1 << 63) - 1, 64), ((1 << 64) - 1, 0)],
)
def test_log2_buckets(value: int, index: int) -> None:
    assert log2_bucket(value) == index


@given(st.integers(1, (1 << 63) - 1))
@settings(max_examples=100)
def test_log2_bucket_bounds(value: int) -> None:
    i = log2_bucket(value)
    assert 1 << (i - 2) <= value < 1 << (i - 1)


def test_lhist_buckets_follow_bpftrace() -> None:
    h = LinearHist(0, 10, 3)  # 3 buckets: [0,3) [3,6) [6,9), then [10, ...)
    assert h.nbuckets == 3
    assert [h.bucket(v) for v in (-1, 0, 2, 3, 8, 9, 10, 11)] == [0, 1, 1, 2, 3, 4, 4, 4]
    h2 = LinearHist(100, 200, 10)
    assert h2.bucket(99) == 0 and h2.bucket(100) == 1 and h2.bucket(199) == 10
    assert h2.bucket(200) == 11 and h2.bucket(10**6) == 11
    assert h2.bucket((1 << 64) - 1) == 0  # -1 as a signed 64-bit value


@pytest.mark.parametrize(
    ("args", "message"),
    [((0, 10, 0), "step must be >= 1"), ((-10, 10, 5), "min must be non-negative"),
     ((10, 10, 1), "step is too large"), ((0, 10, 20), "step is too large"),
     ((0, 1001, 1), "too many buckets")],
)
def test_lhist_rejects_what_bpftrace_rejects(args: tuple[int, int, int], message: str) -> None:
    with pytest.raises(KprobesError, match=message):
        LinearHist(*args)
    LinearHist(0, 1000, 1)  # the largest allowed


def test_sum_and_count_wrap_at_64_bits() -> None:
    s = Sum()
    s.add((1 << 63) - 1)
    s.add(1)
    assert s.total == -(1 << 63)
    u = Sum(signed=False)
    u.add(-1)
    assert u.total == (1 << 64) - 1
    c = Count((1 << 64) - 1)
    c.add()
    assert c.count == 0
    assert to_s64(1 << 63) == -(1 << 63) and to_u64(-1) == (1 << 64) - 1


def test_avg_truncates_toward_zero() -> None:
    a = Avg()
    for v in (-7, 0):
        a.add(v)
    assert a.average == -3
    b = Stats()
    for v in (7, 0):
        b.add(v)
    assert (b.count, b.average, b.total) == (2, 3, 7)
    assert Avg().average == 0
    assert c_div(-7, 2) == -3 and c_div(7, -2) == -3 and c_div(7, 2) == 3


def test_min_max_first_value_sets_them() -> None:
    mx = Max()
    for v in (-5, -9):
        mx.add(v)
    assert mx.value == -5
    mn = Min()
    for v in (5, 9):
        mn.add(v)
    assert mn.value == 5
    mn.zero()
    assert mn.value == 0
    mn.add(8)
    assert mn.value == 8


@given(st.lists(st.integers(-(1 << 40), 1 << 40), min_size=1, max_size=30), st.integers(0, 30))
@settings(max_examples=60)
def test_merge_equals_recording_everything(values: list[int], cut: int) -> None:
    makers: list[Callable[[], Aggregation]] = [
        Count, Sum, Avg, Stats, Min, Max, Log2Hist, lambda: LinearHist(0, 1000, 7)
    ]
    for make in makers:
        whole, left, right = make(), make(), make()
        for v in values:
            whole.add(v)
        for v in values[:cut]:
            left.add(v)
        for v in values[cut:]:
            right.add(v)
        left.merge(right)
        assert repr(left) == repr(whole)


def test_merge_refuses_other_kinds_and_ranges() -> None:
    with pytest.raises(KprobesError):
        Count().merge(Sum())  # type: ignore[arg-type]
    with pytest.raises(KprobesError):
        LinearHist(0, 10, 1).merge(LinearHist(0, 20, 1))


def test_hist_zero_keeps_buckets_at_zero() -> None:
    h = Log2Hist()
    h.add(5)
    h.zero()
    assert h.total() == 0 and h.counts()[4] == 0


def test_bpfmap_update_clear_zero_delete() -> None:
    m = BpfMap("c", Count())
    assert m.name == "@c"
    m.update("a")
    m.update(("a",))
    m.update(("b", 2))
    assert m[("a",)].sort_value() == 2 and ("b", 2) in m and len(m) == 2
    assert m.delete(("b", 2)) and not m.delete(("b", 2))
    m.zero()
    assert len(m) == 1 and m["a"].sort_value() == 0
    m.clear()
    assert len(m) == 0


def test_scalar_count_map_always_has_its_entry() -> None:
    m = BpfMap("@n", Count(), scalar=True)
    assert m.items()[0][0] == () and m[()].sort_value() == 0
    m.update()
    m.clear()
    assert len(m) == 1 and m[()].sort_value() == 0
    s = BpfMap("@s", Sum(), scalar=True)
    assert len(s) == 0


def test_bpfmap_sort_order() -> None:
    m = BpfMap("@s", Sum())
    for key, v in ((1, 5), (2, -3), (3, 5), (-1, 0), ("x", 5)):
        m.update(key, v)
    # by value; ties (the three 5s) by key, ints before strings
    assert [k for k, _ in m.sorted_items()] == [(2,), (-1,), (1,), (3,), ("x",)]
    strs = BpfMap("@v", StrValue())
    for skey, sval in ((3, "c"), (-1, "m"), (10, "a"), (2, "z")):
        strs.update(skey, sval)
    # string values sort by key, ints as unsigned 64-bit (-1 last)
    assert [k for k, _ in strs.sorted_items()] == [(2,), (3,), (10,), (-1,)]
    h = BpfMap("@h", Log2Hist())
    for hkey, n in (("a", 3), ("b", 1), ("c", 2)):
        for _ in range(n):
            h.update(hkey, 1)
    assert [k for k, _ in h.sorted_items()] == [("b",), ("c",), ("a",)]


def test_bpfmap_merge_and_set() -> None:
    a, b = BpfMap("@x", Count()), BpfMap("@x", Count())
    a.update(1)
    b.update(1)
    b.update(2)
    a.merge(b)
    assert a[1].sort_value() == 2 and a[2].sort_value() == 1
    b.update(2)
    assert a[2].sort_value() == 1  # merged entries are copies
    with pytest.raises(KprobesError):
        a.merge(BpfMap("@y", Sum()))
    with pytest.raises(KprobesError):
        a.set(3, Sum())
    a.set(3, Count(9))
    assert a[3].sort_value() == 9


@pytest.mark.parametrize("bad", [1.5, (1, 2.0), True, (True,), [1]])
def test_keys_must_be_ints_or_strings(bad: object) -> None:
    with pytest.raises(KprobesError):
        normalize_key(bad)


def test_plain_values_replace() -> None:
    v = IntValue()
    v.add(3)
    v.add(-4)
    assert v.value == -4
    with pytest.raises(KprobesError):
        v.add("x")
    sv = StrValue()
    sv.add("a")
    sv.add("b")
    assert sv.value == "b"
    with pytest.raises(KprobesError):
        Sum().add("nope")
