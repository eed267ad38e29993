"""Verdicts on kernel function names and glob expansion, on small inline fixtures."""

from __future__ import annotations

import pytest

from kprobes.backends.symbols.kallsyms import (
    Kallsyms,
    parse_filter_functions,
    parse_kallsyms,
    parse_kprobe_blacklist,
)
from kprobes.backends.symbols.probeable import (
    WILDCARD_EXCLUDED,
    close_names,
    expand_glob,
    probeability,
    split_module,
)
from kprobes.errors import NotTraceableError

KALLSYMS = """\
ffffffff81000000 T _stext
ffffffff81000100 T __kprobes_text_start
ffffffff81000110 T kprobe_int3_handler
ffffffff81000200 T __kprobes_text_end
ffffffff81000300 T __noinstr_text_start
ffffffff81000310 T exc_nmi_noinstr_like
ffffffff81000400 T __noinstr_text_end
ffffffff81001000 t __pfx_vfs_read
ffffffff81001010 T vfs_read
ffffffff81001100 T vfs_write
ffffffff81001200 T vfs_readv
ffffffff81001300 t nmi_handle
ffffffff81001380 t nmi_handle.cold
ffffffff81001400 t helper.isra.0
ffffffff81001480 t helper.cold
ffffffff81001500 t splitme.part.0
ffffffff81001600 t __switch_to_like
ffffffff81001700 t dup_static
ffffffff81001800 t dup_static
ffffffff81001900 T trace_event_buffer_reserve
ffffffff81001a00 T ftrace_ops_list_func
ffffffff81001b00 T rb_insert_color
ffffffff81001c00 T rcu_read_unlock_strict
ffffffff81001d00 t get_kprobe
ffffffff81001e00 t tidy.constprop.0
ffffffff81001f00 T plainfn
ffffffff81001f80 t plainfn.cold
ffffffff81002000 D vfs_data_thing
ffffffff81002100 R vfs_ro_table
ffffffff81003000 T _etext
ffffffff83000000 T _sinittext
ffffffff83000010 T vfs_caches_init
ffffffff83001000 T _einittext
ffffffffc0a01000 t ext4_sync_fs\t[ext4]
ffffffffc0a01100 t ext4_notrace_fn\t[ext4]
"""

FILTER = """\
vfs_read
vfs_write
vfs_readv
helper.isra.0
splitme.part.0
dup_static
dup_static
trace_event_buffer_reserve
ftrace_ops_list_func
rb_insert_color
rcu_read_unlock_strict
get_kprobe
plainfn
ext4_sync_fs [ext4]
__ftrace_invalid_address___123
"""

BLACKLIST = """\
0xffffffff81000110-0xffffffff81000180\tkprobe_int3_handler
0xffffffff81001300-0xffffffff81001380\tnmi_handle
"""


@pytest.fixture(scope="module")
def k() -> Kallsyms:
    return parse_kallsyms(KALLSYMS)


FF = parse_filter_functions(FILTER)
BL = parse_kprobe_blacklist(BLACKLIST)


def test_traceable_function(k: Kallsyms) -> None:
    v = probeability("vfs_read", k, FF, BL)
    assert v.ok and v.code == "ok" and v.suggestions == ()
    v.raise_for("vfs_read")  # no exception


def test_blacklisted_by_name_and_renamed_copy(k: Kallsyms) -> None:
    v = probeability("nmi_handle", k, FF, BL)
    assert not v.ok and v.code == "blacklisted" and "blacklist" in v.reason
    cold = probeability("nmi_handle.cold", k, FF, BL)
    assert not cold.ok and cold.code == "blacklisted" and "original" in cold.reason
    with pytest.raises(NotTraceableError) as ei:
        v.raise_for("nmi_handle")
    assert ei.value.name == "nmi_handle" and ei.value.hint


def test_blacklisted_by_address_range_with_hidden_names(k: Kallsyms) -> None:
    # a blacklist entry named differently (an alias) still covers the address
    bl = parse_kprobe_blacklist("0xffffffff81001000-0xffffffff81001100\tvfs_read_alias\n")
    v = probeability("vfs_read", k, FF, bl)
    assert not v.ok and "vfs_read_alias" in v.reason


def test_protected_sections_without_blacklist_file(k: Kallsyms) -> None:
    v = probeability("kprobe_int3_handler", k, FF, None)
    assert not v.ok and ".kprobes.text" in v.reason
    v = probeability("exc_nmi_noinstr_like", k, FF, None)
    assert not v.ok and "noinstr" in v.reason
    # with hidden addresses the sections cannot be seen; the name alone passes
    hidden = parse_kallsyms("0000000000000000 T exc_nmi_noinstr_like\n")
    v = probeability("exc_nmi_noinstr_like", hidden, None, None)
    assert v.ok and v.code == "unchecked"


def test_not_in_kallsyms_suggests_close_names(k: Kallsyms) -> None:
    v = probeability("vfs_raed", k, FF, BL)
    assert not v.ok and v.code == "not-found" and "inlined" in v.reason
    assert "vfs_read" in v.suggestions
    assert not any(s.startswith("__pfx_") for s in v.suggestions)


def test_only_renamed_variants(k: Kallsyms) -> None:
    v = probeability("helper", k, FF, BL)
    assert not v.ok and v.code == "renamed"
    assert v.suggestions[0] == "helper.isra.0"  # entry point before the .cold part
    assert set(v.suggestions) == {"helper.isra.0", "helper.cold"}
    assert probeability("splitme", k, FF, BL).suggestions == ("splitme.part.0",)
    assert probeability("tidy", k, FF, BL).suggestions == ("tidy.constprop.0",)


