from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kprobes.events.format import EventFormat, PageHeaderFormat, parse_event_format
from kprobes.events.model import TraceEvent
from kprobes.events.raw import PageDecoder, decode_page, fix_abs_ts, merge_by_time
from kprobes.events.values import FAULT
from tests.unit.ring_builder import PageBuilder, Value, encode_event, fault_loc

COMMON = (
    "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
    "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
    "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
    "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
)


def make_format(name: str, event_id: int, fields: list[str]) -> EventFormat:
    body = "".join(f"\tfield:{f};\n" for f in fields)
    return parse_event_format(f"name: {name}\nID: {event_id}\nformat:\n{COMMON}{body}\nprint fmt: \"x\"\n",
                              system="test")


KITCHEN = make_format("kitchen", 700, [
    "s8 s8v;\toffset:8;\tsize:1;\tsigned:1",
    "u8 u8v;\toffset:9;\tsize:1;\tsigned:0",
    "s16 s16v;\toffset:10;\tsize:2;\tsigned:1",
    "s32 s32v;\toffset:12;\tsize:4;\tsigned:1",
    "s64 s64v;\toffset:16;\tsize:8;\tsigned:1",
    "u64 u64v;\toffset:24;\tsize:8;\tsigned:0",
    "char comm[16];\toffset:32;\tsize:16;\tsigned:0",
    "__data_loc char[] path;\toffset:48;\tsize:4;\tsigned:0",
    "__data_loc s32[] nums;\toffset:52;\tsize:4;\tsigned:1",
    "__rel_loc char[] rel;\toffset:56;\tsize:4;\tsigned:0",
    "u16 arr[3];\toffset:60;\tsize:6;\tsigned:0",
    "u32 unaligned;\toffset:66;\tsize:4;\tsigned:0",
])
KPROBE = make_format("p_open", 701, [
    "unsigned long __probe_ip;\toffset:8;\tsize:8;\tsigned:0",
    "u32 flags;\toffset:16;\tsize:4;\tsigned:0",
])
KRETPROBE = make_format("r_open", 702, [
    "unsigned long __probe_func;\toffset:8;\tsize:8;\tsigned:0",
    "unsigned long __probe_ret_ip;\toffset:16;\tsize:8;\tsigned:0",
    "s64 ret;\toffset:24;\tsize:8;\tsigned:1",
])
SMALL = make_format("small", 703, ["u32 v;\toffset:8;\tsize:4;\tsigned:0"])
FORMATS: dict[int, EventFormat] = {f.id: f for f in (KITCHEN, KPROBE, KRETPROBE, SMALL)}
COMMS = {100: "bash", 200: "Web Content"}


def small(pid: int, v: int) -> bytes:
    return encode_event(SMALL, pid, {"v": v})


def decode(page: bytes, cpu: int = 0, formats: dict[int, EventFormat] = FORMATS):  # type: ignore[no-untyped-def]
    return PageDecoder(formats, comms=COMMS).decode(page, cpu)


def test_kitchen_sink_fields() -> None:
    values: dict[str, Value] = {"s8v": -5, "u8v": 250, "s16v": -30000, "s32v": -(2**31), "s64v": -(2**63), "u64v": 2**64 - 1,
              "comm": "Web Content", "path": "/etc/hostname", "nums": (-1, 2, -3), "rel": "relative",
              "arr": (1, 65535, 7), "unaligned": 0xDEADBEEF}
    page = PageBuilder(timestamp=1000).data(encode_event(KITCHEN, 200, values), delta=10).build()
    r = decode(page, cpu=3)
    assert len(r.events) == 1 and r.lost_undecodable == 0 and not r.missed
    e = r.events[0]
    assert (e.comm, e.pid, e.cpu, e.timestamp_ns, e.event, e.group) == ("Web Content", 200, 3, 1010, "kitchen", "test")
    assert dict(e.fields) == values
    assert list(r.iter_values()) == [(1010, "kitchen", 200, values)]


def test_data_loc_fault_and_full_comm() -> None:
    payload = encode_event(KITCHEN, 100, {"comm": "0123456789abcdef", "path": "x", "rel": "", "nums": ()})
    payload = fault_loc(KITCHEN, "path", payload)
    e = decode(PageBuilder().data(payload).build()).events[0]
    assert e.fields["path"] == FAULT
    assert e.fields["comm"] == "0123456789abcdef"  # 16 chars, no NUL
    assert e.fields["nums"] == ()


