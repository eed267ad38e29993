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


def test_lazy_match_like_perf() -> None:
    from kprobes.backends.ksource import lazy_match

    assert lazy_match("\tret = rw_verify_area(READ, file, pos, count);", "ret=*")
    assert lazy_match("\tif (ret > 0) {", "if(ret>0)*")
    assert not lazy_match("\tret = x;", "ret")  # the whole line must match
    assert lazy_match("\t\trelease_sock(sk);", "*release_sock*")
    assert lazy_match("a*b", "a\\*b") and not lazy_match("axb", "a\\*b")
    assert lazy_match("count++;", "c?unt[+]+;") and lazy_match("x1", "x[0-9]")
    assert not lazy_match("x1", "x[!0-9]") and lazy_match("xa", "x[!0-9]")
    assert not lazy_match("x1", "x[0-9")  # unterminated class: no match (perf's error path)


def test_line_range_descriptions() -> None:
    pr = kdebug.parse_line_range
    assert pr("vfs_read") == kdebug._RangeDesc("vfs_read", None, 0, None)
    assert pr("tcp_sendmsg:2-6") == kdebug._RangeDesc("tcp_sendmsg", None, 2, 6)
    assert pr("vfs_read@fs/read_write.c:3+4") == kdebug._RangeDesc("vfs_read", "fs/read_write.c", 3, 6)
    assert pr("fs/read_write.c:470") == kdebug._RangeDesc(None, "fs/read_write.c", 470, None)
    for bad in ("vfs_read:6-2", "vfs_read:x", "1abc"):
        with pytest.raises(KprobesError):
            pr(bad)


def test_source_range_layout(tmp_path: "object") -> None:
    from kprobes.backends import ksource

    src = ksource.SourceText("/s/f.c", tuple(f"line{i}\n" for i in range(1, 13)))
    lr = kdebug.LineRange("fn", "f.c", "", 3, 3, None, {3: [0], 5: [9], 6: [12]})
    out = kdebug.format_line_range(lr, src).splitlines()
    assert out[0] == "<fn@/s/f.c:0>"
    assert out[1:] == ["      0  line3", "         line4", "      2  line5", "      3  line6",
                       "         line7", "         line8", "         line9"]  # fmt: skip
    table = kdebug.format_line_range(lr, None).splitlines()
    assert table == ["<fn@f.c:0>", "      0  f.c:3  +0", "      2  f.c:5  +9", "      3  f.c:6  +12"]
    assert ksource.banner_version("Linux version 6.1.0-57-amd64 (gcc-12 (Debian 12.2.0-14) 12.2.0) "
                                  "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-26)") == ("6.1.192-3", "6.1")


def test_source_lookup(tmp_path: "object", monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import os
    import tarfile

    from kprobes.backends import ksource

    root = str(tmp_path)
    os.makedirs(os.path.join(root, "tree/fs"))
    with open(os.path.join(root, "tree/fs/a.c"), "w") as f:
        f.write("int a;\n")
    # -s DIR: leading components of the DWARF path are dropped until a file is found
    got = ksource.find_source("build/x/fs/a.c", "", [os.path.join(root, "tree")])
    assert got is not None and got.path.endswith("tree/fs/a.c") and got.lines == ("int a;\n",)
    assert ksource.find_source("fs/zz.c", "", [os.path.join(root, "tree")]) is None
    # Debian's tarball: one member streamed out once, then read from the user cache
    usr_src = os.path.join(root, "usr_src")
    os.makedirs(usr_src)
    with tarfile.open(os.path.join(usr_src, "linux-source-6.1.tar.xz"), "w:xz") as tf:
        for name, body in (("linux-source-6.1/fs/b.c", b"one\ntwo\n"), ("linux-source-6.1/fs/c.c", b"x\n")):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tf.addfile(info, io.BytesIO(body))
    monkeypatch.setenv("KPROBES_CACHE_DIR", os.path.join(root, "cache"))
    banner = "Linux version 6.1.0-57-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-26)"
    got = ksource.find_source("fs/b.c", "debian/build", (), banner, cache=os.path.join(root, "vmcache"),
                              usr_src=usr_src)  # fmt: skip
    assert got is not None and got.lines == ("one\n", "two\n") and got.path.startswith(os.path.join(root, "cache"))
    assert ksource.lazy_lines(got, "two") == [2]
    # the cached tree of install-kernel-debug wins
    tree = os.path.join(root, "vmcache/src/6.1.192-3/linux-source-6.1/fs")
    os.makedirs(tree)
    with open(os.path.join(tree, "b.c"), "w") as f:
        f.write("cached\n")
    got = ksource.find_source("fs/b.c", "debian/build", (), banner, cache=os.path.join(root, "vmcache"),
                              usr_src=usr_src)  # fmt: skip
    assert got is not None and got.lines == ("cached\n",) and got.note is None
