"""CLI commands that work without a kernel: check, help, usage errors, prepare's shorthands."""

from __future__ import annotations

import json

from kprobes.backends.prepare import _btf_shorthand, _needs_btf, guess_kind
from tests.helpers import run_cli


def test_check_valid_prints_normalized() -> None:
    rc, out, err = run_cli(["check", "--offline", "--arch", "x86_64", "p:myprobe do_sys_openat2 filename=+0(%si):string"])
    assert rc == 0, err
    assert out.strip() == "p:myprobe do_sys_openat2 filename=+0(%si):string"


def test_check_invalid_gives_kernel_message_and_caret() -> None:
    rc, out, err = run_cli(["check", "--offline", "--arch", "x86_64", "p:x do_sys_openat2 a=+0(%zz):string"])
    assert rc == 2
    assert "Invalid register name" in err
    lines = err.splitlines()
    cmd = next(i for i, ln in enumerate(lines) if ln.startswith("p:x"))
    assert lines[cmd + 1].index("^") == lines[cmd].index("%zz")


def test_check_json_and_kernel_versions() -> None:
    # $argN in a return probe: refused by 6.1, accepted by 6.12 (entry args at exit).
    rc, out, _ = run_cli(["check", "--json", "--kernel", "6.1", "--arch", "x86_64",
                          "r:a vfs_read $arg1", "p:b vfs_read str(arg2)"])
    recs = [json.loads(ln) for ln in out.splitlines()]
    assert rc == 2
    assert recs[0]["ok"] is False and recs[0]["position"] == 13 and "$" in recs[0]["message"]
    assert recs[1]["ok"] is True and recs[1]["normalized"] == "p:b vfs_read arg2=+0(%si):string"
    rc, out, _ = run_cli(["check", "--json", "--kernel", "6.12", "--arch", "x86_64", "r:a vfs_read $arg1"])
    assert rc == 0 and json.loads(out)["ok"] is True


def test_check_arm64_friendly_args() -> None:
    rc, out, _ = run_cli(["check", "--arch", "arm64", "p:a vfs_read str(arg2) arg3"])
    assert rc == 0
    assert "+0(%x1):string" in out and "%x2" in out


def test_usage_errors_and_help() -> None:
    rc, out, err = run_cli(["nosuchcommand"])
    assert rc == 2 and "unknown command" in err
    rc, out, err = run_cli(["trace", "--help"])
    assert rc == 0 and "kprobes trace" in out
    rc, out, err = run_cli(["trace"])
    assert rc == 2 and "kprobes: error:" in err and "Traceback" not in err


def test_prepare_shorthands() -> None:
    assert _btf_shorthand(["p:do_sys_openat2", "filename:string"]) == [
        "p:do_sys_openat2", "do_sys_openat2", "filename:string"]
    assert _btf_shorthand(["p:myprobe", "do_sys_openat2"]) == ["p:myprobe", "do_sys_openat2"]
    assert _btf_shorthand(["p:tcp_connect", "sk->__sk_common.skc_dport"])[1] == "tcp_connect"
    assert _btf_shorthand(["p:x", "ext4:ext4_sync_file"]) == ["p:x", "ext4:ext4_sync_file"]
    assert _needs_btf("filename:string") and _needs_btf("sk->__sk_common.skc_dport")
    assert _needs_btf("((struct task_struct *)arg3)->pid")
    assert not _needs_btf("filename=+0(%si):string") and not _needs_btf("arg2") and not _needs_btf("str(arg2)")
    assert not _needs_btf("ret=$retval")
    assert guess_kind(["p:x", "/bin/bash:readline"]) == "uprobe"
    assert guess_kind(["p:x", "libc:malloc"]) == "uprobe"
    assert guess_kind(["p:x", "ext4:ext4_sync_file"]) == "kprobe"
