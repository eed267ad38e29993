"""Maps as Prometheus metrics: families, buckets, labels, escaping, the cardinality cap (offline)."""

from __future__ import annotations

from typing import Dict, Tuple

import pytest

from kprobes.agg.aggregations import (
    Avg,
    Count,
    IntValue,
    LinearHist,
    Log2Hist,
    Max,
    Stats,
    StrValue,
    Sum,
)
from kprobes.agg.bpfmap import BpfMap
from kprobes.export.prometheus import (
    MapCollector,
    label_names,
    lhist_buckets,
    log2_buckets,
    metric_name,
)
from kprobes.lang import parse_program

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402


def _scrape(collector: MapCollector) -> Tuple[str, Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]]:
    reg = prometheus_client.CollectorRegistry(auto_describe=False)
    reg.register(collector)
    text = prometheus_client.generate_latest(reg).decode("utf-8")
    samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, samples


def _maps() -> Dict[str, BpfMap]:
    calls = BpfMap("@calls", Count())
    for comm, n in (("cat", 3), ('we"ird\\x\nname', 1)):
        for _ in range(n):
            calls.update((comm, 42))
    h = BpfMap("@lat", Log2Hist())
    for v in (0, 1, 2, 3, 100):
        h.update((), v)
    lh = BpfMap("@l", LinearHist(0, 100, 10))
    for v in (5, 15, 15, 250):
        lh.update(("x",), v)
    s = BpfMap("@bytes", Sum())
    s.update(("read",), 100)
    s.update(("read",), 28)
    mx = BpfMap("@mx", Max())
    mx.update((), 7)
    av = BpfMap("@avg", Avg())
    for v in (1, 2, 6):
        av.update((), v)
    st = BpfMap("@st", Stats())
    for v in (1, 2, 6):
        st.update((), v)
    iv = BpfMap("@n", IntValue())
    iv.update((), 5)
    sv = BpfMap("@name", StrValue())
    sv.update((), "x")
    return {m.name.lstrip("@"): m for m in (calls, h, lh, s, mx, av, st, iv, sv)}


def test_metric_names_and_label_names() -> None:
    assert metric_name("@bytes") == "kprobes_bytes"
    assert metric_name("@") == "kprobes_map"
    assert metric_name("@a.b", "x") == "x_a_b"
    prog = parse_program("tracepoint:syscalls:sys_enter_openat { @o[comm, pid, str(args->filename)] = count();"
                         " @[kstack] = count(); $x = 1; @v[$x, 5] = sum(3); @le[cpu, cpu] = count(); }")
    assert label_names(prog) == {"@o": ["comm", "pid", "filename"], "@": ["kstack"],
                                 "@v": ["x", "key1"], "@le": ["cpu", "cpu1"]}
    assert label_names(parse_program("BEGIN { @q[1] = count(); @r[nsecs] = count(); }")) == {
        "@q": ["key"], "@r": ["nsecs"]}


def test_log2_and_lhist_buckets() -> None:
    h = Log2Hist()
    for v in (0, 1, 2, 3, 100):
        h.add(v)
    buckets, low = log2_buckets(h, 3)
    assert buckets == [("0", 1.0), ("1", 2.0), ("3", 4.0), ("+Inf", 5.0)]
    assert low == 0 + 1 + 2 + 2 + 64
    assert log2_buckets(h, 3, negative=True)[0][0] == ("-1", 0.0)
    lh = LinearHist(0, 30, 10)
    for v in (-5, 5, 15, 15, 99):
        lh.add(v)
    assert lhist_buckets(lh) == ([("-1", 1.0), ("9", 2.0), ("19", 4.0), ("29", 4.0), ("+Inf", 5.0)],
                                 0 + 10 + 10 + 30)