def test_renamed_copy_itself_is_fine(k: Kallsyms) -> None:
    v = probeability("helper.isra.0", k, FF, BL)
    assert v.ok and v.code == "ok"
    # .cold of a traceable original: accepted by the kernel, with a warning
    v = probeability("plainfn.cold", k, FF, BL)
    assert v.ok and "not a function entry" in v.reason
    # the kernel looks the original up by the stripped name; "helper" does not
    # exist (only helper.isra.0), so helper.cold counts as notrace
    v = probeability("helper.cold", k, FF, BL)
    assert not v.ok and v.code == "notrace"


def test_data_symbols(k: Kallsyms) -> None:
    v = probeability("vfs_data_thing", k, FF, BL)
    assert not v.ok and v.code == "data" and "initialised data" in v.reason
    v = probeability("vfs_ro_table", k, FF, BL)
    assert not v.ok and "read-only" in v.reason


def test_notrace(k: Kallsyms) -> None:
    v = probeability("__switch_to_like", k, FF, BL)
    assert not v.ok and v.code == "notrace"
    assert "CONFIG_KPROBE_EVENTS_ON_NOTRACE" in v.reason
    v = probeability("__switch_to_like", k, FF, BL, notrace_ok=True)
    assert v.ok and v.code == "notrace" and "int3" in v.reason
    # without the ftrace list the check is skipped, and the verdict says so
    v = probeability("__switch_to_like", k, None, BL)
    assert v.ok and v.code == "unchecked"


def test_modules(k: Kallsyms) -> None:
    assert probeability("ext4:ext4_sync_fs", k, FF, BL).ok
    v = probeability("ext4:ext4_notrace_fn", k, FF, BL)
    assert not v.ok and v.code == "notrace"
    v = probeability("xfs:xfs_sync_fs", k, FF, BL)
    assert not v.ok and v.code == "module-not-loaded" and "'xfs'" in v.reason
    v = probeability("ext4:vfs_read", k, FF, BL)
    assert not v.ok and v.code == "not-found" and "module 'ext4'" in v.reason
    assert probeability("vmlinux:vfs_read", k, FF, BL).ok


def test_init_text_padding_and_duplicates(k: Kallsyms) -> None:
    v = probeability("vfs_caches_init", k, FF, BL)
    assert not v.ok and v.code == "init-text"
    v = probeability("__pfx_vfs_read", k, FF, BL)
    assert not v.ok and v.code == "not-function" and v.suggestions == ("vfs_read",)
    v = probeability("dup_static", k, FF, BL)
    assert v.ok and "2 functions share this name" in v.reason


def test_missing_lists(k: Kallsyms) -> None:
    v = probeability("vfs_read", None, None, None)
    assert v.ok and v.code == "unchecked"
    v = probeability("vfs_read", k, FF, None)
    assert v.ok and "blacklist could not be read" in v.reason
    assert not probeability("", k).ok


def test_split_module_and_close_names() -> None:
    assert split_module("ext4:ext4_sync_fs") == ("ext4", "ext4_sync_fs")
    assert split_module("vfs_read") == (None, "vfs_read")
    assert close_names("vfs_raed", ["vfs_read", "__pfx_vfs_read", "zzz"]) == ("vfs_read",)


# -- glob expansion -----------------------------------------------------------------------


def test_glob_uses_ftrace_list_minus_exclusions(k: Kallsyms) -> None:
    assert expand_glob("vfs_*", k, FF, BL) == ["vfs_read", "vfs_readv", "vfs_write"]
    everything = expand_glob("*", k, FF, BL)
    assert "nmi_handle" not in everything  # blacklisted
    assert "trace_event_buffer_reserve" not in everything  # WILDCARD_EXCLUDED
    assert "ftrace_ops_list_func" not in everything
    assert "get_kprobe" not in everything
    assert "__switch_to_like" not in everything  # notrace
    assert "vfs_caches_init" not in everything  # init text
    assert not any(n.startswith("__ftrace_invalid") for n in everything)
    # deliberately kept: ordinary library and RCU functions
    assert {"rb_insert_color", "rcu_read_unlock_strict", "helper.isra.0"} <= set(everything)
    # an explicit name still gets its own verdict
    assert probeability("get_kprobe", k, FF, BL).ok


def test_glob_without_ftrace_list_uses_kallsyms(k: Kallsyms) -> None:
    got = expand_glob("*", k, None, None)
    assert "__switch_to_like" in got
    assert "plainfn" in got
    for bad in (
        "kprobe_int3_handler",
        "exc_nmi_noinstr_like",
        "__pfx_vfs_read",
        "nmi_handle.cold",
        "helper.cold",
        "plainfn.cold",
        "vfs_data_thing",
        "vfs_caches_init",
        "trace_event_buffer_reserve",
    ):
        assert bad not in got
    assert expand_glob("__switch_*", k, FF, BL, notrace_ok=True) == ["__switch_to_like"]
    assert expand_glob("__switch_*", k, FF, BL) == []


def test_glob_with_module(k: Kallsyms) -> None:
    assert expand_glob("ext4:*", k, FF, BL) == ["ext4_sync_fs"]
    assert expand_glob("ext4:*", k, None, None) == ["ext4_notrace_fn", "ext4_sync_fs"]
    assert "ext4_sync_fs" not in expand_glob("vmlinux:*", k, FF, BL)


def test_glob_nothing_to_expand() -> None:
    assert expand_glob("*", None, None, None) == []


def test_every_exclusion_is_justified() -> None:
    for pat, why in WILDCARD_EXCLUDED:
        assert pat and len(why) > 10
