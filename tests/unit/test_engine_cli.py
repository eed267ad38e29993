"""The bpftrace-style command line without a kernel: --dry-run, errors, -l, dispatch."""

from __future__ import annotations

from pathlib import Path

import pytest

import kprobes.backends.symbols as symbols_pkg
from kprobes.btf import BTF
from kprobes.engines import tracefs_engine
from tests.helpers import run_cli
from tests.unit.btf_builder import kernel_like
from tests.unit.test_engine_plan import fake_symbols


@pytest.fixture(autouse=True)
def no_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    b, _ = kernel_like()
    btf = BTF(b.build())
    monkeypatch.setattr(tracefs_engine, "_btf_or_none", lambda: btf)
    monkeypatch.setattr(tracefs_engine, "tracefs_root", lambda: None)
    extra = [f"fn_{i}" for i in range(1100)]
    monkeypatch.setattr(symbols_pkg, "load_kernel_symbols", lambda **kw: fake_symbols(extra))


def test_dry_run_seed_kill() -> None:
    prog = ('kprobe:do_send_sig_info { printf("%s (pid=%d) -> signal %d to pid %d\\n", '
            "comm, pid, arg0, ((struct task_struct *)arg2)->pid); }")
    rc, out, err = run_cli(["--dry-run", "-e", prog])
    assert rc == 0, err
    assert "p:kp0_0 do_send_sig_info comm=$comm:string arg0=%di:u64 pid=+0(%dx):s32" in out
    assert "attach: 1 probes" in out


def test_program_file(tmp_path: Path) -> None:
    f = tmp_path / "prog.bt"
    f.write_text("kretprobe:vfs_read /retval > 100/ { @ = hist(retval); }\n")
    rc, out, err = run_cli([str(f), "--dry-run"])
    assert rc == 0, err
    assert "r:kp0_0 vfs_read retval=$retval:u64" in out
    assert "kernel filter: retval > 100" in out


def test_language_error_is_printed_like_bpftrace(tmp_path: Path) -> None:
    rc, out, err = run_cli(["--dry-run", "-e", "kprobe:vfs_read { @x = fake; }"])
    assert rc == 1
    assert err.startswith("stdin:1:24-28: ERROR: Unknown identifier: 'fake'\n")
    assert "~~~~" in err


def test_governor_refusal_and_consent() -> None:
    prog = "kprobe:* { @[probe] = count(); }"
    rc, out, err = run_cli(["--dry-run", "-e", prog])
    assert rc == 1 and "refusing to attach" in err and "--unsafe" in err
    rc, out, err = run_cli(["--dry-run", "--unsafe", "-e", prog])
    assert rc == 0, err
    assert "kernel events: 1107" in out
    rc, out, err = run_cli(["--dry-run", "--wildcard-filter", "vfs_*", "-e", prog])
    assert rc == 0 and "kernel events: 3" in out


def test_usage_errors() -> None:
    rc, out, err = run_cli(["-p", "1"])
    assert rc == 2 and "no program given" in err
    rc, out, err = run_cli(["-e", "BEGIN {}", "x.bt"])
    assert rc == 2


def test_list_kprobes_glob() -> None:
    rc, out, err = run_cli(["-l", "kprobe:vfs_*"])
    assert rc == 0, err
    assert out.splitlines() == ["kprobe:vfs_open", "kprobe:vfs_read", "kprobe:vfs_write"]


def test_list_verbose_shows_btf_arguments() -> None:
    rc, out, err = run_cli(["-lv", "kprobe:do_sys_openat2"])
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == "kprobe:do_sys_openat2"
    assert any("filename" in ln for ln in lines[1:]) and lines[-1].strip().endswith("retval")


def test_help() -> None:
    rc, out, err = run_cli(["-e", "BEGIN {}", "--help"])
    assert rc == 0 and "--dry-run" in out and "-c CMD" in out
