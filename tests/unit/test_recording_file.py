"""The recording file: round trips, streaming with bounded memory, incomplete files, kallsyms subset."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kprobes.backends.recording import (
    Recording,
    RecordingError,
    RecordingHeader,
    RecordingWriter,
    event_from_record,
    event_to_record,
    kallsyms_subset,
    read_loss_stats,
    symbol_of_location,
)
from kprobes.events.model import TraceEvent

HEADER = RecordingHeader(kernel_release="6.1.0-test", machine="x86_64", events=("probe:do_sys_openat2",),
                         formats={"probe:do_sys_openat2": "name: do_sys_openat2\nID: 1\n"},
                         definitions={"probe:do_sys_openat2": "p:probe/do_sys_openat2 do_sys_openat2+0"})  # fmt: skip


def ev(i: int, **kw: object) -> TraceEvent:
    base: dict[str, object] = dict(comm="cat", pid=100 + i % 3, cpu=i % 2, timestamp_ns=1_000_000_000 + i,
                                   event="do_sys_openat2", group="probe",
                                   location="do_sys_openat2+0x0/0x1b0", fields={"filename": f"/f/{i}"})  # fmt: skip
    base.update(kw)
    return TraceEvent(**base)  # type: ignore[arg-type]


values = st.recursive(
    st.one_of(st.integers(min_value=-(2**63), max_value=2**64 - 1), st.text(max_size=20), st.binary(max_size=8)),
    lambda inner: st.tuples(inner, inner),
    max_leaves=4,
)
events = st.builds(
    TraceEvent,
    comm=st.text(min_size=1, max_size=16), pid=st.integers(0, 2**22), cpu=st.integers(0, 511),
    timestamp_ns=st.integers(0, 2**63), event=st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True),
    fields=st.dictionaries(st.from_regex(r"[a-z_]\w{0,8}", fullmatch=True), values, max_size=4),
    group=st.one_of(st.none(), st.from_regex(r"[a-z_]\w{0,8}", fullmatch=True)),
    flags=st.one_of(st.none(), st.just("d..1.")), location=st.one_of(st.none(), st.just("vfs_read+0x4/0x1c0")),
    caller=st.one_of(st.none(), st.just("ksys_read+0x6b/0xf0")),
    probe_ip=st.one_of(st.none(), st.integers(0, 2**64 - 1)), ret_ip=st.one_of(st.none(), st.integers(0, 2**64 - 1)),
    tgid=st.one_of(st.none(), st.integers(0, 2**22)),
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(events)
def test_event_record_round_trip(e: TraceEvent) -> None:
    rec = json.loads(json.dumps(event_to_record(e)))
    assert event_from_record(rec) == e


def test_write_then_read(tmp_path: Path) -> None:
    path = str(tmp_path / "kprobes.data")
    w = RecordingWriter(path, HEADER)
    for i in range(5):
        w.write_event(ev(i))
    trailer = w.close(lost={1: 3}, overrun={0: 2}, dropped={}, unparsed=1, kallsyms_path=None)
    assert trailer.events == 5 and trailer.total_lost == 5
    r = Recording.open(path)
    assert r.complete and r.header == HEADER
    assert r.trailer == trailer
    assert list(r.events()) == [ev(i) for i in range(5)]


def test_killed_recorder_leaves_a_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "kprobes.data"
    w = RecordingWriter(str(path), HEADER)
    for i in range(3):
        w.write_event(ev(i))
    w.abort()
    with open(path, "a") as f:
        f.write('{"t":"e","ts":12')  # cut off mid-line by SIGKILL
    r = Recording.open(str(path))
    assert not r.complete and r.kallsyms == {}
    assert [e.fields["filename"] for e in r.events()] == ["/f/0", "/f/1", "/f/2"]


def test_not_a_recording(tmp_path: Path) -> None:
    (tmp_path / "x").write_text('{"t":"e"}\n')
    with pytest.raises(RecordingError, match="not a kprobes recording"):
        Recording.open(str(tmp_path / "x"))
    (tmp_path / "y").write_text(json.dumps({**HEADER.to_record(), "version": 99}) + "\n")
    with pytest.raises(RecordingError, match="version 99"):
        Recording.open(str(tmp_path / "y"))
    with pytest.raises(RecordingError, match="does not exist"):
        Recording.open(str(tmp_path / "missing"))
    (tmp_path / "z").write_text(json.dumps(HEADER.to_record()) + "\nnot json\n{}\n")
    with pytest.raises(RecordingError, match="not a JSON record"):
        Recording.open(str(tmp_path / "z"))


def test_memory_stays_bounded_while_streaming(tmp_path: Path) -> None:
    path = str(tmp_path / "big.data")
    w = RecordingWriter(path, HEADER)
    tracemalloc.start()
    try:
        for i in range(4000):
            w.write_event(ev(i, fields={"filename": "/some/rather/long/path/name" * 4, "n": i}))
        _cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    w.close(kallsyms_path=None)
    assert peak < 300_000, peak  # 4000 events of ~200 bytes would be 800 kB if kept
    assert sum(1 for _ in Recording.open(path).events()) == 4000


KALLSYMS = """\
ffffffff81000000 T _stext
ffffffff81100000 T vfs_read
ffffffff81100200 t helper.isra.0
ffffffff81100400 T do_sys_openat2
ffffffff82000000 D some_data
ffffffffc0000000 t mod_fn\t[mymod]
"""


def test_kallsyms_subset_names_and_addresses() -> None:
    out = kallsyms_subset(KALLSYMS.splitlines(), {"do_sys_openat2", "some_data", "nope"},
                          [0xFFFFFFFF81100004, 0xFFFFFFFF81100250, 0xFFFFFFFFC0000010])  # fmt: skip
    assert out == {"do_sys_openat2": 0xFFFFFFFF81100400, "vfs_read": 0xFFFFFFFF81100000,
                   "helper.isra.0": 0xFFFFFFFF81100200, "mod_fn": 0xFFFFFFFFC0000000}  # fmt: skip
    hidden = kallsyms_subset(["0000000000000000 T vfs_read"], {"vfs_read"}, [5])
    assert hidden == {}


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 10_000), min_size=1, max_size=30, unique=True),
       st.lists(st.integers(1, 12_000), max_size=20))  # fmt: skip
def test_kallsyms_subset_matches_brute_force(syms: list[int], addrs: list[int]) -> None:
    lines = [f"{a:016x} T s{a}" for a in syms]
    got = kallsyms_subset(lines, set(), addrs)
    want = {}
    for a in addrs:
        below = [s for s in syms if s <= a]
        if below:
            want[f"s{max(below)}"] = max(below)
    assert got == want


def test_writer_collects_symbols_and_writes_subset(tmp_path: Path) -> None:
    ks = tmp_path / "kallsyms"
    ks.write_text(KALLSYMS)
    path = str(tmp_path / "r.data")
    w = RecordingWriter(path, HEADER)
    w.write_event(ev(0))
    w.write_event(ev(1, location=None, probe_ip=0xFFFFFFFF81100010))
    w.write_event(ev(2, location="0x55d4c0a0b0c0", probe_ip=0x55D4C0A0B0C0))
    t = w.close(kallsyms_path=str(ks))
    assert t.kallsyms == {"do_sys_openat2": 0xFFFFFFFF81100400, "vfs_read": 0xFFFFFFFF81100000}
    assert Recording.open(path).kallsyms == t.kallsyms


def test_symbol_of_location_and_loss_stats() -> None:
    assert symbol_of_location("do_sys_openat2+0x0/0x1b0") == "do_sys_openat2"
    assert symbol_of_location("mod_fn+0x4/0x10 [mymod]") == "mod_fn"
    assert symbol_of_location("0x55d4c0a0b0c0") is None
    stats = "entries: 5\noverrun: 7\ncommit overrun: 0\ndropped events: 2\nread events: 0\n"
    assert read_loss_stats([(0, stats), (1, "overrun: 0\n")]) == ({0: 7}, {0: 2})
