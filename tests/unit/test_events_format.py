from __future__ import annotations

from pathlib import Path

import pytest

from kprobes.events.format import (
    EventFormatError,
    parse_event_format,
    parse_field_line,
    parse_header_event,
    parse_header_page,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "host-6.18"


def test_sched_switch_format() -> None:
    fmt = parse_event_format((FIXTURES / "formats" / "sched__sched_switch").read_text(), system="sched")
    assert (fmt.name, fmt.system) == ("sched_switch", "sched")
    assert fmt.id > 0
    assert [f.name for f in fmt.common_fields] == [
        "common_type", "common_flags", "common_preempt_count", "common_pid"]
    prev_comm = fmt.field("prev_comm")
    assert (prev_comm.type, prev_comm.offset, prev_comm.size) == ("char", 8, 16)
    assert prev_comm.array_len == 16 and prev_comm.is_string and prev_comm.elem_size == 1
    state = fmt.field("prev_state")
    assert (state.type, state.size, state.signed, state.array_len) == ("long", 8, True, None)
    assert fmt.print_fmt.startswith('"prev_comm=%s')
    assert [f.name for f in fmt.own_fields][:2] == ["prev_comm", "prev_pid"]
    with pytest.raises(KeyError):
        fmt.field("nope")


def test_uprobe_format_data_loc_and_probe_array() -> None:
    fmt = parse_event_format((FIXTURES / "formats" / "uprobes__genv").read_text())
    name = fmt.field("name")
    assert name.is_data_loc and name.is_string and name.is_dynamic and name.size == 4
    assert name.type == "__data_loc char[]"
    arr = fmt.field("arr")
    assert (arr.type, arr.size, arr.array_len, arr.elem_size, arr.is_string) == ("u8", 4, 4, 1, False)
    assert fmt.field("__probe_ip").size == 8


@pytest.mark.parametrize(
    "line, expect",
    [
        ("\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;",
         ("filename", "const char *", 24, 8, False, None, False)),
        ("\tfield:__rel_loc u8[] buf;\toffset:12;\tsize:4;\tsigned:0;",
         ("buf", "__rel_loc u8[]", 12, 4, False, None, False)),
        ("\tfield:unsigned long stack[8];\toffset:8;\tsize:64;\tsigned:0;",
         ("stack", "unsigned long", 8, 64, False, 8, False)),
        ("\tfield:s16 v[];\toffset:8;\tsize:6;\tsigned:1;", ("v", "s16", 8, 6, True, 3, False)),
        ("\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;", ("timestamp", "u64", 0, 8, False, None, False)),
        ("\tfield:int x;\toffset:8;\tsize:4;", ("x", "int", 8, 4, False, None, False)),
    ],
)
def test_field_lines(line: str, expect: tuple[object, ...]) -> None:
    f = parse_field_line(line)
    assert f is not None
    assert (f.name, f.type, f.offset, f.size, f.signed, f.array_len, f.is_string) == expect


def test_rel_loc_flags() -> None:
    f = parse_field_line("\tfield:__rel_loc char[] s;\toffset:12;\tsize:4;\tsigned:0;")
    assert f is not None and f.is_rel_loc and not f.is_data_loc and f.is_string
    assert parse_field_line("print fmt: \"x\"") is None


def test_bad_format_files() -> None:
    with pytest.raises(EventFormatError):
        parse_event_format("hello")
    with pytest.raises(EventFormatError):
        parse_event_format("name: x\nID: nope\n")
    with pytest.raises(EventFormatError):
        parse_event_format("name: x\nID: 3\nformat:\n\tfield:int a;\toffset:0;\tsize:4;\tsigned:1;\n")


def test_header_page_and_event() -> None:
    hp = parse_header_page((FIXTURES / "header_page").read_text())
    assert (hp.timestamp_offset, hp.timestamp_size, hp.commit_offset, hp.commit_size) == (0, 8, 8, 8)
    assert hp.data_offset == 16 and hp.page_size == 4096
    he = parse_header_event((FIXTURES / "header_event").read_text())
    assert (he.type_len_bits, he.time_delta_bits, he.array_bits) == (5, 27, 32)
    assert (he.padding_type, he.time_extend_type, he.time_stamp_type, he.data_max_type_len) == (29, 30, 31, 28)
    hp32 = parse_header_page(
        "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
        "\tfield: local_t commit;\toffset:8;\tsize:4;\tsigned:1;\n"
        "\tfield: char data;\toffset:12;\tsize:4084;\tsigned:1;\n")
    assert (hp32.commit_size, hp32.data_offset, hp32.page_size) == (4, 12, 4096)
    with pytest.raises(EventFormatError):
        parse_header_page("nothing")
    with pytest.raises(EventFormatError):
        parse_header_event("nothing")
