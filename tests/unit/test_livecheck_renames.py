"""Renamed kernel functions and the live registration checks, on fake kernels."""

from __future__ import annotations

from pathlib import Path

import pytest

from kprobes.backends.livecheck import LiveKernel, live_verdict, place_error, registration_error
from kprobes.backends.symbols import KernelSymbols, parse_kallsyms
from kprobes.backends.symbols.probeable import probeability
from kprobes.backends.symbols.renames import RENAMES, known_rename, shape_matches
from kprobes.errors import FeatureMissing
from kprobes.probes import ProbeSpec, validate

KALLSYMS = """\
ffffffff81000000 T __alloc_pages_noprof
ffffffff81000100 T __alloc_pages_bulk_noprof
ffffffff81000200 t __alloc_pages_slowpath.constprop.0
ffffffff81000300 T kernel_clone
ffffffff81000400 T __x64_sys_read
ffffffff81000500 t name_show
ffffffff81000600 t name_show
ffffffff81000700 T vfs_read
ffffffff81000800 D jiffies
ffffffff81000900 T vfs_write
ffffffffc0000000 t ovl_open\t[overlay]
ffffffffc0000100 t bpf_prog_1\t[bpf]
"""


def _functions() -> frozenset[str]:
    return parse_kallsyms(KALLSYMS).function_names()


def test_rename_table_entries_are_well_formed() -> None:
    for r in RENAMES:
        assert r.old != r.new and r.why
        major, minor = r.version.split(".")
        assert 5 <= int(major) <= 6 and minor.isdigit(), r


def test_known_rename_follows_chains_to_what_this_kernel_has() -> None:
    fns = _functions()
    r = known_rename("__alloc_pages", fns)
    assert r is not None and (r.new, r.version) == ("__alloc_pages_noprof", "6.10")
    chained = known_rename("__alloc_pages_nodemask", fns)  # 5.13, then 6.10
    assert chained is not None and chained.new == "__alloc_pages_noprof"
    assert known_rename("_do_fork", fns) == known_rename("_do_fork", fns | {"x"})
    fork = known_rename("_do_fork", fns)
    assert fork is not None and (fork.new, fork.version) == ("kernel_clone", "5.10")
    sys_read = known_rename("sys_read", fns)
    assert sys_read is not None and (sys_read.new, sys_read.version) == ("__x64_sys_read", "4.17")
    assert known_rename("_do_fork", frozenset({"vfs_read"})) is None  # the new name is absent too
    assert known_rename("vfs_read", fns) is None


def test_shape_matches_prefer_known_suffixes_then_short_names() -> None:
    got = shape_matches("__alloc_pages", _functions())
    assert got[0] == "__alloc_pages_noprof"
    assert set(got) == {"__alloc_pages_noprof", "__alloc_pages_bulk_noprof",
                        "__alloc_pages_slowpath.constprop.0"}
    assert shape_matches("read", {"__x64_sys_read", "reader"}) == ("__x64_sys_read",)
    assert shape_matches("ab", {"ab_c"}) == ()  # too short to mean anything


def test_probeability_names_the_rename() -> None:
    ks = parse_kallsyms(KALLSYMS)
    v = probeability("__alloc_pages", ks)
    assert not v.ok and v.code == "renamed"
    assert "renamed __alloc_pages_noprof in 6.10" in v.reason
    assert v.suggestions[0] == "__alloc_pages_noprof"
    v = probeability("vfs_rea", ks)  # no rename, no shape match: close names
    assert v.code == "not-found" and "vfs_read" in v.suggestions


class FakeKernel(LiveKernel):
    """LiveKernel over a temporary tracefs and a fixed kallsyms."""

    def __init__(self, root: Path, kprobes: bool = True) -> None:
        super().__init__(str(root), pmu_dir=str(root / "no-pmu"))
        if kprobes:
            (root / "kprobe_events").write_text("p:grp/c vfs_read a=%di\n")
        (root / "uprobe_events").write_text("")
        (root / "events" / "sched" / "sched_switch").mkdir(parents=True)
        self._symbols = KernelSymbols(parse_kallsyms(KALLSYMS), None, None)


def _spec(line: str) -> ProbeSpec:
    spec = validate(line, "kprobe")
    assert isinstance(spec, ProbeSpec)
    return spec


def _verdict(k: LiveKernel, line: str) -> tuple[str, int] | None:
    e = live_verdict(line, "kprobe", _spec(line), None, k)
    if e is None:
        return None
    return e.kernel_message, e.position  # type: ignore[attr-defined]


def test_symbols_checked_like_the_kernel(tmp_path: Path) -> None:
    k = FakeKernel(tmp_path)
    assert _verdict(k, "p:g/a vfs_read") is None
    assert _verdict(k, "p:g/a __alloc_pages") == ("Invalid probed address or symbol", 6)
    assert _verdict(k, "p:g/a name_show+4") == ("The symbol is not unique", 6)
    assert _verdict(k, "p:g/a vfs_read x=@nosuch") == ("Invalid probed address or symbol", 6)
    assert _verdict(k, "p:g/a vfs_read x=@name_show") is None  # a memory symbol may repeat
    assert _verdict(k, "p:g/a jiffies") == ("Failed to register probe event", 6)
    assert _verdict(k, "p:g/a nosuchmod:f") is None  # deferred until the module loads
    assert _verdict(k, "p:g/a overlay:nosuch") == ("Invalid probed address or symbol", 6)
    assert _verdict(k, "p:g/a overlay:ovl_open") is None
    e = place_error("p:g/a __alloc_pages".split(), "kprobe", k)
    assert e is not None and "__alloc_pages_noprof" in (e.hint or "")


def test_missing_symbol_wins_over_a_later_argument_error(tmp_path: Path) -> None:
    k = FakeKernel(tmp_path)
    line = "p:g/a nosuchfunc a=%foo"
    with pytest.raises(Exception) as info:
        validate(line, "kprobe")
    e = live_verdict(line, "kprobe", None, info.value, k)  # type: ignore[arg-type]
    assert e is not None and e.kernel_message == "Invalid probed address or symbol"  # type: ignore[attr-defined]


def test_event_name_clashes(tmp_path: Path) -> None:
    k = FakeKernel(tmp_path)
    assert _verdict(k, "p:sched/sched_switch vfs_read") == (
        "Given group/event name is already used by another event", 0)
    assert _verdict(k, "p:grp/c vfs_read a=%di") == ("There is already the exact same probe event", 0)
    assert _verdict(k, "r:grp/c vfs_write") == ("Probe type is different from existing probe", 0)
    assert _verdict(k, "p:grp/c vfs_write b=%di") == (
        "Argument type or name is different from existing probe", 18)
    assert _verdict(k, "p:grp/c vfs_write") == (
        "Argument type or name is different from existing probe", 18)
    assert _verdict(k, "p:grp/c vfs_write a=%di:x64") is None  # same type: a second probe
    spec = _spec("p:grp/c vfs_write a=%di:u32")
    assert registration_error(spec, "p:grp/c vfs_write a=%di:u32".split(), k) is not None


def test_no_kprobes_is_one_clear_error(tmp_path: Path) -> None:
    k = FakeKernel(tmp_path, kprobes=False)
    with pytest.raises(FeatureMissing) as info:
        live_verdict("p:g/a vfs_read", "kprobe", _spec("p:g/a vfs_read"), None, k)
    assert "CONFIG_KPROBES is not set" in info.value.message
    assert "kprobes doctor" in (info.value.hint or "") and "uprobes" in (info.value.hint or "")
