"""LossLedger and the kernel counter files it reads (fake tracefs trees in tmp_path)."""

from __future__ import annotations

import json
from pathlib import Path

from kprobes.backends.tracefs.fs import TraceFS
from kprobes.backends.tracefs.ledger import (
    EventsLost,
    LossLedger,
    parse_kprobe_profile,
    parse_uprobe_profile,
    read_cpu_stats,
    read_probe_counters,
)
from kprobes.events.stats import parse_cpu_stats

KPROBE_EVENTS = (
    "p:kp1_aaaaaa_x/op do_sys_openat2 filename=+0(%si):string\n"
    "r16:kp1_aaaaaa_x/rd vfs_read ret=$retval\n"
    "p:other/op do_sys_openat2\n"
)
KPROBE_PROFILE = (
    "  op                                                         40               1\n"
    "  rd                                                        900              17\n"
    "  op                                                          5               0\n"
)
UPROBE_EVENTS = "p:kp1_aaaaaa_x/up /bin/true:0x0000000000001000\n"
UPROBE_PROFILE = "  /bin/true                                                 up                  3\n"


def stats(overrun: int, commit: int = 0, dropped: int = 0, entries: int = 0) -> str:
    return (f"entries: {entries}\noverrun: {overrun}\ncommit overrun: {commit}\nbytes: 10\n"
            f"oldest event ts:     1.000000\nnow ts:   2.000000\ndropped events: {dropped}\nread events: 4\n")


def tree(root: Path, kprofile: str = KPROBE_PROFILE) -> TraceFS:
    (root / "kprobe_events").write_text(KPROBE_EVENTS)
    (root / "kprobe_profile").write_text(kprofile)
    (root / "uprobe_events").write_text(UPROBE_EVENTS)
    (root / "uprobe_profile").write_text(UPROBE_PROFILE)
    for cpu, text in ((0, stats(5)), (1, stats(0, 2, 7))):
        d = root / "instances" / "i" / "per_cpu" / f"cpu{cpu}"
        d.mkdir(parents=True)
        (d / "stats").write_text(text)
    (root / "instances" / "i" / "per_cpu" / "cpu2").mkdir()  # offline CPU: no stats file
    return TraceFS(str(root))


def test_parse_profiles() -> None:
    k = parse_kprobe_profile(KPROBE_PROFILE + "garbage\n")
    assert [(c.event, c.hits, c.misses) for c in k] == [("op", 40, 1), ("rd", 900, 17), ("op", 5, 0)]
    u = parse_uprobe_profile(UPROBE_PROFILE)
    assert [(c.event, c.hits, c.misses) for c in u] == [("up", 3, None)]


def test_counters_matched_by_position_to_our_group(tmp_path: Path) -> None:
    fs = tree(tmp_path)
    got = read_probe_counters(fs, "kp1_aaaaaa_x")
    # the other group's "op" (5 hits) is not ours, though the profile line has the same name
    assert {k: (c.hits, c.misses) for k, c in got.items()} == {"op": (40, 1), "rd": (900, 17), "up": (3, None)}
    assert set(read_probe_counters(fs, "other")) == {"op"}


def test_counters_dropped_when_files_disagree(tmp_path: Path) -> None:
    fs = tree(tmp_path, kprofile=KPROBE_PROFILE.replace("rd ", "xx "))
    assert set(read_probe_counters(fs, "kp1_aaaaaa_x")) == {"up"}


def test_cpu_stats_deltas_and_totals(tmp_path: Path) -> None:
    fs = tree(tmp_path)
    now = read_cpu_stats(fs, "instances/i")
    assert sorted(now) == [0, 1]
    ledger = LossLedger()
    ledger.set_baseline({0: parse_cpu_stats(stats(2)), 1: parse_cpu_stats(stats(0, entries=1))})
    ledger.update_cpu_stats(now)
    assert [(c.overrun, c.commit_overrun, c.dropped) for c in ledger.cpus.values()] == [(3, 0, 0), (0, 2, 7)]
    assert ledger.ring_buffer_lost == 12
    # the reader's views of the same loss are not added on top of the kernel's count
    ledger.note_page(True, 10, 0)
    ledger.note_text({0: 4}, 0)
    assert ledger.ring_buffer_lost == 12
    ledger.note_page(True, 30, 2)
    assert ledger.ring_buffer_lost == 40 and ledger.undecodable == 2
    ledger.add_probe("rd", "kprobe", is_return=True)
    ledger.add_probe("op", "kprobe")
    ledger.note_delivered("rd", 5)
    ledger.update_probe_counters(read_probe_counters(fs, "kp1_aaaaaa_x"), {"rd": "rd", "op": "op"})
    assert ledger.probe_misses == 18
    assert ledger.total_lost == 40 + 2 + 18
    report = ledger.report()
    assert len(report.splitlines()) == 1 and report.startswith("kprobes: 60 events lost: ")
    assert ("ring buffer overrun on CPUs 0, 1 (3 overwritten, 2 lost to nested writers, "
            "7 dropped, buffer full; raise --buffer-size)") in report
    assert "probe rd: kernel missed 17 hits (maxactive exhausted or recursion" in report
    assert "probe op: kernel missed 1 hits (recursion" in report
    assert "2 records could not be decoded" in report
    rec = json.loads(ledger.to_json_text())
    assert rec["lost"] == 60 and rec["probes"]["rd"] == {
        "kind": "kprobe", "delivered": 5, "kernel_hits": 900, "misses": 17}
    assert rec["ring_buffer"]["cpus"]["1"] == {"overrun": 0, "commit_overrun": 2, "dropped": 7}
    err = EventsLost(ledger)
    assert err.exit_code == 3 and "60 events were lost" in err.message


def test_clean_ledger_reports_nothing() -> None:
    ledger = LossLedger(reader="text")
    ledger.add_probe("a", "uprobe")
    ledger.note_delivered("a", 3)
    ledger.note_delivered("unknown-label")
    assert not ledger.any_loss and ledger.report() == ""
    assert ledger.probes["unknown-label"].delivered == 1
    ledger.note_page(True, None, 0)  # a flagged page without a stored count is still loss
    assert ledger.any_loss and "1 pages with an unstored count" in ledger.report()
    assert ledger.total_lost == 1  # at least one


def test_events_left_in_the_buffer_are_counted() -> None:
    ledger = LossLedger()
    ledger.update_cpu_stats({0: parse_cpu_stats(stats(0, entries=250)),
                             1: parse_cpu_stats(stats(0, entries=1))})
    assert ledger.left_unread == 251 and ledger.total_lost == 251
    assert "251 events were still in the buffer" in ledger.report()
    assert ledger.to_json()["left_unread"] == 251