def test_probe_ip_fields() -> None:
    page = (PageBuilder(timestamp=5)
            .data(encode_event(KPROBE, 100, {"__probe_ip": 0xFFFFFFFF81000000, "flags": 0x8000}), delta=1)
            .data(encode_event(KRETPROBE, 100, {"__probe_func": 0xFFFFFFFF81000010,
                                                "__probe_ret_ip": 0xFFFFFFFF81000500, "ret": -2}), delta=2)
            .build())
    p, r = decode(page).events
    assert p.probe_ip == 0xFFFFFFFF81000000 and p.ret_ip is None and dict(p.fields) == {"flags": 0x8000}
    assert r.probe_ip == 0xFFFFFFFF81000010 and r.ret_ip == 0xFFFFFFFF81000500
    assert dict(r.fields) == {"ret": -2}
    assert (p.timestamp_ns, r.timestamp_ns) == (6, 8)


@pytest.mark.parametrize("extra", list(range(0, 105, 4)) + [105, 200, 1000])
def test_every_data_length(extra: int) -> None:
    """type_len 2..28 (payload 8..112 bytes) and type_len 0 (longer payloads)."""
    fmt = make_format("blob", 710, [f"u8 data[{extra}];\toffset:8;\tsize:{extra};\tsigned:0"]) if extra else \
        make_format("blob", 710, [])
    data = tuple(i % 251 for i in range(extra))
    payload = encode_event(fmt, 100, {"data": data} if extra else {})
    page = (PageBuilder(timestamp=50).data(payload, delta=3).data(small(100, 9), delta=4).build())
    r = decode(page, formats={710: fmt, SMALL.id: SMALL})
    assert r.lost_undecodable == 0
    first, second = r.events
    assert (first.event, first.timestamp_ns) == ("blob", 53)
    if extra:
        assert first.fields["data"] == data
    assert (second.event, second.timestamp_ns, second.fields) == ("small", 57, {"v": 9})


def test_long_form_forced_for_short_payload() -> None:
    page = PageBuilder().data(small(100, 1), delta=2, long_form=True).data(small(100, 2), delta=3).build()
    assert [(e.timestamp_ns, e.fields["v"]) for e in decode(page).events] == [(2, 1), (5, 2)]


def test_type_len_1_too_short_for_any_event_is_counted_and_skipped() -> None:
    page = PageBuilder().data(b"\x01\x02\x03\x04", delta=1).data(small(100, 5), delta=1).build()
    r = decode(page)
    assert r.lost_undecodable == 1
    assert [(e.timestamp_ns, e.fields["v"]) for e in r.events] == [(2, 5)]


def test_time_extend() -> None:
    big = (1 << 40) + 12345
    page = PageBuilder(timestamp=10).time_extend(big).data(small(100, 1)).data(small(100, 2), delta=5).build()
    assert [e.timestamp_ns for e in decode(page).events] == [10 + big, 15 + big]


def test_absolute_time_stamp() -> None:
    page = (PageBuilder(timestamp=1_000).data(small(100, 1), delta=5)
            .time_stamp(5_000_000_000_123).data(small(100, 2), delta=7).build())
    assert [e.timestamp_ns for e in decode(page).events] == [1_005, 5_000_000_000_130]


def test_absolute_time_stamp_takes_msbs_from_current_time() -> None:
    base = (0x18 << 56) | 1_000
    page = PageBuilder(timestamp=base).time_stamp(base + 500).data(small(100, 1)).build()
    assert decode(page).events[0].timestamp_ns == base + 500
    # low 59 bits wrapped past the current time: the MSBs moved on by one.
    assert fix_abs_ts(5, (0x08 << 56) | ((1 << 59) - 10)) == (0x10 << 56) | 5
    assert fix_abs_ts(1234, 99) == 1234


def test_discarded_padding_skipped_without_moving_clock() -> None:
    page = (PageBuilder(timestamp=100).data(small(100, 1), delta=1)
            .discarded(20, delta=50).data(small(100, 2), delta=2).build())
    r = decode(page)
    assert [(e.timestamp_ns, e.fields["v"]) for e in r.events] == [(101, 1), (103, 2)]
    assert r.lost_undecodable == 0


def test_null_padding_ends_page() -> None:
    b = PageBuilder().data(small(100, 1)).end()
    b.chunks.append(b"\xff" * 12)  # junk after the end marker is never read
    r = decode(b.build())
    assert [e.fields["v"] for e in r.events] == [1] and r.lost_undecodable == 0


def test_missed_events_stored_flag_only_and_none() -> None:
    stored = decode(PageBuilder().data(small(100, 1)).build(missed=1234))
    assert stored.missed and stored.missed_events == 1234 and len(stored.events) == 1
    flagged = decode(PageBuilder().data(small(100, 1)).build(missed=0, missed_stored=False))
    assert flagged.missed and flagged.missed_events is None
    clean = decode(PageBuilder().data(small(100, 1)).build())
    assert not clean.missed and clean.missed_events is None


