"""Pure parts of kernel line probes: perf-probe point parsing, fetcharg rendering, LEB128, expressions, notes."""

from __future__ import annotations

import pytest

from kprobes.backends import kdebug, kdwarf
from kprobes.errors import KprobesError


def test_parse_points() -> None:
    p = kdebug.parse_kernel_point("tcp_sendmsg:15 size")
    assert (p.function, p.line, p.has_line, p.args[0].var) == ("tcp_sendmsg", 15, True, "size")
    p = kdebug.parse_kernel_point("grp:ev=vfs_read@fs/read_write.c+8 n=count:x32 file->f_path.dentry")
    assert (p.group, p.event, p.file, p.offset) == ("grp", "ev", "fs/read_write.c", 8)
    assert p.args[0].name == "n" and p.args[0].type == "x32"
    assert p.args[1].fields == ((True, "f_path"), (False, "dentry"))
    p = kdebug.parse_kernel_point("net/ipv4/tcp.c:1503")
    assert p.function is None and p.file == "net/ipv4/tcp.c" and p.line == 1503
    assert kdebug.parse_kernel_point("vfs_read%return $retval").is_return
    with pytest.raises(KprobesError, match="kretprobe"):
        kdebug.parse_kernel_point("vfs_read%return count")
    assert kdebug.needs_dwarf("vfs_read:3") and kdebug.needs_dwarf("vfs_read count")
    assert not kdebug.needs_dwarf("vfs_read %di") and not kdebug.needs_dwarf("vfs_read+8")


def test_event_names_like_perf() -> None:
    assert kdebug.perf_event_name(kdebug.parse_kernel_point("tcp_sendmsg:5")) == "tcp_sendmsg_L5"
    assert kdebug.perf_event_name(kdebug.parse_kernel_point("tcp_sendmsg:0")) == "tcp_sendmsg"
    assert kdebug.perf_event_name(kdebug.parse_kernel_point("tcp_sendmsg+9")) == "tcp_sendmsg"
    assert kdebug.perf_event_name(kdebug.parse_kernel_point("vfs_read%return")) == "vfs_read__return"


def test_fetcharg_rendering() -> None:
    assert kdebug._Var("%di", [24, 40, 0], "string").render() == "+0(+40(+24(%di))):string"
    assert kdebug._Var("%sp", [-16], "s32").render() == "-16(%sp):s32"
    assert kdebug._Var("@jiffies", [0], "x64").render() == "@jiffies+0:x64"
    assert kdebug._Var("@init_task", [8, 16]).render() == "+16(@init_task+8)"


def test_leb_and_ops() -> None:
    assert kdwarf.uleb(bytes([0xE5, 0x8E, 0x26]), 0) == (624485, 3)
    assert kdwarf.sleb(bytes([0xC0, 0xBB, 0x78]), 0) == (-123456, 3)
    ops = kdwarf.decode_ops(bytes([0x91, 0x70, 0x55, 0x9F]))  # fbreg -16; reg5; stack_value
    assert [(o.code, o.args) for o in ops] == [(0x91, (-16,)), (0x55, ()), (0x9F, ())]
    ops = kdwarf.decode_ops(bytes([0x92, 0x07, 0x08]))  # bregx rsp +8
    assert ops[0].args == (7, 8)


def test_notes_build_id() -> None:
    bid = "32a7f3bacee6bf69da94f497a8a076483baea20e"
    notes = (bytes.fromhex("06000000040000000101000000") + b"\0\0\0" + b"Linux\0\0\0" + b"\0" * 4)[:24]
    blob = notes + bytes.fromhex("040000001400000003000000474e5500") + bytes.fromhex(bid)
    assert kdebug._notes_build_id(blob) == bid
    assert kdebug._notes_build_id(b"") is None