def test_collector_families_and_values() -> None:
    labels = {"@calls": ["comm", "pid"], "@l": ["what"], "@bytes": ["op"]}
    text, s = _scrape(MapCollector(_maps, labels, loss=lambda: {"bpf ringbuf": 3}))
    assert s[("kprobes_calls_total", (("comm", "cat"), ("pid", "42")))] == 3
    assert s[("kprobes_calls_total", (("comm", 'we"ird\\x\nname'), ("pid", "42")))] == 1
    assert 'comm="we\\"ird\\\\x\\nname"' in text  # escaped in the exposition, parsed back intact
    assert s[("kprobes_lat_bucket", (("le", "0"),))] == 1
    assert s[("kprobes_lat_bucket", (("le", "3"),))] == 4
    assert s[("kprobes_lat_bucket", (("le", "127"),))] == 5
    assert s[("kprobes_lat_bucket", (("le", "+Inf"),))] == 5
    assert s[("kprobes_lat_count", ())] == 5 and s[("kprobes_lat_sum", ())] == 69
    assert ("kprobes_lat_bucket", (("le", "255"),)) not in s  # up to the last non-empty bucket
    assert s[("kprobes_l_bucket", (("le", "9"), ("what", "x")))] == 1
    assert s[("kprobes_l_bucket", (("le", "99"), ("what", "x")))] == 3
    assert s[("kprobes_l_count", (("what", "x"),))] == 4
    assert s[("kprobes_bytes_total", (("op", "read"),))] == 128
    assert s[("kprobes_mx", ())] == 7 and s[("kprobes_avg", ())] == 3 and s[("kprobes_n", ())] == 5
    assert s[("kprobes_st_count", ())] == 3 and s[("kprobes_st_sum", ())] == 9
    assert not any(k[0].startswith("kprobes_name") for k in s)  # string values are not numbers
    assert s[("kprobes_events_lost_total", (("source", "bpf ringbuf"),))] == 3
    assert s[("kprobes_map_entries", (("map", "@calls"),))] == 2
    assert s[("kprobes_scrapes_total", ())] == 1
    assert "# TYPE kprobes_lat histogram" in text and "# TYPE kprobes_calls_total counter" in text


def test_cardinality_cap_keeps_the_largest_and_says_how_many_were_dropped() -> None:
    m = BpfMap("@per", Count())
    for pid in range(50):
        for _ in range(pid + 1):
            m.update(("comm", pid))
    _, s = _scrape(MapCollector(lambda: {"per": m}, {"@per": ["comm", "pid"]}, max_series=10))
    kept = sorted(int(dict(k[1])["pid"]) for k in s if k[0] == "kprobes_per_total")
    assert kept == list(range(40, 50))
    assert s[("kprobes_map_series_dropped", (("map", "@per"),))] == 40
    assert s[("kprobes_map_entries", (("map", "@per"),))] == 50


def test_histogram_buckets_only_grow_and_negatives_drop_the_sum() -> None:
    m = BpfMap("@h", Log2Hist())
    m.update((), 100)
    col = MapCollector(lambda: {"h": m})
    _, s = _scrape(col)
    assert ("kprobes_h_bucket", (("le", "127"),)) in s
    m.clear()
    m.update((), 1)
    _, s = _scrape(col)
    assert s[("kprobes_h_bucket", (("le", "127"),))] == 1  # the bucket set stayed
    m.update((), -5)
    _, s = _scrape(col)
    assert s[("kprobes_h_bucket", (("le", "-1"),))] == 1
    assert ("kprobes_h_sum", ()) not in s  # OpenMetrics: no sum with negative buckets


def test_a_map_that_fails_to_read_is_left_out() -> None:
    class Broken(BpfMap):
        def sorted_items(self):  # type: ignore[no-untyped-def]
            raise OSError("closed")

    good = BpfMap("@g", Count())
    good.update((), None)
    _, s = _scrape(MapCollector(lambda: {"b": Broken("@b", Count()), "g": good}))
    assert s[("kprobes_g_total", ())] == 1
    assert not any(k[0].startswith("kprobes_b_") for k in s)