def test_unknown_event_id_is_counted() -> None:
    other = make_format("other", 999, [])
    page = PageBuilder().data(encode_event(other, 1, {}), delta=1).data(small(100, 3), delta=1).build()
    r = decode(page)
    assert r.lost_undecodable == 1 and [e.timestamp_ns for e in r.events] == [2]


def test_record_past_commit_is_counted() -> None:
    b = PageBuilder().data(small(100, 1))
    page = bytearray(b.build())
    struct.pack_into("<Q", page, 8, 8)  # commit cuts the record in half
    r = decode(bytes(page))
    assert len(r.events) == 0 and r.lost_undecodable == 1
    assert decode(b"").lost_undecodable == 0 and decode(b"\0" * 4).lost_undecodable == 1


def test_commit_beyond_page_is_counted() -> None:
    page = bytearray(PageBuilder(page_size=64).data(small(100, 1)).build())
    struct.pack_into("<Q", page, 8, 4000)
    r = decode(bytes(page))
    assert r.lost_undecodable >= 1 and [e.fields["v"] for e in r.events] == [1]


def test_comms() -> None:
    page = (PageBuilder().data(small(100, 1)).data(small(0, 2)).data(small(555, 3)).build())
    assert [e.comm for e in decode(page).events] == ["bash", "<idle>", "<...>"]
    d = PageDecoder(FORMATS)
    assert [e.comm for e in d.decode(page, 0).events] == ["<...>", "<idle>", "<...>"]
    d.set_comms({555: "late"})
    assert d.decode(page, 0).events[2].comm == "late"


def test_events_sequence_behaviour() -> None:
    page = PageBuilder().data(small(100, 1)).data(small(100, 2)).data(small(100, 3)).build()
    ev = decode(page).events
    assert len(ev) == 3 and ev[-1].fields == {"v": 3}
    assert [e.fields["v"] for e in ev[1:]] == [2, 3]
    assert ev == list(ev) and ev[0] is ev[0]
    assert isinstance(ev[0], TraceEvent) and ev[0] == TraceEvent("bash", 100, 0, 0, "small", {"v": 1}, group="test")


def test_decode_page_function_and_stream() -> None:
    p1 = PageBuilder(timestamp=10).data(small(100, 1), delta=1).build()
    p2 = PageBuilder(timestamp=20).data(small(200, 2), delta=1).build(missed=3)
    r = decode_page(p1, 1, FORMATS, comms=COMMS)
    assert [(e.comm, e.cpu, e.timestamp_ns) for e in r.events] == [("bash", 1, 11)]
    again = decode_page(p2, 1, FORMATS, PageHeaderFormat(), {200: "x"})
    assert [(e.comm, e.timestamp_ns) for e in again.events] == [("x", 21)] and again.missed_events == 3
    stream = list(PageDecoder(FORMATS).decode_stream(p1 + p2 + b"\0" * 10, 0))
    assert [[e.fields["v"] for e in r.events] for r in stream] == [[1], [2]]


def test_merge_by_time() -> None:
    def evs(cpu: int, stamps: list[int]) -> list[TraceEvent]:
        return [TraceEvent("c", 1, cpu, t, "e") for t in stamps]

    merged = list(merge_by_time([evs(0, [1, 5, 9]), evs(1, [2, 5, 6]), evs(2, []), evs(3, [0, 10])]))
    assert [(e.timestamp_ns, e.cpu) for e in merged] == [
        (0, 3), (1, 0), (2, 1), (5, 0), (5, 1), (6, 1), (9, 0), (10, 3)]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["data", "long", "extend", "stamp", "discard"]),
                          st.integers(min_value=0, max_value=(1 << 27) - 1),
                          st.integers(min_value=0, max_value=(1 << 45))), max_size=40))
def test_random_pages_timestamps(ops: list[tuple[str, int, int]]) -> None:
    b = PageBuilder(timestamp=1_000_000)
    ts = 1_000_000
    expect = []
    for i, (kind, delta, big) in enumerate(ops):
        if kind in ("data", "long"):
            ts += delta
            b.data(small(100, i), delta=delta, long_form=kind == "long")
            expect.append((ts, i))
        elif kind == "extend":
            ts += big
            b.time_extend(big)
        elif kind == "stamp":
            ts = big
            b.time_stamp(big)
        else:
            b.discarded(delta % 64 + 1, delta=delta or 1)
    r = decode(b.build())
    assert [(e.timestamp_ns, e.fields["v"]) for e in r.events] == expect
    assert r.lost_undecodable == 0
