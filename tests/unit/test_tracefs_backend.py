"""tracefs backend pieces that need no kernel: owner names, error_log, reaper on a fake tree."""

from __future__ import annotations

import os

import pytest

from kprobes.backends.tracefs.fs import TraceFS, parse_error_log
from kprobes.backends.tracefs.owner import (
    Owner,
    current_owner,
    dead_groups,
    is_foreign_leftover,
    owner_alive,
    parse_owner,
)
from kprobes.backends.tracefs.reaper import list_dynamic_events, reap
from kprobes.errors import KernelRefused, ProbeSyntaxError

ERRLOG = """\
[  674.486285] trace_uprobe: error: Invalid register name
  Command: p:kptest/x /bin/true:0x100 a=%zz
                                        ^
[  700.000001] trace_kprobe: error: Failed to parse address or symbol
  Command: p:a nosuch+zz
               ^
"""


def test_parse_error_log_positions() -> None:
    entries = parse_error_log(ERRLOG)
    assert [e.message for e in entries] == ["Invalid register name", "Failed to parse address or symbol"]
    assert entries[0].command == "p:kptest/x /bin/true:0x100 a=%zz"
    assert entries[0].command[entries[0].position:] == "%zz"
    assert entries[1].position == 4
    assert entries[0].subsystem == "trace_uprobe"


def test_owner_name_roundtrip_and_shape() -> None:
    o = current_owner()
    assert o.pid == os.getpid()
    assert parse_owner(o.name) == o
    assert len(o.name) < 64 and o.name.replace("_", "").isalnum()
    o2 = current_owner()
    assert o2.name != o.name  # several sessions in one process get distinct names
    assert owner_alive(o) and owner_alive(o2)
    assert parse_owner("probe") is None and parse_owner("kp12_zzzzzz_1") is None


def test_owner_dead_when_pid_reused_or_other_boot() -> None:
    o = Owner(1234, "abcdef", "1z")
    assert not owner_alive(o, this_boot="abcdef", start_of=lambda pid: None)  # process gone
    assert not owner_alive(o, this_boot="abcdef", start_of=lambda pid: 99999)  # pid reused
    assert owner_alive(o, this_boot="abcdef", start_of=lambda pid: 71)  # 71 == '1z' base 36
    assert not owner_alive(o, this_boot="123456", start_of=lambda pid: 71)  # other boot


def test_foreign_leftovers_are_recognised() -> None:
    assert "perf" in (is_foreign_leftover("probe", "do_sys_openat2") or "")
    assert is_foreign_leftover("kprobes", "p_vfs_read_bcc_1234") == "bcc"
    assert is_foreign_leftover("kp1_abcdef_1", "x") is None


def _fake_tree(tmp_path, lines: list[str], instances: list[str]) -> TraceFS:  # type: ignore[no-untyped-def]
    (tmp_path / "dynamic_events").write_text("".join(f"{ln}\n" for ln in lines))
    (tmp_path / "instances").mkdir()
    for i in instances:
        (tmp_path / "instances" / i).mkdir()
    return TraceFS(str(tmp_path))


def test_reaper_removes_only_dead_owners(tmp_path) -> None:  # type: ignore[no-untyped-def]
    dead, alive = "kp111_abcdef_1", "kp222_abcdef_2"
    fs = _fake_tree(
        tmp_path,
        [
            f"p:{dead}/open do_sys_openat2 filename=+0(%si):string",
            f"r16:{dead}/ret vfs_read ret=$retval",
            f"p:{alive}/open do_sys_openat2",
            "p:probe/do_sys_openat2 do_sys_openat2",
            "p:kprobes/p_vfs_read_bcc_99 vfs_read",
            "p:mygroup/mine vfs_write",
        ],
        [dead, alive, "someone_else"],
    )
    assert len(list_dynamic_events(fs)) == 6
    rep = reap(fs, alive=lambda o: o.pid == 222)
    assert rep.removed_instances == [dead]
    assert sorted(rep.removed_events) == [f"{dead}/open", f"{dead}/ret"]
    assert sorted(t for _e, t in rep.foreign) == ["bcc", "perf probe (or 'kprobes probe --add': persistent by design)"]
    assert sorted(os.listdir(tmp_path / "instances")) == [alive, "someone_else"]
    written = (tmp_path / "dynamic_events").read_text().splitlines()[6:]
    # one group removal (this fake kernel ignores it), then each event by name; nothing else
    assert written == [f"-:{dead}/", f"-:{dead}/open", f"-:{dead}/ret"]


def test_dead_groups_from_listing() -> None:
    lines = ["p:kp1_abcdef_1/a f", "p:kp1_abcdef_1/b g", "p:kp2_abcdef_1/c h", "p:probe/x y"]
    assert dead_groups(lines, alive=lambda o: o.pid == 2) == ["kp1_abcdef_1"]


def test_write_definition_turns_refusal_into_kernel_error(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    fs = TraceFS(str(tmp_path))
    (tmp_path / "error_log").write_text("")
    target = tmp_path / "kprobe_events"
    target.write_text("")
    real_write = fs.write

    def refusing_write(rel: str, text: str, *, append: bool = False) -> None:
        if rel == "kprobe_events":
            (tmp_path / "error_log").write_text(
                "[ 1.0] trace_kprobe: error: Invalid fetch argument\n"
                "  Command: p:x vfs_read a=zz\n"
                "                           ^\n"
            )
            raise OSError(22, "Invalid argument")
        real_write(rel, text, append=append)

    monkeypatch.setattr(fs, "write", refusing_write)
    with pytest.raises(KernelRefused) as ei:
        fs.write_definition("kprobe_events", "p:x vfs_read a=zz")
    e = ei.value
    assert isinstance(e, ProbeSyntaxError) and e.from_kernel
    assert e.kernel_message == "Invalid fetch argument" and e.position == 16
    assert "^" in e.format()


def test_new_entries_only_counts_what_the_write_added() -> None:
    from kprobes.backends.tracefs.fs import ErrorLogEntry, new_entries

    def e(i: int) -> ErrorLogEntry:
        return ErrorLogEntry(float(i), "trace_kprobe", f"m{i}", f"c{i}", 0)

    old = [e(i) for i in range(8)]
    assert new_entries(old, old) == []  # silent refusal: nothing new
    assert new_entries(old, old[1:] + [e(8)]) == [e(8)]  # full log rotated by one
    assert new_entries([], [e(1)]) == [e(1)]
    assert new_entries(old[:3], old[:3] + [e(9)]) == [e(9)]
