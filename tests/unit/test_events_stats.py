from __future__ import annotations

from pathlib import Path

import pytest

from kprobes.events.cmdlines import comm_for, parse_saved_cmdlines, parse_saved_tgids
from kprobes.events.format import EventFormatError
from kprobes.events.stats import parse_cpu_stats

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "host-6.18"


def test_cpu_stats() -> None:
    s = parse_cpu_stats(
        "entries: 12\noverrun: 3\ncommit overrun: 1\nbytes: 4096\n"
        "oldest event ts:   807.309813\nnow ts:   808.000001\ndropped events: 2\nread events: 7\n")
    assert (s.entries, s.overrun, s.commit_overrun, s.bytes) == (12, 3, 1, 4096)
    assert s.oldest_event_ts_ns == 807_309_813_000 and s.now_ts_ns == 808_000_001_000
    assert (s.dropped_events, s.read_events, s.lost) == (2, 7, 6)


def test_cpu_stats_counter_clock_and_old_kernel() -> None:
    s = parse_cpu_stats("entries: 1\noverrun: 0\ncommit overrun: 0\nbytes: 40\nnow ts: 12345\n")
    assert s.now_ts_ns == 12345 and s.dropped_events is None and s.read_events is None
    assert s.lost == 0


def test_cpu_stats_errors() -> None:
    with pytest.raises(EventFormatError):
        parse_cpu_stats("entries: 1\n")
    with pytest.raises(EventFormatError):
        parse_cpu_stats("entries: x\noverrun: 0\ncommit overrun: 0\nbytes: 1\n")


def test_cpu_stats_fixture() -> None:
    s = parse_cpu_stats((FIXTURES / "cpu0.stats").read_text())
    assert s.entries >= 0 and s.now_ts_ns is not None and s.now_ts_ns > 0


def test_saved_cmdlines_and_tgids() -> None:
    comms = parse_saved_cmdlines("1 systemd\n 42 Web Content\nbad line\n7 kworker/u8:2-events_unbound\n")
    assert comms == {1: "systemd", 42: "Web Content", 7: "kworker/u8:2-events_unbound"}
    assert parse_saved_tgids("10 10\n11 10\nx y\n") == {10: 10, 11: 10}
    assert comm_for(0, comms) == "<idle>"
    assert comm_for(42, comms) == "Web Content"
    assert comm_for(99, comms) == "<...>"
    assert comm_for(1, None) == "<...>"
