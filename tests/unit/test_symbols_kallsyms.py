"""Parsers for /proc/kallsyms, available_filter_functions[_addrs] and the kprobe blacklist."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kprobes.backends.symbols.kallsyms import (
    load_kernel_symbols,
    parse_filter_functions,
    parse_kallsyms,
    parse_kprobe_blacklist,
    strip_suffix,
)
from kprobes.errors import KprobesError

KALLSYMS = """\
ffffffff81000000 T _stext
ffffffff81001000 t __pfx_vfs_read
ffffffff81001010 T vfs_read
ffffffff81001100 t helper.isra.0
ffffffff81001200 t dup_static
ffffffff81001300 t dup_static
ffffffff81002000 D jiffies_like
ffffffff81003000 W weak_fn
ffffffffc0a01000 t ext4_sync_fs\t[ext4]
ffffffffc0a02000 d ext4_data\t[ext4]
ffffffffc0b00000 t bpf_prog_6deef7357e7b4530_sd_fw_egress\t[bpf]
"""

HIDDEN = """\
0000000000000000 T _stext
0000000000000000 T vfs_read
0000000000000000 t ext4_sync_fs\t[ext4]
"""


def test_kallsyms_fields_and_modules() -> None:
    k = parse_kallsyms(KALLSYMS)
    assert len(k.symbols) == 11
    assert not k.addresses_hidden
    (vr,) = k.lookup("vfs_read")
    assert (vr.addr, vr.type, vr.module) == (0xFFFFFFFF81001010, "T", None)
    (ext,) = k.lookup("ext4_sync_fs")
    assert ext.module == "ext4" and ext.is_text
    assert k.lookup("ext4_sync_fs", "ext4") == (ext,)
    assert k.lookup("ext4_sync_fs", "vmlinux") == ()
    assert k.lookup("vfs_read", "vmlinux") == (vr,)
    assert len(k.lookup("dup_static")) == 2
    assert k.modules == {"ext4", "bpf"}
    assert "jiffies_like" in k and "nope" not in k
    (j,) = k.lookup("jiffies_like")
    assert j.is_data and not j.is_text
    fns = k.function_names()
    assert {"vfs_read", "weak_fn", "helper.isra.0", "ext4_sync_fs"} <= fns
    assert "jiffies_like" not in fns and "ext4_data" not in fns
    assert k.function_names("ext4") == {"ext4_sync_fs"}


def test_kallsyms_hidden_addresses() -> None:
    k = parse_kallsyms(HIDDEN)
    assert k.addresses_hidden
    assert k.section_range("_stext", "vfs_read") is None
    assert not parse_kallsyms(KALLSYMS).addresses_hidden
    assert not parse_kallsyms("").addresses_hidden


def test_kallsyms_section_range() -> None:
    k = parse_kallsyms(
        "ffffffff81000100 T __kprobes_text_start\nffffffff81000200 T __kprobes_text_end\n"
    )
    assert k.section_range("__kprobes_text_start", "__kprobes_text_end") == (
        0xFFFFFFFF81000100,
        0xFFFFFFFF81000200,
    )
    assert k.section_range("__kprobes_text_start", "missing") is None


@pytest.mark.parametrize("bad", ["zzzz T foo", "ffff foo", "ffff TT foo"])
def test_kallsyms_rejects_garbage(bad: str) -> None:
    with pytest.raises(KprobesError, match="line 2"):
        parse_kallsyms("ffff T ok\n" + bad + "\n")


def test_filter_functions_plain_and_modules() -> None:
    f = parse_filter_functions(
        "vfs_read\nhelper.isra.0\next4_sync_fs [ext4]\n__ftrace_invalid_address___64\n\n"
    )
    assert f.names == {"vfs_read", "helper.isra.0", "ext4_sync_fs"}
    assert f.has("ext4_sync_fs") and f.has("ext4_sync_fs", "ext4")
    assert not f.has("ext4_sync_fs", "vmlinux") and f.has("vfs_read", "vmlinux")
    assert "vfs_read" in f and "__ftrace_invalid_address___64" not in f
    assert f.addrs == {}


def test_filter_functions_addrs_variant() -> None:
    f = parse_filter_functions(
        "ffffffff81001010 vfs_read\n"
        "ffffffffc0a01000 ext4_sync_fs [ext4]\n"
        "ffffffff81001200 dup_static\nffffffff81001300 dup_static\n"
    )
    assert f.addrs["vfs_read"] == (0xFFFFFFFF81001010,)
    assert f.addrs["dup_static"] == (0xFFFFFFFF81001200, 0xFFFFFFFF81001300)
    assert ("ext4_sync_fs", "ext4") in f.entries


def test_blacklist_with_and_without_addresses() -> None:
    text = (
        "0xffffffff81000100-0xffffffff81000180\tnmi_handle\n"
        "0xffffffff81000180-0xffffffff810001c0\tdo_int3\n"
        "0xffffffffc0a03000-0xffffffffc0a03040\tmod_fn [mymod]\n"
    )
    b = parse_kprobe_blacklist(text)
    assert b.names == {"nmi_handle", "do_int3", "mod_fn"}
    assert b.entries[2].module == "mymod"
    assert not b.addresses_hidden
    hit = b.covers(0xFFFFFFFF81000190)
    assert hit is not None and hit.name == "do_int3"
    assert b.covers(0xFFFFFFFF810001C0) is None  # end is exclusive
    hidden = parse_kprobe_blacklist("0x0000000000000000-0x0000000000000000\tnmi_handle\n")
    assert hidden.addresses_hidden and hidden.has_name("nmi_handle")
    assert hidden.covers(0) is None
    with pytest.raises(KprobesError):
        parse_kprobe_blacklist("nmi_handle\n")


@pytest.mark.parametrize(
    "name,base",
    [("foo.isra.0", "foo"), ("foo.cold", "foo"), ("foo", "foo"), (".hidden", ".hidden")],
)
def test_strip_suffix(name: str, base: str) -> None:
    assert strip_suffix(name) == base


def test_loader_on_fake_tree(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/kallsyms").write_text(KALLSYMS)
    tr = tmp_path / "sys/kernel/tracing"
    tr.mkdir(parents=True)
    (tr / "available_filter_functions").write_text("vfs_read\n")
    ks = load_kernel_symbols(str(tmp_path))
    assert ks.kallsyms is not None and len(ks.kallsyms.symbols) == 11
    assert ks.filter_functions is not None and ks.filter_functions.names == {"vfs_read"}
    assert ks.blacklist is None
    assert any("blacklist" in p and "not found" in p for p in ks.problems)
    # the _addrs variant wins when present; the blacklist under debugfs is read
    (tr / "available_filter_functions_addrs").write_text("ffffffff81001010 vfs_read\n")
    dbg = tmp_path / "sys/kernel/debug/kprobes"
    dbg.mkdir(parents=True)
    (dbg / "blacklist").write_text("0xffffffff81000100-0xffffffff81000180\tnmi_handle\n")
    ks = load_kernel_symbols(str(tmp_path))
    assert ks.filter_functions is not None and ks.filter_functions.addrs
    assert ks.blacklist is not None and ks.blacklist.names == {"nmi_handle"}
    assert ks.problems == ()


def test_loader_old_debugfs_tracing_dir_and_hidden(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/kallsyms").write_text(HIDDEN)
    tr = tmp_path / "sys/kernel/debug/tracing"
    tr.mkdir(parents=True)
    (tr / "available_filter_functions").write_text("vfs_read\n")
    ks = load_kernel_symbols(str(tmp_path))
    assert ks.filter_functions is not None
    assert any("hidden" in p for p in ks.problems)


def test_loader_empty_tree(tmp_path: Path) -> None:
    ks = load_kernel_symbols(str(tmp_path))
    assert ks.kallsyms is None and ks.filter_functions is None and ks.blacklist is None
    assert len(ks.problems) == 3


def test_loader_on_this_host() -> None:
    if not os.path.exists("/proc/kallsyms"):
        pytest.skip("no /proc/kallsyms")
    ks = load_kernel_symbols()
    assert ks.kallsyms is not None and ks.kallsyms.symbols
    # either we see addresses or we say they are hidden
    assert ks.kallsyms.addresses_hidden == any("hidden" in p for p in ks.problems)


def test_one_symbolizer_for_ksym_pS_and_stacks() -> None:
    # the tracefs reader (%pS), the evaluator's ksym() and BPF stacks share one reader
    from kprobes.backends.symbols.kallsyms import KernelSymbolizer, shared_symbolizer
    from kprobes.backends.tracefs import reader
    from kprobes.engines.bpf.stacks import kernel_symbolizer
    from kprobes.engines.evaluator import Runtime

    text = (b"ffffffff81000000 T _stext\nffffffff81000100 T vfs_read\nffffffff81000100 t alias\n"
            b"ffffffff81000180 T vfs_write\nffffffff81000200 T _etext\n"
            b"ffffffffc0000000 t mod_fn\t[mymod]\nffffffffc0000040 t mod_end\t[mymod]\n")
    s = KernelSymbolizer(text=text)
    assert s(0xFFFFFFFF81000110) == "vfs_read"  # ksym(): the first name at the address
    assert s.render(0xFFFFFFFF81000110) == "vfs_read+0x10/0x80"
    assert s.render(0xFFFFFFFFC0000004) == "mod_fn+0x4/0x40 [mymod]"
    assert s(0x1000) == "0x1000"
    assert reader.KernelSymbolizer is KernelSymbolizer
    assert kernel_symbolizer() is shared_symbolizer()
    assert Runtime({}, None, 0).ksym is shared_symbolizer()  # type: ignore[arg-type]
