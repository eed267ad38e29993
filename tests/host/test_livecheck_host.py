"""The live check on this host: a kernel without kprobes, and uprobe files.

On a kernel without CONFIG_KPROBES every kprobe command must say so in one
clear error (no "Invalid argument" from a refused write, no "probeable").
"""

from __future__ import annotations

import os

import pytest

from tests.helpers import run_cli, session_leftovers

HAS_KPROBES = os.path.exists("/sys/kernel/tracing/kprobe_events") or os.path.isdir(
    "/sys/bus/event_source/devices/kprobe"
)


@pytest.mark.parametrize("args", [
    ["check", "p:x vfs_read"],
    ["trace", "--duration", "1", "p:x vfs_read"],
    ["-e", "kprobe:vfs_read {}"],
    ["-e", "kprobe:vfs_* {}"],
    ["probe", "--add", "vfs_read"],
    ["list", "vfs_*"],
    ["list", "vfs_read"],
])
def test_kprobe_commands_say_the_kernel_has_no_kprobes(args: list) -> None:
    rc, out, err = run_cli(args)
    if HAS_KPROBES:
        assert "CONFIG_KPROBES is not set" not in err
        return
    assert rc != 0, (out, err)
    assert "this kernel has no kprobes (CONFIG_KPROBES is not set)" in err, err
    assert "kprobes doctor" in err and "Traceback" not in err
    assert "Invalid argument" not in err and "probeable" not in out
    assert not session_leftovers()


def test_check_uprobe_files_like_the_kernel(tmp_path: object) -> None:
    rc, _, err = run_cli(["check", "p:x /nonexist_kpchk:0x10 a=%foo"])
    assert rc == 2 and "Failed to find the given file (at position 4" in err, err
    rc, _, err = run_cli(["check", "p:x /tmp:0x10"])
    assert rc == 2 and "Not a regular file (at position 4" in err, err
    rc, _, err = run_cli(["check", "p:x /dev/null:0x10"])
    assert rc == 2 and "Not a regular file" in err, err


def test_check_accepts_what_trace_accepts() -> None:
    rc, out, err = run_cli(["check", "p:x libc:atoi", "r:y /bin/bash:readline", "t:sched:sched_switch"])
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("p:x /") and "libc" in lines[0]
    assert lines[2] == "t:sched:sched_switch"
    rc, _, err = run_cli(["check", "t:sched:no_such_event_kpchk"])
    assert rc == 2 and "no such tracepoint" in err
