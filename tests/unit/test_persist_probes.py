"""Persistent probes on a fake tracefs tree: perf-probe syntax, add/list/del, --force, gc leaves them alone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kprobes.backends.persist import (
    ProbeManager,
    is_tracefs_definition,
    parse_perf_probe,
    perf_event_name,
    uprobe_group,
)
from kprobes.backends.tracefs.fs import TraceFS
from kprobes.backends.tracefs.reaper import reap
from kprobes.errors import KprobesError
from tests.helpers import run_cli


def fake_tracefs(tmp_path: Path, kprobe_lines: list[str] = (), uprobe_lines: list[str] = ()) -> TraceFS:  # type: ignore[assignment]
    (tmp_path / "kprobe_events").write_text("".join(f"{ln}\n" for ln in kprobe_lines))
    (tmp_path / "uprobe_events").write_text("".join(f"{ln}\n" for ln in uprobe_lines))
    (tmp_path / "error_log").write_text("")
    (tmp_path / "instances").mkdir()
    (tmp_path / "events").mkdir()
    for ln in list(kprobe_lines) + list(uprobe_lines):
        grp, _, ev = ln.split()[0].partition(":")[2].partition("/")
        (tmp_path / "events" / grp / ev).mkdir(parents=True, exist_ok=True)
    return TraceFS(str(tmp_path))


def written(tmp_path: Path, rel: str = "kprobe_events") -> list[str]:
    return (tmp_path / rel).read_text().splitlines()


# ------------------------------------------------------------------ syntax


@pytest.mark.parametrize(
    "text, func, event, group, offset, line, ret, args",
    [
        ("do_sys_openat2 filename=+0(%si):string", "do_sys_openat2", None, None, 0, None, False,
         ("filename=+0(%si):string",)),
        ("tcp_sendmsg:15 size", "tcp_sendmsg", None, None, 0, 15, False, ("size",)),
        ("vfs_read%return $retval", "vfs_read", None, None, 0, None, True, ("$retval",)),
        ("vfs_read+0x10", "vfs_read", None, None, 16, None, False, ()),
        ("myev=vfs_read", "vfs_read", "myev", None, 0, None, False, ()),
        ("grp:myev=vfs_read:3 count", "vfs_read", "myev", "grp", 0, 3, False, ("count",)),
        ("foo.isra.0", "foo.isra.0", None, None, 0, None, False, ()),
    ],
)  # fmt: skip
def test_parse_perf_probe(text: str, func: str, event: object, group: object, offset: int,
                          line: object, ret: bool, args: tuple[str, ...]) -> None:  # fmt: skip
    s = parse_perf_probe(text)
    assert (s.function, s.event, s.group, s.offset, s.line, s.is_return, s.args) == (
        func, event, group, offset, line, ret, args)  # fmt: skip


@pytest.mark.parametrize("bad", ["", "9func", "f:x", "f@src.c:3", "f+zz"])
def test_parse_perf_probe_refuses(bad: str) -> None:
    with pytest.raises(KprobesError):
        parse_perf_probe(bad)


def test_perf_event_names_and_groups() -> None:
    assert perf_event_name(parse_perf_probe("tcp_sendmsg:15")) == "tcp_sendmsg_L15"
    assert perf_event_name(parse_perf_probe("vfs_read+8")) == "vfs_read_8"
    assert perf_event_name(parse_perf_probe("vfs_read%return")) == "vfs_read__return"
    assert perf_event_name(parse_perf_probe("foo.isra.0")) == "foo_isra_0"
    assert uprobe_group("/usr/lib/x86_64-linux-gnu/libc.so.6") == "probe_libc"
    assert uprobe_group("/bin/bash") == "probe_bash"


def test_tracefs_or_perf_syntax() -> None:
    assert is_tracefs_definition("p:myprobe do_sys_openat2")
    assert is_tracefs_definition("r vfs_read")
    assert is_tracefs_definition("p:grp/ev vfs_read")
    assert not is_tracefs_definition("do_sys_openat2 filename=+0(%si):string")
    assert not is_tracefs_definition("p_func:12 x")


# ------------------------------------------------------------------ add / list / del


def test_add_perf_syntax_goes_to_probe_group(tmp_path: Path) -> None:
    fs = fake_tracefs(tmp_path)
    p = ProbeManager(fs).add("do_sys_openat2 filename=+0(%si):string")
    assert (p.group, p.event, p.kind) == ("probe", "do_sys_openat2", "kprobe")
    assert written(tmp_path) == ["p:probe/do_sys_openat2 do_sys_openat2 filename=+0(%si):string"]


def test_add_tracefs_syntax_keeps_explicit_group(tmp_path: Path) -> None:
    fs = fake_tracefs(tmp_path)
    ProbeManager(fs).add("r:mine/rd vfs_read ret=$retval")
    ProbeManager(fs, group="other").add("p:op do_sys_openat2")
    assert written(tmp_path) == ["r:mine/rd vfs_read ret=$retval", "p:other/op do_sys_openat2"]


def test_duplicate_refused_unless_force(tmp_path: Path) -> None:
    fs = fake_tracefs(tmp_path, ["p:probe/do_sys_openat2 do_sys_openat2+0"])
    mgr = ProbeManager(fs)
    with pytest.raises(KprobesError, match="already exists") as ei:
        mgr.add("do_sys_openat2")
    assert "--force" in (ei.value.hint or "")
    os.makedirs(tmp_path / "events/probe/do_sys_openat2_1")
    p = mgr.add("do_sys_openat2", force=True)
    assert p.event == "do_sys_openat2_2"
    assert written(tmp_path)[-1] == "p:probe/do_sys_openat2_2 do_sys_openat2"


def test_session_shaped_group_refused(tmp_path: Path) -> None:
    fs = fake_tracefs(tmp_path)
    with pytest.raises(KprobesError, match="kprobes gc"):
        ProbeManager(fs, group="kp123_abcdef_1x")
    with pytest.raises(KprobesError, match="kprobes gc"):
        ProbeManager(fs).add("p:kp123_abcdef_1x/ev vfs_read")
    assert written(tmp_path) == []


def test_list_skips_session_groups_and_delete_by_name_and_glob(tmp_path: Path) -> None:
    fs = fake_tracefs(
        tmp_path,
        ["p:probe/do_sys_openat2 do_sys_openat2+0 filename=+0(%si):string",
         "r:probe/vfs_read__return vfs_read+0 ret=$retval",
         "p:kp99_abcdef_1x/mine vfs_write+0"],
        ["p:probe_bash/readline /bin/bash:0x00000000000b8e40"],
    )  # fmt: skip
    mgr = ProbeManager(fs)
    names = [p.name for p in mgr.list()]
    assert names == ["probe:do_sys_openat2", "probe:vfs_read__return", "probe_bash:readline"]
    kinds = {p.name: p.kind for p in mgr.list()}
    assert kinds["probe_bash:readline"] == "uprobe"
    desc = mgr.list("readline")[0].describe()
    assert "(on /bin/bash:0xb8e40)" in desc
    assert "with filename" in mgr.list("probe:do_*")[0].describe()
    gone = mgr.delete("do_sys_openat2")
    assert [p.name for p in gone] == ["probe:do_sys_openat2"]
    assert written(tmp_path)[-1] == "-:probe/do_sys_openat2"
    mgr.delete("probe_bash:*")
    assert written(tmp_path, "uprobe_events")[-1] == "-:probe_bash/readline"
    with pytest.raises(KprobesError, match="no persistent probe"):
        mgr.delete("mine")  # a session's event is not a persistent probe
    assert not any("kp99" in ln and ln.startswith("-") for ln in written(tmp_path))


def test_gc_never_removes_persistent_probes(tmp_path: Path) -> None:
    fs = fake_tracefs(tmp_path, ["p:probe/do_sys_openat2 do_sys_openat2+0",
                                 "p:mygroup/op do_sys_openat2+0",
                                 "p:kp99_abcdef_1x/dead vfs_write+0"])  # fmt: skip
    rep = reap(fs, alive=lambda o: False)
    assert rep.removed_events == ["kp99_abcdef_1x/dead"]
    assert ("probe/do_sys_openat2", rep.foreign[0][1]) in rep.foreign
    removals = [ln for ln in written(tmp_path) if ln.startswith("-:")]
    # the whole dead group in one write; the fake kernel keeps it, so then by name
    assert removals == ["-:kp99_abcdef_1x/", "-:kp99_abcdef_1x/dead"]


def test_cli_dry_run_prints_definition() -> None:
    rc, out, err = run_cli(["probe", "-n", "--add", "vfs_read%return ret=$retval"])
    assert rc == 0, err
    assert out.strip() == "r:vfs_read__return vfs_read ret=$retval"


def test_cli_nothing_to_do_is_usage_error() -> None:
    rc, _out, err = run_cli(["probe"])
    assert rc == 2 and "nothing to do" in err


def test_line_probe_without_kernel_debuginfo_names_package(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    rc, _out, err = run_cli(["probe", "--debug-root", str(tmp_path), "-L", "tcp_sendmsg"])
    assert rc != 0
    rel = os.uname().release
    assert f"linux-image-{rel}-dbg" in err and "-k VMLINUX" in err
    rc, _out, err = run_cli(["probe", "-n", "--debug-root", str(tmp_path), "--add", "tcp_sendmsg:15 size"])
    assert rc != 0 and f"linux-image-{rel}-dbg" in err
